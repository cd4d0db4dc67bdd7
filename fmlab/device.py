"""Where the course runs: device, numeric precision, seeds and CPU threads.

- device: CUDA > Apple MPS > CPU, or whatever ``FMLAB_DEVICE`` says (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
- precision: bf16 autocast on GPUs that do bf16 *natively* (compute capability >= 8.0: A100, L4, H100).
  ``torch.cuda.is_bf16_supported()`` is not enough: it says True on a T4 (sm 7.5), which only emulates bf16,
  slowly.  There we use fp16 with a gradient scaler.  On MPS and CPU: fp32 (at our size fp32 is fast enough,
  and MPS's fp16 autocast has no gradient scaler).  ``FMLAB_PRECISION=fp16|bf16|fp32`` overrides on CUDA --
  e.g. to test the T4 path (fp16 + scaler) on any CUDA GPU -- and on CPU, where it *emulates* the GPU
  numerics for testing: CPU autocast runs the same ops (matrix products, attention) in bf16 or fp16, and fp16
  gets the same gradient scaler.  Off by default: on a learner's CPU the course runs in fp32.  It checks that
  a claim holds in every precision (`bench/seeds.py --precision bf16`); it is not a way to go faster.
- seeds: `seed_everything` seeds Python, NumPy and torch; same seed, same numbers on CPU.
- CPU threads: for models this small, more threads can be *slower* (thread start-up costs more than the
  matrix work).  `tune_cpu_threads` times a few training steps with 1 and with all cores and keeps the
  faster (``FMLAB_THREADS`` overrides it).  `setup` tunes *before* seeding, so the timing run never changes
  the random numbers a notebook then draws.
"""
from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext

import numpy as np
import torch

__all__ = ["setup", "pick_device", "autocast_dtype", "autocast", "needs_grad_scaler", "seed_everything",
           "tune_cpu_threads", "describe"]

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(prefer: str | None = None) -> torch.device:
    """The best available device, or `prefer` / $FMLAB_DEVICE when given."""
    name = prefer or os.environ.get("FMLAB_DEVICE")
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"FMLAB_DEVICE={name} but no CUDA GPU is visible; unset it to use the CPU")
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise RuntimeError(f"FMLAB_DEVICE={name} but only {torch.cuda.device_count()} GPU(s) are visible")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("FMLAB_DEVICE=mps but MPS is not available; unset it to use the CPU")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _forced_precision() -> str | None:
    forced = os.environ.get("FMLAB_PRECISION") or None
    if forced is not None and forced not in _PRECISIONS:
        raise ValueError(f"FMLAB_PRECISION={forced!r}: use one of {', '.join(_PRECISIONS)}, or unset it")
    return forced


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on natively-bf16 GPUs, fp16 on older CUDA GPUs, None (fp32, no autocast) on MPS and CPU.

    $FMLAB_PRECISION overrides this on CUDA and CPU (on CPU: an emulation of the GPU numerics, for testing).
    """
    forced = _forced_precision()
    if device.type == "mps":
        if forced not in (None, "fp32"):
            raise ValueError(f"FMLAB_PRECISION={forced} is not supported on Apple MPS (no gradient scaler "
                             "there); unset it, or use FMLAB_DEVICE=cpu to emulate it on the CPU")
        return None
    if forced is not None:
        return _PRECISIONS[forced]
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def needs_grad_scaler(device: torch.device) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and does not."""
    return autocast_dtype(device) == torch.float16


def autocast(device: torch.device):
    """Context manager for mixed precision on `device` (a no-op in fp32: MPS, and CPU unless forced)."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a CPU generator seeded the same way."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _time_steps(model: torch.nn.Module, tokens: torch.Tensor, n_steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)    # lr 0: the timing leaves the weights alone
    start = time.perf_counter()
    for _ in range(n_steps):
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / n_steps


_TUNED: dict[str, int] = {}   # per process: measured once, then reused by every later call


def _threads_from_env() -> int | None:
    value = os.environ.get("FMLAB_THREADS")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"FMLAB_THREADS={value!r} is not a number; use e.g. FMLAB_THREADS=1") from None
    if n < 1:
        raise ValueError(f"FMLAB_THREADS={value} must be >= 1")
    return n


def tune_cpu_threads(model: torch.nn.Module | None = None, batch_size: int = 32, n_steps: int = 3,
                     remeasure: bool = False) -> int:
    """Set torch's CPU thread count to the faster of 1 and all cores, measured on `model`; returns it.

    The measurement takes a second or two and is repeated in every new process (a machine's load changes,
    so a stored answer can go stale); $FMLAB_THREADS skips it.  Its token batch comes from its own generator;
    the throwaway model it builds when none is given draws its weights from torch's global generator, whose
    state is saved before and restored after, so the numbers a notebook draws next are unchanged.
    """
    n = _threads_from_env()
    if n is not None:
        torch.set_num_threads(n)
        return n
    if "threads" in _TUNED and not remeasure:
        torch.set_num_threads(_TUNED["threads"])
        return _TUNED["threads"]
    state = torch.random.get_rng_state()
    try:
        if model is None:
            from .gpt import GPTConfig, MiniGPT
            model = MiniGPT(GPTConfig(vocab_size=1000, block_size=64))
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, model.cfg.vocab_size, (batch_size, model.cfg.block_size), generator=gen)
        timings = {}
        for n in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(n)
            _time_steps(model, tokens, 1)                       # warm-up
            timings[n] = _time_steps(model, tokens, n_steps)
    finally:
        torch.random.set_rng_state(state)
    best = min(timings, key=timings.get)
    torch.set_num_threads(best)
    _TUNED["threads"] = best
    return best


def describe(device: torch.device) -> str:
    """One line: device, precision, threads -- printed at the top of every notebook."""
    dtype = autocast_dtype(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    prec = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + grad scaler"}[dtype]
    if dtype is not None and device.type == "cpu":
        prec += " (CPU emulation of GPU numerics, FMLAB_PRECISION)"
    return f"device={name} precision={prec} torch={torch.__version__} cpu_threads={torch.get_num_threads()}"


def setup(seed: int = 0, prefer: str | None = None) -> torch.device:
    """What every notebook does first: pick the device, tune CPU threads, seed everything, say what it chose.

    Seeding comes last, so `setup(0)` leaves the same random state however often it is called and whatever
    the thread choice.
    """
    dev = pick_device(prefer)
    if dev.type == "cpu":
        tune_cpu_threads()
    seed_everything(seed)
    print(describe(dev))
    return dev
