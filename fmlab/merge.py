"""Model merging: combine fine-tuned models of one base model by adding up what fine-tuning changed.

A *task vector* is what fine-tuning on task t did to the weights (Ilharco et al. 2023, "Editing Models with
Task Arithmetic", arXiv:2212.04089):

    τ_t = θ_t − θ_base

Task arithmetic adds them, scaled by one coefficient λ chosen on validation data:

    θ = θ_base + λ · Σ_t τ_t

TIES-merging (Yadav et al. 2023, "Resolving Interference When Merging Models", arXiv:2306.01708) first
removes the two sources of interference it identifies -- small, redundant changes and sign conflicts:

1. Trim: keep the `density` share of each τ_t's entries with the largest magnitude, zero the rest;
2. Elect a sign per entry: γ = sign(Σ_t τ̂_t) (the sign with more total mass);
3. Disjoint mean: average only the τ̂_t entries whose sign agrees with γ (zeros do not count);

    θ = θ_base + λ · τ_m

LoRA adapters merge the same way: an adapter's task vector is its ΔW = (α / r) B A on the layers it adapts
(`lora_task_vector`), zero elsewhere.

Simplifications vs the papers: TIES trims each tensor separately (as peft's `merge_utils.ties` and mergekit
do; the paper ranks the entries of the whole task vector at once); every floating-point tensor of the state
dict is merged, embeddings included; λ is chosen on our validation split, as both papers do.
`tests/test_merge.py` checks `ties` against peft's.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
import torch.nn as nn

__all__ = ["task_vector", "lora_task_vector", "task_arithmetic", "trim", "elect_sign", "disjoint_mean", "ties",
           "merged_model"]

TaskVector = dict[str, torch.Tensor]


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def task_vector(finetuned: nn.Module, base: nn.Module) -> TaskVector:
    """τ = θ_finetuned − θ_base for every floating-point tensor of the state dict (the two must share names)."""
    tuned, ref = _float_state(finetuned), _float_state(base)
    if tuned.keys() != ref.keys():
        raise ValueError("the two models have different tensors; task vectors need fine-tunes of one base model "
                         "(remove LoRA adapters first, or use lora_task_vector)")
    return {k: (tuned[k] - ref[k]).detach() for k in ref}


def lora_task_vector(model: nn.Module, base: nn.Module) -> TaskVector:
    """An adapter as a task vector: ΔW = (α / r) B A under the adapted layer's weight name, zero elsewhere."""
    from . import lora
    tau = {k: torch.zeros_like(v) for k, v in _float_state(base).items()}
    for name, layer in lora.lora_layers(model).items():
        if f"{name}.weight" not in tau:
            raise ValueError(f"{name}.weight is not a tensor of the base model")
        tau[f"{name}.weight"] = layer.delta_weight().detach()
    return tau


def task_arithmetic(vectors: Sequence[TaskVector], lam: float) -> TaskVector:
    """λ · Σ_t τ_t."""
    return {k: lam * torch.stack([tau[k] for tau in vectors]).sum(0) for k in vectors[0]}


def trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the round(density · numel) entries of largest magnitude, zero the others."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    k = round(density * tau.numel())
    if k == 0:
        return torch.zeros_like(tau)
    flat = tau.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k).indices] = True
    return (flat * keep).view_as(tau)


def elect_sign(trimmed: torch.Tensor) -> torch.Tensor:
    """γ = sign(Σ_t τ̂_t) over the task axis 0 (+1 where the sum is exactly 0, as peft does)."""
    return torch.where(trimmed.sum(0) >= 0, 1.0, -1.0).to(trimmed.dtype)


def disjoint_mean(trimmed: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Mean over tasks of the entries whose sign equals γ (zeros and disagreeing entries are left out)."""
    agree = (trimmed.sign() == sign).to(trimmed.dtype)                  # (tasks, ...)
    return (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)


def ties(vectors: Sequence[TaskVector], lam: float, density: float = 0.2) -> TaskVector:
    """TIES-merging: trim each τ_t to `density`, elect signs, disjoint mean, scale by λ."""
    merged = {}
    for k in vectors[0]:
        trimmed = torch.stack([trim(tau[k], density) for tau in vectors])   # (tasks, ...)
        merged[k] = lam * disjoint_mean(trimmed, elect_sign(trimmed))
    return merged


def merged_model(base: nn.Module, delta: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of `base` with θ_base + delta loaded (tensors not in delta unchanged); `base` is left as it is."""
    model = copy.deepcopy(base)
    state = model.state_dict()
    model.load_state_dict({k: v + delta[k].to(v.device) if k in delta else v for k, v in state.items()})
    return model.eval()
