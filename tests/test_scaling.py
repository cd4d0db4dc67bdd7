"""The IsoFLOP sweep: budgets are spent as 6·N·D, and the parabola finds a known valley."""
import math

import pandas as pd
import pytest
import torch

from fmlab import scaling
from fmlab.gpt import MiniGPT


def test_steps_spend_the_budget():
    assert scaling.steps_for(6 * 1000 * 1024 * 50, 1000, 1024) == 50          # C = 6 N D, D = steps * 1024
    assert scaling.steps_for(1.0, 10**6, 1024) == 1                            # at least one step


def test_tiny_config_counts():
    cfg = scaling.tiny_config(100, 32)
    n = MiniGPT(cfg).num_params()
    C, V, T = 32, 100, cfg.block_size
    per_block = (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C) + 2 * 2 * C
    assert n == V * C + T * C + cfg.n_layer * per_block + 2 * C               # tied head counted once
    assert cfg.n_head == 2 and cfg.n_layer == 2


def test_isoflop_optimum_finds_a_known_valley():
    n = [1e4, 3e4, 1e5]
    loss = [(math.log(x) - math.log(2e4)) ** 2 + 2.0 for x in n]               # bottom at N = 2e4
    runs = pd.DataFrame({"budget": 1e12, "width": [8, 16, 32], "params": n, "val_loss": loss})
    row = scaling.isoflop_optimum(runs).loc[1e12]
    assert row.n_opt == pytest.approx(2e4, rel=1e-6)
    assert row.d_opt == pytest.approx(1e12 / (6 * 2e4), rel=1e-6)
    assert row.tokens_per_param == pytest.approx(row.d_opt / 2e4)
    assert bool(row.interior) and row.best_width == 16


def test_sweep_runs_and_records_counted_work():
    stream = torch.randint(0, 50, (5000,))
    runs = scaling.sweep([16, 32], [2e9], stream, stream, vocab_size=50, device=torch.device("cpu"),
                         val_windows=4)
    assert list(runs["width"]) == [16, 32]
    for r in runs.itertuples():
        assert r.flops == 6 * r.params * r.tokens and r.tokens == r.steps * scaling.SWEEP.batch_size * 64
        assert abs(r.flops - 2e9) <= 6 * r.params * 1024 / 2 + 1              # within half a step of the budget
    assert runs["steps"].iloc[0] > runs["steps"].iloc[1]                       # the smaller model sees more tokens
