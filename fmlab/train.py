"""The one training loop of the course.

Pre-training, full fine-tuning, instruction tuning, LoRA, ReFT, multitask, continued pre-training, the
reward model, DPO, the policy gradient, PPO, GRPO, distillation and data-parallel training (`fmlab.distributed`)
all call `train`.  What changes between them is only

- the *batcher* (which text, which tokens carry loss -- see `fmlab.batches`; RL batchers sample from the policy
  being trained, `fmlab.rollout`),
- which parameters are trainable (``requires_grad``; `params.summary` prints the count), and
- the *loss function*: by default `lm_loss` (next-token cross-entropy on targets that are not -100);
  the other methods pass their own ``loss_fn(model, batch) -> scalar``.

The loop: AdamW, linear warm-up then cosine decay to ``min_lr_ratio * lr``, gradient clipping, mixed
precision on GPUs (with a gradient scaler for fp16), a tqdm progress bar, evaluation callbacks at chosen
steps, and a pandas DataFrame history (step, loss, lr, seconds, tokens_per_s, and one column per metric).
Evaluation runs in evaluation mode and restores the mode; `train` leaves the model in evaluation mode.

On a GPU the loop keeps the device busy: the loss stays on the device and is read on the host every
`READ_LOSS_EVERY` steps (a read makes the CPU wait for the GPU; an inf or nan loss is caught then), and AdamW updates
every tensor in one fused (CUDA) or multi-tensor (CPU) operation.  On the CPU the numbers are exactly those of a loop
that reads the loss every step and updates tensor by tensor.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batches import IGNORE, Batcher
from .gpt import ids_to_device
from .device import autocast, needs_grad_scaler
from .params import evaluating

__all__ = ["TrainConfig", "lm_loss", "default_loss", "lr_at", "train"]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600                 # optimizer steps
    batch_size: int = 32             # sequences per step
    lr: float = 3e-3                 # peak learning rate (after warm-up)
    warmup: int = 50                 # steps of linear warm-up from 0; keeps early Adam steps small
    min_lr_ratio: float = 0.1        # cosine decays to this fraction of lr at the last step
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moments; 0.98 adapts faster than 0.999 on short runs
    weight_decay: float = 0.1        # applied to matrices only (not biases, LayerNorms or 1-D params)
    grad_clip: float = 1.0           # max global gradient norm; 0 disables clipping
    eval_every: int = 0              # run the evaluation callbacks every N steps (0: only at eval_at)
    eval_at: tuple[int, ...] = ()    # extra steps to evaluate at (0 = before any training)
    seed: int = 0                    # seeds batch sampling
    progress: bool = True            # show a tqdm progress bar

    def __post_init__(self):
        def bad(msg: str):
            raise ValueError(f"TrainConfig: {msg}")
        if not isinstance(self.steps, int) or self.steps < 1:
            bad(f"steps must be a positive integer, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            bad(f"lr must be a positive number, got {self.lr!r}; fine-tuning typically uses 1e-5 to 3e-4")
        if not 0 <= self.warmup < self.steps:
            bad(f"warmup={self.warmup} must be >= 0 and shorter than steps={self.steps}, or the peak "
                "learning rate is never reached; e.g. warmup = steps // 10")
        if not 0 <= self.min_lr_ratio <= 1:
            bad(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            bad(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.weight_decay < 0:
            bad(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            bad(f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}; a negative norm would "
                "flip the gradient")
        if self.eval_every < 0 or any(s < 0 or s > self.steps for s in self.eval_at):
            bad(f"eval_every must be >= 0 and eval_at steps within 0..{self.steps}")


READ_LOSS_EVERY = 50   # steps between reads of the loss on the host (also when inf/nan is caught)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose target is not IGNORE (-100)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def default_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """`lm_loss` of the model's logits on batch["tokens"] against batch["targets"]: train's default loss_fn."""
    return lm_loss(model(batch["tokens"]), batch["targets"])


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine to min_lr_ratio*lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup - 1)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # One update for all tensors at once instead of a dozen small operations per tensor: fused on CUDA,
    # multi-tensor ("foreach") on the CPU, where it gives bit-for-bit the numbers of the per-tensor loop.
    kind = params[0].device.type
    fast = {"fused": True} if kind == "cuda" else {"foreach": True} if kind == "cpu" else {}
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas, **fast)


def _read_losses(pending: list[tuple[dict, torch.Tensor]]) -> None:
    """Fill in the losses of `pending` rows with one host read (on a GPU each read waits for the device)."""
    if not pending:
        return
    values = torch.stack([loss.float() for _, loss in pending]).tolist()
    for (row, _), value in zip(pending, values):
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {row['step']}; try a smaller lr")
        row["loss"] = value
    pending.clear()


def _to_device(batch: dict, model: torch.nn.Module, device: torch.device) -> dict:
    """The batch's tensors on the model's device, token ids checked on the host first (`gpt.ids_to_device`);
    anything else (e.g. PPO's epoch number) stays on the host."""
    return {k: ids_to_device(v, model) if k == "tokens" else v.to(device) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _evaluate(model: torch.nn.Module, evals: dict[str, Callable]) -> dict[str, float]:
    with evaluating(model):
        return {name: float(fn(model)) for name, fn in evals.items()}


def train(model: torch.nn.Module, batches: Batcher, cfg: TrainConfig = TrainConfig(),
          loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] = default_loss,
          evals: dict[str, Callable[[torch.nn.Module], float]] | None = None,
          params: list[torch.nn.Parameter] | None = None,
          callback: Callable[[pd.DataFrame], None] | None = None, callback_every: int = 50,
          until: Callable[[dict], bool] | None = None) -> pd.DataFrame:
    """Train `model` in place; returns the history, one row per step (row 0 = evaluation before training).

    params: what to optimise (default: every parameter with requires_grad, gathered once).
    evals: name -> fn(model) -> float, run at eval_at / every eval_every steps and at the last step.
    callback: called with the history so far every `callback_every` steps (live plots).
    until: early stopping -- after each evaluation, ``until(row)`` (the row's step, loss and evals); True stops
    training there, e.g. ``until=lambda row: row["val_accuracy"] >= 0.95`` (the schedule is still cfg.steps long).
    """
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    device = params[0].device
    evals = evals or {}
    opt = _optimizer(params, cfg)
    scaler = torch.amp.GradScaler(device.type) if needs_grad_scaler(device) else None
    gen = torch.Generator().manual_seed(cfg.seed)
    eval_steps = set(cfg.eval_at) | {cfg.steps}
    if cfg.eval_every:
        eval_steps |= set(range(0, cfg.steps + 1, cfg.eval_every))
    rows = [{"step": 0, "loss": float("nan"), "lr": 0.0, "seconds": 0.0, "tokens_per_s": float("nan"),
             **(_evaluate(model, evals) if 0 in eval_steps else {})}]
    model.train()
    start, tokens_seen, pending = time.perf_counter(), 0, []
    for step in tqdm(range(cfg.steps), disable=not cfg.progress, desc="training", leave=False):
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = _to_device(batches(cfg.batch_size, gen), model, device)
        with autocast(device):
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip,   # a list, not a spent generator
                                           foreach=device.type in ("cpu", "cuda") or None)
        scaler.step(opt) if scaler else opt.step()
        if scaler:
            scaler.update()
        tokens_seen += int(batch["tokens"].numel())
        elapsed = time.perf_counter() - start
        row = {"step": step + 1, "loss": float("nan"), "lr": lr, "seconds": elapsed,
               "tokens_per_s": tokens_seen / max(elapsed, 1e-9)}
        rows.append(row)
        pending.append((row, loss.detach()))     # read later, many steps at once: the GPU need not wait
        paused = time.perf_counter()
        show = callback and ((step + 1) % callback_every == 0 or step + 1 == cfg.steps)
        if step + 1 in eval_steps or show or (step + 1) % READ_LOSS_EVERY == 0:
            _read_losses(pending)                # raises if a loss became inf or nan
        stop = False
        if step + 1 in eval_steps:
            row.update(_evaluate(model, evals))
            stop = until is not None and bool(until(row))
        if show or (stop and callback):
            callback(pd.DataFrame(rows))
        start += time.perf_counter() - paused    # evaluation and plotting are not training time
        if stop:                                 # an evaluation step: its losses were read above
            break
    model.eval()
    return pd.DataFrame(rows)
