"""Do the notebooks' claims hold at any seed and in every precision?  Run them and show every asserted value.

    python bench/seeds.py                                   # every notebook at seeds 0-4, fp32, 2 at a time
    python bench/seeds.py notebooks/03_*.ipynb --seeds 0 1  # some notebooks, some seeds
    python bench/seeds.py --precision bf16 --seeds 0        # CPU autocast in bf16 (or fp16 + grad scaler)
    python bench/seeds.py --summary                         # the table again, from every run recorded so far

Each run executes a temporary copy of a notebook in a fresh kernel (the learner's file is never touched) in
which two things differ:
- the line ``SEED = 0`` of its set-up cell reads ``SEED = <seed>``;
- every ``assert`` records instead of stopping: whether it held, the value of each side of each comparison
  in it, and its message (evaluated even when it held, so a message that would itself raise shows up).  So one
  run shows every claim, also those after a failing one.

Records go to ``bench/results/seeds.jsonl`` (one line per notebook run, appended), and the table printed at
the end lists, for each asserted claim, how many runs it held in and the range of each measured side over
all recorded runs (every seed and precision), which is the spread to derive a threshold from.
With ``--jobs N`` (default 2) N kernels run side by side, each on one CPU thread (``FMLAB_THREADS=1``):
wall-clock times are then not comparable with `bench/course.py`, which is the script that times notebooks.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "seeds.jsonl"
_MARK = "FMLAB_SEEDS_REPORT"
_SEED_LINE = re.compile(r"^SEED\s*=\s*\d+\s*$", re.M)
_CHEAP_CALLS = {"min", "max", "abs", "len", "float", "int", "round", "sum", "all", "any", "set"}
_CHEAP_METHODS = {"mean", "min", "max", "sum", "item", "to_dict", "nunique", "abs", "round", "get", "keys",
                  "values", "items", "isin", "std", "median"}

_RECORDER = '''
import json as _fm_json, math as _fm_math
_fm_records = []
def _fm_value(v):
    try:
        if hasattr(v, "item") and getattr(v, "numel", lambda: getattr(v, "size", 2))() == 1:
            v = v.item()
        if isinstance(v, (bool, int, float)):
            return float(v) if _fm_math.isfinite(float(v)) else str(v)
    except Exception:
        pass
    return repr(v)[:120]
def _fm_claim(cid, src, test, sides, msg):
    values = {}
    for name, fn in sides:
        try:
            values[name] = _fm_value(fn())
        except Exception as e:
            values[name] = "<" + type(e).__name__ + ">"
    try:
        ok = bool(test())
    except Exception as e:
        ok, values["<error>"] = False, type(e).__name__ + ": " + str(e)[:200]
    message = None
    if msg is not None:            # always evaluated, so a message that would itself fail shows up
        try:
            message = str(msg())[:300]
        except Exception as e:
            message = "<the message itself raised " + type(e).__name__ + ": " + str(e)[:100] + ">"
    _fm_records.append({"id": cid, "src": src, "ok": ok, "values": values, "message": message})
'''
_REPORT = f"print('{_MARK}', _fm_json.dumps(_fm_records))"


def _cheap(node: ast.AST) -> bool:
    """An expression we may evaluate a second time: names, lookups, arithmetic and a few pure calls."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp,
                            ast.NamedExpr, ast.Await, ast.Yield)):
            return False
        if isinstance(sub, ast.Call):
            f = sub.func
            if not ((isinstance(f, ast.Name) and f.id in _CHEAP_CALLS)
                    or (isinstance(f, ast.Attribute) and f.attr in _CHEAP_METHODS)):
                return False
    return True


def _sides(test: ast.AST) -> list[ast.expr]:
    """Both sides of every comparison in an assert's test (not inside lambdas or comprehensions)."""
    out, todo = [], [test]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Compare):
            out += [e for e in [node.left, *node.comparators] if not isinstance(e, ast.Constant) and _cheap(e)]
        if isinstance(node, (ast.BoolOp, ast.UnaryOp, ast.Compare, ast.BinOp)):
            todo += list(ast.iter_child_nodes(node))
    return out


class _Instrument(ast.NodeTransformer):
    def __init__(self, cell: int):
        self.cell = cell

    def visit_Assert(self, node: ast.Assert):
        src = ast.unparse(node.test)
        lam = lambda e: ast.Lambda(ast.arguments([], [], None, [], [], None, []), e)
        sides = ast.List([ast.Tuple([ast.Constant(ast.unparse(e)), lam(e)], ast.Load()) for e in _sides(node.test)],
                         ast.Load())
        call = ast.Call(ast.Name("_fm_claim", ast.Load()),
                        [ast.Constant(f"c{self.cell}:{node.lineno}"), ast.Constant(src[:160]), lam(node.test), sides,
                         lam(node.msg) if node.msg is not None else ast.Constant(None)], [])
        return ast.copy_location(ast.Expr(call), node)


def instrument(source: str, cell: int) -> str:
    """A code cell whose asserts record instead of raising (cells with IPython syntax are translated first)."""
    if "assert" not in source:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager
        tree = ast.parse(TransformerManager().transform_cell(source))
    tree = ast.fix_missing_locations(_Instrument(cell).visit(tree))
    return ast.unparse(tree)


def prepared(path: str, seed: int):
    """The notebook with its seed changed and its asserts recording, plus a last cell that reports."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    seeded = [c for c in nb.cells if c.cell_type == "code" and _SEED_LINE.search(c.source)]
    if len(seeded) != 1:
        raise SystemExit(f"{path}: expected one 'SEED = <n>' line in a code cell, found {len(seeded)}")
    seeded[0].source = _SEED_LINE.sub(f"SEED = {seed}", seeded[0].source, count=1)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            c.source = instrument(c.source, i)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_RECORDER))
    nb.cells.append(nbformat.v4.new_code_cell(_REPORT))
    return nb


def run_one(path: str, seed: int) -> dict:
    from nbclient import NotebookClient
    nb = prepared(path, seed)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1200, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    seconds = time.perf_counter() - start
    errors, records = [], []
    for i, c in enumerate(nb.cells[1:-1]):
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue', '')[:200]}")
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(_MARK):
                records = json.loads(line.split(" ", 1)[1])
    return {"notebook": Path(path).name, "seed": seed, "precision": os.environ.get("FMLAB_PRECISION", "fp32"),
            "seconds": round(seconds, 1), "errors": errors, "claims": records}


def _launch(path: str, seed: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", path, "--seed", str(seed)],
                         capture_output=True, text=True, env=env)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"notebook": Path(path).name, "seed": seed, "precision": env.get("FMLAB_PRECISION", "fp32"),
                "seconds": float("nan"), "errors": [out.stderr[-400:]], "claims": []}


def _fmt(values: list) -> str:
    nums = [v for v in values if isinstance(v, float)]
    if len(nums) == len(values) and nums:
        lo, hi = min(nums), max(nums)
        return f"{lo:.4g}" if lo == hi else f"{lo:.4g} – {hi:.4g}"
    return " / ".join(sorted({str(v)[:30] for v in values}))


def summary(runs: list[dict], notebooks: set[str] | None = None) -> str:
    """Per notebook: runs (seeds × precisions), failures, and each claim's pass count and measured ranges."""
    lines = []
    by_nb: dict[str, list[dict]] = {}
    for r in runs:
        if notebooks is None or r["notebook"] in notebooks:
            by_nb.setdefault(r["notebook"], []).append(r)
    for name in sorted(by_nb):
        rs = by_nb[name]
        tags = sorted({f"{r['precision']}:{r['seed']}" for r in rs})
        lines.append(f"\n## {name} — {len(rs)} runs ({', '.join(tags)})")
        for r in rs:
            for e in r["errors"]:
                lines.append(f"  ERROR {r['precision']} seed {r['seed']}: {e}")
        claims: dict[str, list[dict]] = {}
        for r in rs:
            for c in r["claims"]:
                claims.setdefault(c["id"] + " " + c["src"], []).append({**c, "run": f"{r['precision']}:{r['seed']}"})
        for key, cs in claims.items():
            held = sum(c["ok"] for c in cs)
            flag = "  " if held == len(cs) else "✗ "
            lines.append(f"{flag}{key[:110]}  [{held}/{len(cs)}]")
            names = list(dict.fromkeys(n for c in cs for n in c["values"]))
            for n in names:
                lines.append(f"      {n[:60]:60s} {_fmt([c['values'][n] for c in cs if n in c['values']])}")
            for c in cs:
                if not c["ok"]:
                    lines.append(f"      failed at {c['run']}: {c['message']}")
                elif (c["message"] or "").startswith("<the message itself raised"):
                    lines.append(f"      broken message at {c['run']}: {c['message']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                        help="sets FMLAB_PRECISION for the kernels (on CPU: autocast emulation)")
    parser.add_argument("--jobs", type=int, default=2, help="kernels side by side, one CPU thread each")
    parser.add_argument("--summary", action="store_true", help="print the table of every recorded run, run nothing")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.seed)))
        return 0
    names = {Path(p).name for p in args.notebooks} or None
    if args.summary:
        runs = [json.loads(l) for l in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
        print(summary(runs, names))
        return 0
    env = dict(os.environ)
    if args.precision:
        env["FMLAB_PRECISION"] = args.precision
    if args.jobs > 1:
        env.setdefault("FMLAB_THREADS", "1")
    paths = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    jobs = [(p, s) for s in args.seeds for p in paths]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(lambda job: _launch(*job, env), jobs):
            runs.append(row)
            with RESULTS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            bad = sum(not c["ok"] for c in row["claims"])
            print(f"{row['notebook']:36s} {row['precision']} seed {row['seed']}: {len(row['claims'])} claims, "
                  f"{bad} failed, {len(row['errors'])} cell errors, {row['seconds']} s", flush=True)
    print(summary(runs))
    failed = sum(not c["ok"] for r in runs for c in r["claims"]) + sum(len(r["errors"]) for r in runs)
    print(f"\n{len(runs)} runs, {failed} failed claims or cell errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
