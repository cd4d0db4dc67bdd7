"""Run every notebook as a learner would and report wall-seconds and peak memory per notebook.

    python bench/course.py [notebooks/01_pretraining.ipynb ...]

Each notebook runs in a fresh kernel, in its own child process, so the peak resident memory reported
(`ru_maxrss` of the kernel) belongs to that notebook alone.  The total is the last line.
"""
from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_one(path: str) -> dict:
    """Execute one notebook in this process (its kernel is our child); print a JSON line."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = None
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    except Exception as e:  # report, don't stop the table
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:120]
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"notebook": Path(path).name, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb), "error": error}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(argv[1])))
        return
    paths = argv or sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(f"machine: {platform.machine()} {platform.processor()}, {__import__('os').cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"{'notebook':40s} {'seconds':>8s} {'peak MB':>8s}")
    total = 0.0
    for path in paths:
        out = subprocess.run([sys.executable, __file__, "--one", path], capture_output=True, text=True)
        row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
            "notebook": Path(path).name, "seconds": float("nan"), "peak_rss_mb": 0, "error": out.stderr[-200:]}
        total += row["seconds"]
        flag = f"  FAILED {row['error']}" if row["error"] else ""
        print(f"{row['notebook']:40s} {row['seconds']:8.1f} {row['peak_rss_mb']:8d}{flag}", flush=True)
    print(f"{'total':40s} {total:8.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
