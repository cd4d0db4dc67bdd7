"""What a GPU would wait on, counted on the CPU: PyTorch operations and host synchronisations per notebook.

    python bench/ops.py                                   # every notebook
    python bench/ops.py notebooks/04_lora.ipynb           # some
    python bench/ops.py --json bench/results/ops.json     # also keep the table as JSON (before/after comparisons)

A 0.9 M-parameter model does almost no arithmetic per operation, so on a GPU a notebook's time is set by the
number of operations launched (each costs a few microseconds of launch overhead, whatever its size), by every
host-device synchronisation (the CPU waits for the GPU to drain: `.item()`, `bool(tensor)`, `.tolist()`,
`.cpu()`, data-dependent shapes such as `nonzero`), and by the fixed start-up of each kernel (Python, imports).
None of these depends on the hardware, so they can be counted where there is no GPU: this is the proxy a developer
optimises on a laptop; the GPU seconds are what it predicts.

How it counts. A cell injected before the notebook's first cell enters a `TorchDispatchMode` that sees every
ATen operation the kernel runs (forward, backward -- the autograd engine runs CPU graphs on the calling thread --
and optimizer).  It follows what a GPU run would keep on the GPU: parameters, whatever is moved with
`.to(<a torch.device>)`, and everything computed from them.  Three counts per notebook:
- operations: every dispatched ATen operation (on a GPU each costs host time to dispatch, even a view);
- kernels: operations on device tensors that launch device work (views and other metadata-only operations do not);
- host syncs: reads of a device tensor on the host -- `.item()`, `bool()`, `.tolist()`, `.cpu()`, `.numpy()`,
  `.to("cpu")`, data-dependent shapes (`nonzero`, `unique`, ...).  Optimizers read their step counters with
  `.item()`, but those counters stay on the CPU on a GPU too: not counted.
Each operation is attributed to a phase by the innermost function on the Python stack whose name says what it is
doing: generation (generate, sample, rollout, ...), evaluation (evaluate, perplexity, accuracy, score, ...),
training (train, fit, step, backward, ...); anything else is setup.  Start-up is the kernel's start plus the
notebook's first import cell.  The counting slows the notebook several-fold: the seconds it takes are not the
notebook's seconds (bench/course.py measures those).  `torchrun` children (notebook 11) are not counted.
`--sites` also prints where the most host syncs come from.  The total is the last line.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REPORT = "FMLAB_OPS_REPORT"
PHASES = ("training", "generation", "evaluation", "setup")

# Runs in the kernel before the notebook's first cell: count every dispatched op, by phase.
_COUNTER_CELL = r'''
import re as _re, sys as _sys, torch as _torch
from torch.utils._python_dispatch import TorchDispatchMode as _Mode
from torch.utils._pytree import tree_flatten as _flatten

_SYNC_OPS = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal", "unique", "_unique2", "unique_consecutive",
             "masked_select", "repeat_interleave"}
_RULES = [("generation", _re.compile(r"generat|sampl|rollout|complet|speculat|draft|answer")),
          ("evaluation", _re.compile(r"evaluat|perplex|accura|recall|score|judge|win_rate|metric|probe|exact|bleu|rouge")),
          ("training", _re.compile(r"train|fit|step|backward|optimi|update|learn"))]
_PHASE_OF_CODE, _OPS, _KERNELS, _SYNCS, _WHERE = {}, {}, {}, {}, {}


def _phase_of(code):
    if code not in _PHASE_OF_CODE:
        name, file = code.co_name.lower(), code.co_filename
        phase = None
        if "/torch/" not in file and "_pytest" not in file and name not in ("<module>", "<lambda>"):
            phase = next((p for p, rx in _RULES if rx.search(name)), None)
        _PHASE_OF_CODE[code] = phase
    return _PHASE_OF_CODE[code]


def _current_phase():
    frame = _sys._getframe(2)
    while frame is not None:
        phase = _phase_of(frame.f_code)
        if phase:
            return phase
        frame = frame.f_back
    return "setup"


def _where():
    # the innermost fmlab or notebook function on the stack: where a sync comes from
    frame = _sys._getframe(3)
    while frame is not None and ("/torch/" in frame.f_code.co_filename or ("fmlab" not in frame.f_code.co_filename
                                 and "ipykernel" not in frame.f_code.co_filename)):
        frame = frame.f_back
    return "?" if frame is None else f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"


def _count_sync(what):
    phase = _current_phase()
    _SYNCS[phase] = _SYNCS.get(phase, 0) + 1
    key = f"{what} in {_where()}"
    _WHERE[key] = _WHERE.get(key, 0) + 1


# "On the device": what a GPU run keeps on the GPU -- parameters, whatever is moved with .to(<a torch.device>),
# and everything computed from them.  Reading such a tensor on the host is a synchronisation.
def _on_device(t):
    return isinstance(t, _torch.nn.Parameter) or getattr(t, "_fmlab_on_device", False)


def _mark(tensors):
    for t in tensors:
        if isinstance(t, _torch.Tensor):
            try:
                t._fmlab_on_device = True
            except Exception:
                pass


def _in_optimizer():
    # optimizers read their step counters with .item(); those counters stay on the CPU on a GPU too
    frame = _sys._getframe(2)
    while frame is not None and "/torch/" in frame.f_code.co_filename:
        if "/torch/optim/" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


_METADATA = {"detach", "lift_fresh", "alias", "_unsafe_view", "view", "t", "transpose", "permute", "expand",
             "select", "slice", "split", "split_with_sizes", "squeeze", "unsqueeze", "unbind", "narrow",
             "as_strided", "_local_scalar_dense", "_reshape_alias"}


class _Count(_Mode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        phase = _current_phase()
        _OPS[phase] = _OPS.get(phase, 0) + 1
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in _flatten((args, kwargs))[0] if isinstance(a, _torch.Tensor)]
        if any(_on_device(a) for a in inputs):
            _mark(_flatten(out)[0])
            name = func.overloadpacket.__name__
            if not (func.is_view or name in _METADATA):   # a view only changes metadata: no kernel
                _KERNELS[phase] = _KERNELS.get(phase, 0) + 1
            if name in _SYNC_OPS and not _in_optimizer():
                _count_sync(name)
        return out


def _on_host(tensor):
    if isinstance(tensor, _torch.Tensor):
        try:
            tensor._fmlab_on_device = False
        except Exception:
            pass
    return tensor


def _reading(method):
    def wrapper(self, *a, **k):
        if _on_device(self):
            _count_sync(method.__name__)
        return _on_host(method(self, *a, **k))           # what .cpu() returns lives on the host
    return wrapper


def _moving(method):
    def wrapper(self, *a, **k):
        target = k.get("device", a[0] if a else None)
        out = method(self, *a, **k)
        if isinstance(target, _torch.device) or isinstance(target, str) and not target.startswith("cpu"):
            _mark([out])                                  # .to(device): the GPU copy of a host tensor
        elif isinstance(target, str) and _on_device(self):
            _count_sync("to('cpu')")                      # .to("cpu"): back to the host
            _on_host(out)
        return out
    return wrapper


for _name in ("tolist", "cpu", "numpy"):
    setattr(_torch.Tensor, _name, _reading(getattr(_torch.Tensor, _name)))
_torch.Tensor.to = _moving(_torch.Tensor.to)
_COUNTER = _Count()
_COUNTER.__enter__()
'''

_REPORT_CELL = (f"_COUNTER.__exit__(None, None, None)\nimport json as _json\n"
                f"print('{_REPORT}', _json.dumps({{'ops': _OPS, 'kernels': _KERNELS, 'syncs': _SYNCS, 'sync_sites': dict(sorted(_WHERE.items(), key=lambda kv: -kv[1])[:8])}}))")


def _seconds(cell) -> float:
    """A cell's execution time from nbclient's timing metadata."""
    from datetime import datetime
    t = cell.metadata.get("execution", {})
    start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def run_one(path: str) -> dict:
    """Execute one notebook with the counter; return its counts (printed as one JSON line)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_COUNTER_CELL))
    nb.cells.append(nbformat.v4.new_code_cell(_REPORT_CELL))
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    start = time.perf_counter()
    error = None
    with client.setup_kernel():
        kernel_start = time.perf_counter() - start
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except Exception as e:  # report in the table
            what = f"{getattr(e, 'ename', '')}: {getattr(e, 'evalue', '')}" if hasattr(e, "ename") else str(e)
            error = f"{type(e).__name__} in cell {index}: {what.splitlines()[0] if what else ''}"[:200]
    report = {}
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith(_REPORT):
                report = json.loads(line.split(" ", 1)[1])
    code = [c for c in nb.cells[1:-1] if c.cell_type == "code"]
    first_import = next((c for c in code if "import" in c.source and "fmlab" in c.source), None)
    startup = kernel_start + _seconds(nb.cells[0]) + (_seconds(first_import) if first_import else 0.0)
    per_phase = {key: {p: report.get(key, {}).get(p, 0) for p in PHASES} for key in ("ops", "kernels", "syncs")}
    return {"notebook": Path(path).name, **per_phase, "startup_s": round(startup, 1),
            "counted_s": round(time.perf_counter() - start, 1), "sync_sites": report.get("sync_sites", {}),
            "error": error}


def _table(rows: list[dict]) -> None:
    """ops: every dispatched operation (per phase); kernels: those a GPU would launch; syncs: host waits."""
    print(f"{'notebook':32s} {'ops':>10s} " + " ".join(f"{p[:5]:>9s}" for p in PHASES)
          + f" {'kernels':>9s} {'syncs':>7s} " + " ".join(f"{p[:5]:>6s}" for p in PHASES) + f" {'start s':>7s}")
    totals = {"ops": 0, "kernels": 0, "syncs": 0, "startup_s": 0.0}
    for r in rows:
        n = {key: sum(r[key].values()) for key in ("ops", "kernels", "syncs")}
        for key in n:
            totals[key] += n[key]
        totals["startup_s"] += r["startup_s"]
        flag = f"  FAILED {r['error']}" if r["error"] else ""
        print(f"{r['notebook']:32s} {n['ops']:10,d} " + " ".join(f"{r['ops'][p]:9,d}" for p in PHASES)
              + f" {n['kernels']:9,d} {n['syncs']:7,d} " + " ".join(f"{r['syncs'][p]:6,d}" for p in PHASES)
              + f" {r['startup_s']:7.1f}{flag}", flush=True)
    print(f"total: {totals['ops']:,d} operations, {totals['kernels']:,d} kernels, {totals['syncs']:,d} host syncs, "
          f"{totals['startup_s']:.1f} s of start-up, {len(rows)} notebooks")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--sites", action="store_true", help="also print where the most syncs come from")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one)))
        return 0
    paths = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    rows = []
    for path in paths:  # one kernel at a time, each in a child process
        out = subprocess.run([sys.executable, __file__, "--one", path], capture_output=True, text=True)
        try:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        except (IndexError, json.JSONDecodeError):
            rows.append({"notebook": Path(path).name, "ops": dict.fromkeys(PHASES, 0),
                         "kernels": dict.fromkeys(PHASES, 0), "syncs": dict.fromkeys(PHASES, 0), "startup_s": 0.0, "counted_s": 0.0,
                         "error": (out.stderr.strip().splitlines() or ["no output"])[-1][:160]})
    if args.sites:
        for r in rows:
            print(f"{r['notebook']}: " + "; ".join(f"{k} x{v:,d}" for k, v in r.get("sync_sites", {}).items()))
    _table(rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
