"""Counted work: the cost of training and serving in numbers that carry over from one machine to another.

Seconds depend on the machine: at our size (under a million parameters) a GPU spends its time launching small
kernels and Python runs the loop, so a model 5x smaller is not 5x faster; at 7B parameters, generating a token
is bound by memory bandwidth (every weight is read once per token), so the bytes of weights decide.  What does
not depend on the machine is the work itself, so that is what the course asserts on, and seconds are printed
beside it as an observation for this machine:

- **FLOPs**, counted by PyTorch's own `torch.utils.flop_counter.FlopCounterMode` while the code runs: every
  matrix product with the weights, forward and backward.  They check the rules of thumb: a forward pass costs
  2·N FLOPs per token for N weights, a training step 6·N per token (the backward pass is twice the forward),
  so pre-training on D tokens costs about 6·N·D (Kaplan et al. 2020; Hoffmann et al. 2022).
- **bytes of weights** a model reads per generated token: its parameters times their bytes (4 in fp32, 2 in
  bf16, ~0.5 at 4 bits).

Simplifications: the attention scores' own products (about 2·T·C per token and layer, ~10 % of the FLOPs at our
context of 64) are left out, as 6·N·D leaves them out -- PyTorch counts them for its GPU attention kernels but not
for the CPU one, and a count must not depend on the device.  Element-wise work (LayerNorm, GELU, softmax) is not
counted either: a small share of the FLOPs, though not of the time at our size.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["Work", "count_flops", "weight_bytes", "forward_flops_per_token", "training_flops_per_token"]


def _zero(*args, **kwargs) -> int:
    return 0


# the attention kernels PyTorch counts on GPUs (not on CPU): left out everywhere, so counts match across devices
_NO_ATTENTION = {op: _zero for op in torch.utils.flop_counter.flop_registry if "attention" in str(op)}


@dataclass
class Work:
    flops: int = 0          # floating-point operations counted inside the `with` block (filled in on exit)


@contextmanager
def count_flops() -> Iterator[Work]:
    """``with count_flops() as work: ...`` -- afterwards ``work.flops`` holds the FLOPs the block did."""
    work, counter = Work(), FlopCounterMode(display=False, custom_mapping=_NO_ATTENTION)
    with counter:
        yield work
    work.flops = int(counter.get_total_flops())


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters (a tied weight counted once): what serving reads per generated token."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def forward_flops_per_token(n_params: int) -> int:
    """The rule of thumb: one multiply and one add per parameter per token."""
    return 2 * n_params


def training_flops_per_token(n_params: int) -> int:
    """Forward (2·N) plus backward (4·N): the 6 of 6·N·D."""
    return 6 * n_params
