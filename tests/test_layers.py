"""The package's layers (fmlab.LAYERS): imports only go down or sideways, never round in a circle; __all__ is true."""
import ast
import importlib
from pathlib import Path

import pytest

from fmlab import LAYERS

PACKAGE = Path(__file__).resolve().parent.parent / "fmlab"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imports(module: str) -> dict[str, set[str]]:
    """fmlab module -> the names imported from it by `module` (anywhere in the file, functions included)."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("fmlab")):
            parts = (node.module or "").removeprefix("fmlab").lstrip(".").split(".")
            if parts[0]:
                found.setdefault(parts[0], set()).update(a.name for a in node.names)
            else:                                       # from . import a, b
                for a in node.names:
                    found.setdefault(a.name, set())
    return found


def test_every_module_has_a_layer():
    assert not set(MODULES) - set(LAYERS), f"add these modules to fmlab.LAYERS: {sorted(set(MODULES) - set(LAYERS))}"


@pytest.mark.parametrize("module", MODULES)
def test_imports_only_go_down_or_sideways(module):
    up = {m for m in imports(module) if LAYERS.get(m, -1) > LAYERS.get(module, -1)}
    assert not up, f"{module} (layer {LAYERS.get(module)}) imports from higher layers: {sorted(up)}"


def test_no_import_circle():
    graph = {m: set(imports(m)) & set(MODULES) for m in MODULES}
    state: dict[str, int] = {}                          # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import circle: " + " -> ".join(path[path.index(n):] + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2
    for m in MODULES:
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("module", MODULES)
def test_all_is_true(module):
    """Every name in __all__ exists, and every public name another module imports from this one is in __all__."""
    mod = importlib.import_module(f"fmlab.{module}")
    public = getattr(mod, "__all__", None)
    assert public is not None, f"fmlab.{module} has no __all__"
    assert not [n for n in public if not hasattr(mod, n)], f"fmlab.{module}.__all__ names what it lacks"
    wanted = {n for other in MODULES for n in imports(other).get(module, ()) if not n.startswith("_")}
    assert not wanted - set(public), f"add to fmlab.{module}.__all__: {sorted(wanted - set(public))}"
