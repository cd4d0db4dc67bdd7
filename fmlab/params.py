"""A model's parameters and mode: count them, freeze them, find their device, evaluate without side effects.

One way each, used by every module and notebook:

- `count`    -- trainable (``requires_grad``) and total parameters.  ``model.parameters()`` yields a shared
  (tied) tensor once, so the tied embedding/head of MiniGPT is counted once with no extra bookkeeping;
- `summary`  -- the same as one printable line (print it after every freeze);
- `nbytes`   -- bytes of parameters and buffers (a reward model's normalisation constants are buffers);
- `freeze`   -- evaluation mode and no gradients (a reference policy, a trained reward model, a teacher);
- `device_of` -- where a model's parameters live (callers move their inputs there explicitly);
- `evaluating` -- a context manager: evaluation mode and no gradients inside, the previous mode restored after.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

__all__ = ["count", "summary", "nbytes", "freeze", "device_of", "evaluating"]


def count(model: nn.Module) -> dict[str, int]:
    """{'trainable': parameters with requires_grad, 'total': all parameters}, a tied tensor counted once."""
    params = list(model.parameters())                     # parameters() already yields a shared tensor once
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "total": sum(p.numel() for p in params)}


def summary(model: nn.Module) -> str:
    """'trainable params: 12,288 / 929,536 (1.32 %)' -- what to print after every freeze."""
    c = count(model)
    return (f"trainable params: {c['trainable']:,} / {c['total']:,} "
            f"({100 * c['trainable'] / max(c['total'], 1):.2f} %)")


def nbytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each tensor once: what holding the model costs."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients (a reference policy, a trained reward model, a teacher); returns it."""
    model.eval()
    return model.requires_grad_(False)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's (first) parameter: where its inputs must be."""
    return next(model.parameters()).device


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode and no gradients inside the block; the model's previous train/eval mode after it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
