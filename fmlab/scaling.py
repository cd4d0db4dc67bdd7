"""Compute-optimal training, measured: an IsoFLOP sweep of tiny models (Hoffmann et al. 2022, "Chinchilla").

Training costs C ≈ 6·N·D FLOPs for N parameters and D tokens (`fmlab.compute`).  For a fixed C, a bigger model
sees fewer tokens.  Chinchilla's *IsoFLOP profiles* (their approach 2) train several model sizes at each of
a few compute budgets, each for exactly D = C / (6 N) tokens with its own learning-rate schedule, and plot the
final held-out loss against N: a valley.  Its bottom N_opt(C) is the compute-optimal size; D_opt = C / (6 N_opt).
Fitting a parabola in log N through each profile gives the bottom between the measured sizes::

    loss(C, N) ≈ a·(log N)² + b·log N + c      ->      log N_opt = -b / (2a)       (one fit per budget C)

From over 400 models (70 M to 16 B parameters) Hoffmann et al. found N_opt and D_opt growing about equally with
C, about 20 tokens per parameter (nanochat sizes its runs from a tokens-per-parameter target).

Simplifications vs the paper (toy scale): three or four sizes per budget instead of ~9, one seed, one learning
rate for every size (the paper tuned schedules), 2-layer models whose token embedding is a large share of N
(Kaplan et al. 2020 left embeddings out for that reason; Chinchilla counts every parameter, as we do), and a
training stream of ~0.6 M unique tokens that the small models repeat for several epochs (Muennighoff et al.
2023: a few epochs of repeated data are worth almost as much as fresh data; many are not).  So the *ratio*
measured here need not be ~20: what carries over is the method and the shape (a valley at each budget whose
bottom moves to larger models as the budget grows).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import batches, evaluate
from .device import seed_everything
from .gpt import GPTConfig, MiniGPT
from .train import TrainConfig, train

__all__ = ["CHINCHILLA_TOKENS_PER_PARAM", "SWEEP", "tiny_config", "steps_for", "run_config", "sweep",
           "isoflop_optimum"]

CHINCHILLA_TOKENS_PER_PARAM = 20   # Hoffmann et al. 2022: compute-optimal D / N, roughly constant with C

# every run of the sweep: the pre-training recipe's optimizer settings; steps and warm-up come per run
SWEEP = TrainConfig(steps=100, batch_size=16, lr=3e-3, warmup=10, min_lr_ratio=0.1, progress=False)


def tiny_config(vocab_size: int, width: int, block_size: int = 64) -> GPTConfig:
    """A 2-layer MiniGPT of the given width (heads of 16 dimensions): the sweep's one knob for model size."""
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=max(1, width // 16),
                     n_embd=width)


def steps_for(flops: float, n_params: int, tokens_per_step: int) -> int:
    """Optimizer steps that spend `flops` on a model of `n_params`: D = C / (6 N) tokens, in whole steps."""
    return max(1, round(flops / (6 * n_params * tokens_per_step)))


def run_config(steps: int, seed: int, cfg: TrainConfig = SWEEP) -> TrainConfig:
    """The sweep's recipe for one run of `steps` steps: its own cosine schedule, warm-up at most a tenth of it."""
    return dataclasses.replace(cfg, steps=steps, warmup=min(cfg.warmup, steps // 10), seed=seed)


def sweep(widths: Sequence[int], budgets: Sequence[float], stream: torch.Tensor, val_stream: torch.Tensor,
          vocab_size: int, device: torch.device, cfg: TrainConfig = SWEEP, seed: int = 0,
          val_windows: int = 100) -> pd.DataFrame:
    """Train every width at every compute budget (FLOPs, 6·N·D); one row per run with its held-out loss.

    Each run starts from a fresh model (seeded), trains with its own cosine schedule over exactly its steps,
    and is scored by the mean next-token loss on `val_windows` windows of `val_stream` (never trained on).
    """
    get_batch = batches.lm_batches(stream, tiny_config(vocab_size, widths[0]).block_size)
    rows = []
    for budget in budgets:
        for width in widths:
            seed_everything(seed)
            model = MiniGPT(tiny_config(vocab_size, width)).to(device)
            n_params, tokens_per_step = model.num_params(), cfg.batch_size * model.cfg.block_size
            steps = steps_for(budget, n_params, tokens_per_step)
            history = train(model, get_batch, run_config(steps, seed, cfg))
            tokens = steps * tokens_per_step
            rows.append({"budget": budget, "width": width, "params": n_params, "steps": steps, "tokens": tokens,
                         "flops": 6 * n_params * tokens, "tokens_per_param": tokens / n_params,
                         "epochs": tokens / stream.numel(), "seconds": history["seconds"].iloc[-1],
                         "val_loss": math.log(evaluate.perplexity(model, val_stream, max_windows=val_windows))})
    return pd.DataFrame(rows)


def isoflop_optimum(runs: pd.DataFrame) -> pd.DataFrame:
    """Per budget: the parabola in log N through its runs, and its bottom N_opt, D_opt and D_opt / N_opt.

    `interior` is True when the best measured size is neither the smallest nor the largest of the profile
    (the valley's bottom lies between measured sizes; otherwise the vertex is an extrapolation).
    """
    rows = []
    for budget, group in runs.groupby("budget"):
        group = group.sort_values("params")
        x, y = np.log(group["params"].to_numpy(float)), group["val_loss"].to_numpy(float)
        a, b, _ = np.polyfit(x, y, 2)
        best = int(np.argmin(y))
        n_opt = math.exp(-b / (2 * a)) if a > 0 else float("nan")
        d_opt = budget / (6 * n_opt)
        rows.append({"budget": budget, "curvature": a, "best_width": int(group["width"].iloc[best]),
                     "best_loss": float(y[best]), "interior": 0 < best < len(y) - 1,
                     "n_opt": n_opt, "d_opt": d_opt, "tokens_per_param": d_opt / n_opt})
    return pd.DataFrame(rows).set_index("budget")
