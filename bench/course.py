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

A failure is reported in the table (the cell, the exception and its message) and in a log per notebook,
``bench/results/<device>-<precision>/<notebook>.log``: the failing cell's source, the traceback and the kernel's
stderr -- one run is enough to diagnose it.  ``--jobs N`` runs N notebooks side by side (on a GPU machine with
many cores; on 2 CPU cores it distorts the timings, so the default is one at a time); ``--timeout S`` bounds each.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    error, detail = None, ""
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    except Exception as e:  # report, don't stop the table
        error, detail = _describe_failure(nb, e)
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
            "gpu_peak_mb": None if gpu is None else round(gpu), "error": error, "detail": detail}


def _describe_failure(nb, exc: Exception) -> tuple[str, str]:
    """(one line for the table, the failing cell and its traceback for the log)."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                line = f"cell {i}: {out.get('ename')}: {out.get('evalue', '')}".splitlines()[0][:200]
                trace = ansi.sub("", "\n".join(out.get("traceback", [])))
                return line, f"--- failing cell {i}\n{cell.source}\n--- traceback\n{trace}\n"
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:200], f"{type(exc).__name__}: {text}\n"


def _launch(path: str, write: bool, env: dict, timeout: float, logs: Path) -> dict:
    """Run one notebook in a child process (its kernel is the child's child); log a failure in full."""
    cmd = [sys.executable, __file__, "--one", path] + (["--write"] if write else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        stdout, stderr = out.stdout, out.stderr
    except subprocess.TimeoutExpired as e:
        stdout, stderr = "", f"timed out after {timeout:.0f} s\n{(e.stderr or b'').decode(errors='replace')}"
    try:
        row = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        row = {"notebook": Path(path).name, "seconds": float("nan"), "peak_rss_mb": 0, "gpu_peak_mb": None,
               "error": (stderr.strip().splitlines() or ["no output"])[-1][:200], "detail": ""}
    if row["error"]:
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / (Path(path).stem + ".log")
        log.write_text(f"{row['error']}\n{row.pop('detail', '')}\n--- kernel and runner stderr (last 8000 chars)\n"
                       f"{stderr[-8000:]}")
        row["log"] = str(log.relative_to(ROOT))
    row.pop("detail", None)
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--write", action="store_true", help="store outputs and the code hash in the notebooks")
    parser.add_argument("--device", choices=["cpu", "cuda", "mps"], help="sets FMLAB_DEVICE for the kernels")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                        help="sets FMLAB_PRECISION (on CPU: an emulation of the GPU numerics)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks side by side (timings then overlap)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per notebook")
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
    logs = ROOT / "bench" / "results" / f"{args.device or 'auto'}-{args.precision or 'auto'}"
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; device {args.device or 'auto'}, precision {args.precision or 'auto'}, "
          f"{args.jobs} at a time")
    print(f"{'notebook':40s} {'seconds':>8s} {'peak MB':>8s} {'GPU MB':>7s}")
    total, failed = 0.0, 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(lambda p: _launch(p, args.write, env, args.timeout, logs), paths):
            total += row["seconds"]
            failed += bool(row["error"])
            gpu = "" if row["gpu_peak_mb"] is None else row["gpu_peak_mb"]
            flag = f"  FAILED {row['error']} (log: {row['log']})" if row["error"] else ""
            print(f"{row['notebook']:40s} {row['seconds']:8.1f} {row['peak_rss_mb']:8d} {gpu!s:>7s}{flag}", flush=True)
    print(f"{'total':40s} {total:8.1f}   ({len(paths) - failed} of {len(paths)} passed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
