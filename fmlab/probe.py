"""Reading and steering the residual stream: linear probes, difference of means, activation steering.

The *linear representation hypothesis* (e.g. Park, Choe & Veitch 2023, arXiv:2311.03658): a concept such
as sentiment is a direction u in the residual stream.  Then (1) a linear probe  p(y | h) = σ(wᵀh + c)
reads it, (2) the difference of class means  u = mean(h | y=1) − mean(h | y=0)  points along it, and
(3) adding α u to the stream (*steering*, Turner et al. 2023, arXiv:2308.10248) moves the model's output
toward the concept, with no training.

Simplifications: probes are logistic regression on standardised states trained by full-batch Adam from
zero weights (deterministic; a small fixed L2 penalty, no regularisation search); steering adds the vector
at every position of one layer.  Everything is computed on the device of the states it is given.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from .gpt import MiniGPT

__all__ = ["states_at", "probe_accuracy", "diff_of_means", "steer"]


@torch.no_grad()
def states_at(model: MiniGPT, tokens: torch.Tensor, positions: torch.Tensor) -> list[torch.Tensor]:
    """Residual-stream states (B, C) at one position per row (positions: (B,)), for layers 0..L."""
    idx = torch.as_tensor(positions, dtype=torch.long, device=tokens.device)
    if idx.shape != (tokens.size(0),):
        raise ValueError(f"positions must be one index per row, shape ({tokens.size(0)},), got {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= tokens.size(1)):
        raise ValueError(f"positions must lie in [0, {tokens.size(1)}): e.g. the last prompt token is length - 1")
    rows = torch.arange(tokens.size(0), device=tokens.device)
    return [h[rows, idx] for h in model.residual_stream(tokens)]


def probe_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                   steps: int = 300, lr: float = 0.05) -> float:
    """Test accuracy of a logistic-regression probe on standardised states (labels 0/1)."""
    if set(y_train.tolist()) != {0, 1}:
        raise ValueError("a probe needs both classes (labels 0 and 1) in the training states")
    if steps < 1 or not lr > 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}; the defaults are 300 and 0.05")
    y_train = y_train.to(x_train.device)
    mu, sd = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    z = (x_train - mu) / sd
    w = torch.zeros(z.size(1), device=z.device, requires_grad=True)
    c = torch.zeros(1, device=z.device, requires_grad=True)
    opt = torch.optim.Adam([w, c], lr=lr)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(z @ w + c, y_train.float()) + 1e-3 * w.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = ((x_test.to(z.device) - mu) / sd) @ w + c > 0
    return (pred.long() == y_test.to(pred.device).long()).float().mean().item()


def diff_of_means(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean(x | y=1) − mean(x | y=0): the simplest estimate of a concept direction."""
    if not (bool((y == 1).any()) and bool((y == 0).any())):
        raise ValueError("need states of both classes (labels 0 and 1)")
    return x[y == 1].mean(0) - x[y == 0].mean(0)


@contextmanager
def steer(model: MiniGPT, layer: int, vector: torch.Tensor) -> Iterator[None]:
    """Inside the block, the output of block `layer` (0-based) gets `vector` added at every position."""
    if not 0 <= layer < len(model.blocks):
        raise ValueError(f"layer {layer} does not exist: the model has blocks 0..{len(model.blocks) - 1}")
    if vector.shape != (model.cfg.n_embd,):
        raise ValueError(f"vector must have shape ({model.cfg.n_embd},) -- one residual-stream direction -- "
                         f"got {tuple(vector.shape)}")
    handle = model.blocks[layer].register_forward_hook(lambda m, i, out: out + vector.to(out.device, out.dtype))
    try:
        yield
    finally:
        handle.remove()
