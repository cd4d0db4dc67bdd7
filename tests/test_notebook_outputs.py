"""The committed notebooks carry the outputs of a full run, made from their current code.

`python bench/course.py --write` executes every notebook and records the sha256 of its code cells in the
notebook's metadata.  If a code cell changes afterwards, the stored outputs no longer belong to that code:
re-run the command.  (nbval, in the same test run, checks that every notebook still runs top to bottom.)
"""
import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("course_bench", ROOT / "bench" / "course.py")
course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(course)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_were_made_from_the_current_code(path):
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get("fmlab", {}).get("code_sha256")
    assert recorded, f"{path.name} has no stored outputs; run: python bench/course.py --write {path.relative_to(ROOT)}"
    assert recorded == course.code_sha256(nb), (f"{path.name}'s code changed after its outputs were made; run: "
                                                f"python bench/course.py --write {path.relative_to(ROOT)}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: some code cells were not executed"
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in code for o in c.get("outputs", [])), f"{path.name} shows no plot"


def test_solutions_are_out_of_view():
    """Exercise solutions sit in collapsed cells (JupyterLab honours source_hidden)."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        solutions = [c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith("# Solution")]
        assert solutions, f"{path.name} has no solution cell"
        for c in solutions:
            assert c.metadata.get("jupyter", {}).get("source_hidden"), f"{path.name}: a solution is in view"
