"""fmlab's training loop on 2 processes (torchrun, DDP on gloo) computes the 1-process run.

The 2-process test launches `python -m torch.distributed.run --standalone --nproc_per_node 2 -m fmlab.distributed`
on the CPU and compares its loss curve with the same recipe run in this process; a few seconds of training.
"""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from fmlab import distributed, memory
from fmlab.batches import lm_batches
from fmlab.gpt import GPTConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(steps=6, batch_size=8, warmup=2)


def test_shards_partition_every_global_batch():
    stream = torch.arange(1000)
    batcher = lm_batches(stream, 16)
    full = [batcher(8, torch.Generator().manual_seed(3)) for _ in range(1)][0]
    parts = [distributed.shard(batcher, r, 4)(8, torch.Generator().manual_seed(3)) for r in range(4)]
    for key in ("tokens", "targets"):
        assert torch.equal(torch.cat([p[key] for p in parts]), full[key])
    assert not torch.equal(parts[0]["tokens"], parts[1]["tokens"])
    with pytest.raises(ValueError, match="divide"):
        distributed.shard(batcher, 0, 3)(8, torch.Generator())
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(batcher, 2, 2)


def test_global_mean_loss_is_the_plain_loss_without_a_process_group():
    model = torch.nn.Linear(3, 5)
    batch = {"tokens": torch.randn(2, 4, 3), "targets": torch.randint(0, 5, (2, 4))}
    loss_fn = lambda m, b: torch.nn.functional.cross_entropy(m(b["tokens"]).flatten(0, 1), b["targets"].flatten())
    assert torch.equal(distributed.global_mean_loss(loss_fn)(model, batch), loss_fn(model, batch))


def test_sharded_bytes_divide_what_each_scheme_shards():
    cfg = GPTConfig(vocab_size=904, block_size=64)
    step = memory.estimate(cfg, 16, 64)               # one rank's step (batch 32 over 2 ranks)
    table = distributed.sharded_bytes(step, 2)
    P = memory.param_count(cfg)
    assert table.loc["DDP (replicated)", "weights"] == 4 * P
    assert table.loc["ZeRO-1 (optimizer sharded)", "optimizer"] == step.optimizer / 2
    assert table.loc["ZeRO-2 (+ gradients)", "gradients"] == 2 * P
    assert table.loc["ZeRO-3 / FSDP (+ weights)", "weights"] == 2 * P
    assert (table["activations"] == step.activations).all()      # activations are per rank in every scheme
    totals = table.sum(axis=1)
    assert totals.is_monotonic_decreasing


def test_two_processes_give_the_one_process_loss_curve(tmp_path):
    out = tmp_path / "two.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fmlab.distributed", "--steps", str(TINY["steps"]), "--batch-size", str(TINY["batch_size"]),
           "--warmup", str(TINY["warmup"]),
           "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    two = pd.read_csv(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import dataclasses
        one = distributed.run(dataclasses.replace(distributed.RECIPE, **TINY), device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert (two["world_size"] == 2).all() and (one["world_size"] == 1).all()
    assert len(two) == len(one) == TINY["steps"] + 1
    assert one["loss"].iloc[1] - one["loss"].iloc[-1] > 0.3          # it trained
    gap = (two["loss"] - one["loss"]).abs().max()
    assert gap < 1e-4, f"2-process loss curve differs from the 1-process one by {gap:.2e}"
