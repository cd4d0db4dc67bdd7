"""Run every notebook as a learner would; report wall-seconds and peak memory per notebook.

    python bench/course.py [notebooks/01_pretraining.ipynb ...]        # time them (CPU or whatever fmlab picks)
    python bench/course.py --device cuda --precision fp16              # the T4 path (fp16 + grad scaler) on any GPU
    python bench/course.py --write                                     # also store the outputs in the notebooks

Each notebook runs in a fresh kernel, in its own child process, so the peak resident memory reported
(`ru_maxrss` of the kernel) belongs to that notebook alone; on a GPU the kernel also reports
`torch.cuda.max_memory_allocated`.  The total is the last line.

--write stores the executed notebook (plots, tables, printed numbers) so that it reads on GitHub without
running, and records the sha256 of its code cells in the notebook's metadata (``fmlab.code_sha256``):
`tests/test_notebook_outputs.py` fails when a notebook's code changed after its outputs were made.
Write only from a complete, passing CPU run (the default device on a machine without a GPU).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REPORT = "FMLAB_BENCH_REPORT"
_REPORT_CELL = (f"import json as _j, torch as _t\n"
                f"print('{_REPORT}', _j.dumps({{'gpu_peak_mb': _t.cuda.max_memory_allocated() / 2**20 "
                f"if _t.cuda.is_available() else None}}))")


def code_sha256(nb) -> str:
    """sha256 of a notebook's code cells, in order (what `--write` records and the test re-computes)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode())
            h.update(b"\x00")
    return h.hexdigest()


def run_one(path: str, write: bool) -> dict:
    """Execute one notebook in this process (its kernel is our child); print a JSON line."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_REPORT_CELL))
    start = time.perf_counter()
    error = None
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    except Exception as e:  # report, don't stop the table
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
    seconds = time.perf_counter() - start
    report = nb.cells.pop()
    gpu = None
    for out in report.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(_REPORT):
                gpu = json.loads(line.split(" ", 1)[1])["gpu_peak_mb"]
    if write and error is None:
        nb.metadata.setdefault("fmlab", {})["code_sha256"] = code_sha256(nb)
        nbformat.write(nb, path)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"notebook": Path(path).name, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
            "gpu_peak_mb": None if gpu is None else round(gpu), "error": error}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--write", action="store_true", help="store outputs and the code hash in the notebooks")
    parser.add_argument("--device", choices=["cpu", "cuda", "mps"], help="sets FMLAB_DEVICE for the kernels")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="sets FMLAB_PRECISION (CUDA only)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.write)))
        return 0
    env = dict(os.environ)
    if args.device:
        env["FMLAB_DEVICE"] = args.device
    if args.precision:
        env["FMLAB_PRECISION"] = args.precision
    paths = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; device {args.device or 'auto'}, precision {args.precision or 'auto'}")
    print(f"{'notebook':40s} {'seconds':>8s} {'peak MB':>8s} {'GPU MB':>7s}")
    total, failed = 0.0, 0
    for path in paths:
        cmd = [sys.executable, __file__, "--one", path] + (["--write"] if args.write else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        try:
            row = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            row = {"notebook": Path(path).name, "seconds": float("nan"), "peak_rss_mb": 0, "gpu_peak_mb": None,
                   "error": out.stderr[-200:]}
        total += row["seconds"]
        failed += bool(row["error"])
        gpu = "" if row["gpu_peak_mb"] is None else row["gpu_peak_mb"]
        flag = f"  FAILED {row['error']}" if row["error"] else ""
        print(f"{row['notebook']:40s} {row['seconds']:8.1f} {row['peak_rss_mb']:8d} {gpu!s:>7s}{flag}", flush=True)
    print(f"{'total':40s} {total:8.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
