"""Data parallelism: the course's one training loop on N processes, with torchrun and DistributedDataParallel.

    torchrun --standalone --nproc_per_node 2 -m fmlab.distributed --device cpu --out curve.csv    # 2 CPU processes
    torchrun --standalone --nproc_per_node 8 -m fmlab.distributed --device cuda --out curve.csv   # 8 GPUs, one node

torchrun starts N copies of the script (ranks 0..N-1) and tells each its RANK, LOCAL_RANK and WORLD_SIZE;
they join one process group: gloo on CPUs, NCCL on GPUs (one GPU per rank, ``cuda:LOCAL_RANK``).

Data parallelism (DDP): every rank holds a full copy of the model, its gradients and the optimizer state.
Each step the global batch of B rows is cut into N shards of B/N rows; each rank runs forward and backward on
its own shard, and DDP averages the gradients across ranks (an all-reduce, overlapped with backward), so all
ranks apply the same update and the copies stay identical.  When every shard carries as many loss tokens
(true for language-model windows), the mean of the shard gradients *is* the gradient of the global batch:
N processes compute the 1-process run, up to float rounding (``tests/test_distributed.py`` checks it).

How it plugs into `fmlab.train.train`, unchanged:

- `shard`: every rank draws the same global batch (train() seeds its batch generator with ``cfg.seed`` on every
  rank) and keeps rows ``[rank*B/N, (rank+1)*B/N)`` -- as ``DistributedSampler`` hands each rank its slice of
  a permutation all ranks share.  ``cfg.batch_size`` stays the *global* batch.
- the model is wrapped in ``DistributedDataParallel``; train() calls it like any module and the all-reduce
  happens inside ``backward()``, before train() clips and steps.
- `global_mean_loss`: the loss train() logs is the mean over ranks (the global batch's loss), while each rank
  back-propagates its own shard's loss (DDP does the averaging).

What DDP does *not* save: weights, gradients and AdamW state (16 bytes per parameter) are replicated on every
rank; only activations shrink with the per-rank batch.  ZeRO (Rajbhandari et al. 2020) shards them instead:
stage 1 the optimizer state, stage 2 also the gradients, stage 3 -- PyTorch's FSDP -- also the weights, each
rank gathering a layer's weights just before using it.  The fp32 master weights of mixed precision are part of
the optimizer state stage 1 already shards.  `sharded_bytes` turns one measured or estimated step
(`fmlab.memory.measure` / `estimate`) into the bytes per rank under each scheme.

Simplifications vs real multi-GPU training: one node (no multi-node rendezvous, no tensor or pipeline
parallelism); every rank draws the full global batch and slices it (cheap here; a real loader reads only its
shard); no gradient accumulation or mixed-precision communication; FSDP/ZeRO are accounted for, not run.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.distributed as dist

from .batches import Batcher, lm_batches
from .memory import FP32, Memory, Precision
from .train import TrainConfig, default_loss, train

__all__ = ["shard", "global_mean_loss", "init", "run", "launch", "sharded_bytes", "main", "RECIPE"]

# The notebook's run: the first steps of pre-training from random weights on the Python reference text, with
# foundation.PRETRAIN's peak learning rate; 16 windows of 64 tokens per step (8 per rank on 2 processes).
RECIPE = TrainConfig(steps=16, batch_size=16, lr=3e-3, warmup=4, min_lr_ratio=0.1, seed=0, progress=False)


def shard(batcher: Batcher, rank: int, world_size: int) -> Batcher:
    """A batcher giving rank `rank` its rows of every global batch that `batcher` draws."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        if batch_size % world_size:
            raise ValueError(f"the global batch ({batch_size}) must divide by the number of processes "
                             f"({world_size}); e.g. batch_size={world_size * max(1, batch_size // world_size)}")
        batch = batcher(batch_size, generator)                 # the same rows on every rank (same generator)
        per_rank = batch_size // world_size
        return {k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in batch.items()}
    return get_batch


def global_mean_loss(loss_fn: Callable = default_loss) -> Callable:
    """loss_fn whose *value* is the mean over ranks and whose *gradient* is this rank's own shard's.

    DDP averages the gradients; this only makes the logged loss that of the global batch.
    """
    def wrapped(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        local = loss_fn(model, batch)
        if not (dist.is_available() and dist.is_initialized()):
            return local
        total = local.detach().clone()
        dist.all_reduce(total)                                 # sum over ranks
        return local + (total / dist.get_world_size() - local).detach()
    return wrapped


def init(device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; joins the process group when world > 1.

    device: 'cpu' or 'cuda' (default: $FMLAB_DEVICE, else CUDA when available); on CUDA rank r uses GPU
    LOCAL_RANK, one GPU per process.
    """
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    want = device or os.environ.get("FMLAB_DEVICE", "cuda")
    if torch.cuda.is_available() and want.startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank {rank} wants GPU {local_rank} but {torch.cuda.device_count()} are visible: start "
                               "at most one process per GPU (--nproc_per_node), or train on CPUs with --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        if "WORLD_SIZE" in os.environ:
            torch.set_num_threads(1)   # launched by torchrun: N processes share the cores, one thread each
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def run(cfg: TrainConfig = RECIPE, corpus: str = "python", device: str | None = None) -> pd.DataFrame:
    """Pre-train a MiniGPT of the base model's shape from random weights on `corpus`, on every rank of the
    process group (or alone); returns the history -- the same on every rank."""
    from . import foundation
    from .gpt import MiniGPT
    rank, world, device = init(device)
    tokenizer = foundation.load_tokenizer()
    torch.manual_seed(cfg.seed)                 # the same initial weights on every rank (DDP also broadcasts)
    model = MiniGPT(foundation.pretrain_config(len(tokenizer))).to(device)
    batches = shard(lm_batches(foundation.corpus_stream(corpus), model.cfg.block_size), rank, world)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    cfg = dataclasses.replace(cfg, progress=cfg.progress and rank == 0)
    history = train(model, batches, cfg, loss_fn=global_mean_loss())
    history["world_size"] = world
    return history


def launch(nproc: int, argv: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc_per_node NPROC -m fmlab.distributed ARGV`` as a program of its own.

    Isolated from the calling process, which is what a Jupyter kernel needs: a session of its own (a signal that
    torchrun's agent sends to its process group cannot reach the kernel), no inherited stdin or other file
    descriptors (the kernel's ZeroMQ sockets stay the kernel's), one CPU thread per rank, fmlab importable from
    this checkout, and a timeout.  Returns the finished process (``returncode``, ``stdout``, ``stderr``).
    """
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "fmlab.distributed", *map(str, argv)]
    return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          close_fds=True, start_new_session=True, timeout=timeout)


def sharded_bytes(per_rank: Memory, world_size: int, precision: Precision = FP32) -> pd.DataFrame:
    """Bytes per rank of one training step under DDP and ZeRO stages 1-3 (FSDP), from one rank's step.

    ZeRO's accounting (Rajbhandari et al. 2020, section 5): with mixed-precision Adam a model of Psi parameters
    holds 2 Psi bytes of fp16 weights, 2 Psi of fp16 gradients and K Psi of optimizer state, K = 12: the fp32
    master weights, Adam's momentum and variance.  Stage 1 shards the K Psi over the N ranks, stage 2 also the
    gradients, stage 3 also the weights:  DDP (2 + 2 + K) Psi,  ZeRO-1 (2 + 2) Psi + K Psi / N,
    ZeRO-2 2 Psi + (2 + K) Psi / N,  ZeRO-3 (2 + 2 + K) Psi / N.  Activations are per rank in every scheme.

    per_rank: `memory.measure` of the model on one rank's shard of the batch, or `memory.estimate` of it.
    precision: the precision of that step; the fp32 master copy it keeps (inside ``per_rank.weights``, all
    parameters training) is counted where ZeRO counts it, in the "optimizer" column.
    """
    master = per_rank.weights * precision.master // (precision.weights + precision.master)
    states = {"weights": per_rank.weights - master, "gradients": per_rank.gradients,
              "optimizer": per_rank.optimizer + master}
    w = world_size
    sharded = {"DDP (replicated)": (), "ZeRO-1 (optimizer sharded)": ("optimizer",),
               "ZeRO-2 (+ gradients)": ("optimizer", "gradients"),
               "ZeRO-3 / FSDP (+ weights)": ("optimizer", "gradients", "weights")}
    rows = {name: {**{k: v / w if k in parts else v for k, v in states.items()},
                   "activations": per_rank.activations} for name, parts in sharded.items()}
    return pd.DataFrame(rows).T


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node N -m fmlab.distributed",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=RECIPE.steps)
    parser.add_argument("--batch-size", type=int, default=RECIPE.batch_size, help="global batch (all ranks)")
    parser.add_argument("--lr", type=float, default=RECIPE.lr)
    parser.add_argument("--warmup", type=int, default=RECIPE.warmup)
    parser.add_argument("--seed", type=int, default=RECIPE.seed)
    parser.add_argument("--corpus", default="python", choices=["pretrain", "station", "python"])
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: $FMLAB_DEVICE, else CUDA if present")
    parser.add_argument("--out", help="write the loss curve (rank 0) to this CSV file")
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(RECIPE, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              warmup=args.warmup, progress=True)
    history = run(cfg, args.corpus, args.device)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        if args.out:
            history.to_csv(args.out, index=False)
        print(f"{int(history['world_size'].iloc[0])} process(es), {cfg.steps} steps of {cfg.batch_size} x 64 "
              f"tokens: loss {history['loss'].iloc[1]:.3f} -> {history['loss'].iloc[-1]:.3f}, "
              f"{history['seconds'].iloc[-1]:.1f} s")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
