"""fmlab's training loop on 2 processes (torchrun, DDP on gloo) computes the 1-process run.

The 2-process test launches `python -m torch.distributed.run --standalone --nproc_per_node 2 -m fmlab.distributed`
on the CPU and compares its loss curve with the same recipe run in this process; a few seconds of training.
"""
import pandas as pd
import pytest
import torch

from fmlab import distributed, memory
from fmlab.batches import lm_batches
from fmlab.gpt import GPTConfig

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


def test_zero_follows_the_paper_for_mixed_precision_adam():
    """Rajbhandari et al. 2020: 2 Psi fp16 weights + 2 Psi fp16 gradients + K Psi optimizer state (K = 12: fp32
    master weights, momentum, variance); stage 1 shards K Psi, stage 2 also the gradients, stage 3 the weights."""
    cfg, N = memory.gpt_7b(), 8
    psi, counters = memory.param_count(cfg), 4 * memory.param_tensor_count(cfg)   # AdamW's step counters
    step = memory.estimate(cfg, 1, 2048, memory.MIXED)
    table = distributed.sharded_bytes(step, N, memory.MIXED)
    K_psi = 12 * psi + counters
    paper = {"DDP (replicated)": 2 * psi + 2 * psi + K_psi,
             "ZeRO-1 (optimizer sharded)": 2 * psi + 2 * psi + K_psi / N,
             "ZeRO-2 (+ gradients)": 2 * psi + (2 * psi + K_psi) / N,
             "ZeRO-3 / FSDP (+ weights)": (2 * psi + 2 * psi + K_psi) / N}
    for scheme, states in paper.items():
        got = table.loc[scheme, ["weights", "gradients", "optimizer"]].sum()
        assert got == pytest.approx(states, rel=1e-12), scheme
        assert table.loc[scheme, "activations"] == step.activations
    totals = table.sum(axis=1)
    assert totals["ZeRO-1 (optimizer sharded)"] <= 0.45 * totals["DDP (replicated)"], totals.to_dict()
    assert 40 < totals["ZeRO-1 (optimizer sharded)"] / memory.GIB < 44                 # the "about 42 GiB"


def test_two_processes_give_the_one_process_loss_curve(tmp_path):
    out = tmp_path / "two.csv"
    done = distributed.launch(2, ["--steps", TINY["steps"], "--batch-size", TINY["batch_size"],
                                  "--warmup", TINY["warmup"], "--device", "cpu", "--out", out], timeout=240)
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


def test_a_launch_from_a_jupyter_kernel_leaves_the_kernel_alive(tmp_path):
    """Notebook 11 launches torchrun from its kernel; the kernel must answer afterwards (on a GPU its connection
    broke once, 'zmq: Socket operation on non-socket').  The kernel initialises the device as a notebook does."""
    import nbformat
    from nbclient import NotebookClient
    cells = ["from fmlab import device, distributed\nimport torch\nDEVICE = device.setup(0)\n"
             "torch.zeros(1, device=DEVICE).sum().item()",
             f"done = distributed.launch(2, ['--steps', 2, '--batch-size', 4, '--warmup', 1, '--device', 'cpu', "
             f"'--out', {str(tmp_path / 'k.csv')!r}], timeout=240)\nassert done.returncode == 0, done.stderr[-2000:]",
             "import zmq, os\nprint('alive', os.getpid())"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()        # raises if the kernel died
    assert nb.cells[-1].outputs[0]["text"].startswith("alive")
