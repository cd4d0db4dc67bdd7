"""LoRA: fine-tune a frozen model by learning a low-rank *change* to some of its weight matrices.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685) keeps a
pre-trained weight W (d_out × d_in) frozen and learns its update as a product of two thin matrices:

    h = W x + (α / r) · B A x        A: r × d_in,  B: d_out × r,  r ≪ min(d_in, d_out)

so ΔW = (α / r) B A has rank at most r and costs r (d_in + d_out) numbers instead of d_in d_out.
A starts like nn.Linear's weight (Kaiming-uniform) and B at zero, so at step 0 the adapter adds nothing
and the model is exactly the base model.  The scale α / r multiplies the update: at a fixed α / r a lower
rank moves the model less per step (fewer directions), at a fixed α it moves it more.

For inference the update can be *merged*: W ← W + (α / r) B A gives one ordinary matrix again (no extra
latency); *unmerging* subtracts it.  Only A and B need saving: an adapter is a small file (rank 8 on
MiniGPT's attention: 24,576 numbers, ~100 KB in fp32, against ~3.7 MB for the model), and one base model
can serve many tasks by swapping adapters.  `disabled` switches the adapters off without removing them
(peft's ``disable_adapter``): the model is then exactly the base model.

Simplifications vs the paper and peft: adapters wrap `nn.Linear` layers only (peft also handles embeddings
and convolutions); targets are chosen by module-name suffix, not regex; one adapter per layer at a time
(peft keeps several named adapters side by side); no rsLoRA / DoRA variants.  A is drawn from a CPU
generator and moved to the layer's device, so the same seed gives the same adapter on every device.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from .checkpoint import load_tensors, save_tensors

__all__ = ["LoraConfig", "LoRALinear", "ATTENTION", "ALL_LINEAR", "apply", "remove", "merge", "unmerge",
           "disabled", "lora_layers", "adapter_state", "base_state", "save", "load"]

ATTENTION = ("attn.qkv", "attn.proj")                    # MiniGPT's attention projections
ALL_LINEAR = ATTENTION + ("mlp.fc", "mlp.proj")          # ... and its MLP (the tied output head excluded)


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8                            # r: rank of the update B A; trainable numbers grow linearly in r
    alpha: float = 16.0                      # α: the update is scaled by α / r (α = 2 r is a common default)
    dropout: float = 0.0                     # dropout on the adapter's input only (the base path is untouched)
    targets: tuple[str, ...] = ATTENTION     # wrap every nn.Linear whose name ends with one of these
    seed: int = 0                            # initialises A (B starts at zero)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}; try rank=8")
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0 or not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be a number > 0, got {self.alpha!r}; a common choice is alpha = 2 * rank")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}; 0 switches it off")
        if (not isinstance(self.targets, tuple) or not self.targets
                or not all(isinstance(t, str) and t.strip() for t in self.targets)):
            raise ValueError(f"targets must be a non-empty tuple of module names, e.g. lora.ATTENTION = "
                             f"{ATTENTION}, got {self.targets!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """h = W x + b + (α / r) · B A dropout(x), wrapping an existing (frozen) nn.Linear."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        d_out, d_in = base.weight.shape
        if not 0 < rank <= min(d_in, d_out):
            raise ValueError(f"rank must be in [1, {min(d_in, d_out)}] for a {d_out}×{d_in} layer, got {rank}")
        self.base, self.rank, self.scaling = base, rank, alpha / rank
        base.requires_grad_(False)
        w = base.weight
        self.A = nn.Parameter(torch.empty(rank, d_in, device=w.device, dtype=w.dtype))   # (r, d_in)
        self.B = nn.Parameter(torch.zeros(d_out, rank, device=w.device, dtype=w.dtype))  # (d_out, r): no-op start
        _kaiming_uniform_(self.A, generator)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.enabled = True

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α / r) B A, shaped like the base weight (d_out, d_in)."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)                                       # W x + b (already includes ΔW when merged)
        if self.merged or not self.enabled:
            return y
        return y + self.scaling * (self.dropout(x) @ self.A.T @ self.B.T)   # (..., d_out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def _kaiming_uniform_(weight: torch.Tensor, generator: torch.Generator | None) -> None:
    """nn.Linear's default init (kaiming_uniform_ with a = √5): U(-1/√d_in, 1/√d_in), seeded.

    Drawn on the CPU (where `generator` lives) and moved: the same seed gives the same A on any device.
    """
    bound = 1.0 / math.sqrt(weight.size(1))
    draw = torch.rand(weight.shape, generator=generator, dtype=torch.float32) * 2 * bound - bound
    with torch.no_grad():
        weight.copy_(draw.to(device=weight.device, dtype=weight.dtype))


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """name -> LoRALinear for every adapter in `model`."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def apply(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Freeze every parameter of `model` and wrap the nn.Linear layers named by cfg.targets with LoRA.

    Modifies `model` in place and returns it.  A model that already has adapters is an error (so that
    re-running a notebook cell cannot stack a second adapter on the first): `remove` them first.
    """
    if lora_layers(model):
        raise ValueError("this model already has LoRA adapters; call lora.remove(model) first, or start "
                         "from a fresh copy of the base model (copy.deepcopy(base_model))")
    linear = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    suffixes = sorted({n.split(".", 2)[-1] for n in linear})
    unused = [t for t in cfg.targets if not any(_matches(name, (t,)) for name in linear)]
    if unused:
        raise ValueError(f"targets {unused} match no nn.Linear layer of this model; its linear layers end with "
                         f"{suffixes} (lora.ATTENTION and lora.ALL_LINEAR name MiniGPT's)")
    chosen = [name for name in linear if _matches(name, cfg.targets)]
    tied = {id(p) for name, p in model.named_parameters() if not name.startswith(tuple(chosen))}
    for name in chosen:
        if id(linear[name].weight) in tied:
            raise ValueError(f"{name} shares its weight with another layer (tied embeddings); merging an "
                             "adapter into it would change both -- leave it out of targets")
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    for name in chosen:                                    # model order: the same seed gives the same A's
        _set(model, name, LoRALinear(linear[name], cfg.rank, cfg.alpha, cfg.dropout, gen))
    model.lora_config = cfg
    return model


def remove(model: nn.Module) -> nn.Module:
    """Unmerge and take the adapters out, leaving the plain base layers (still frozen)."""
    for name, layer in lora_layers(model).items():
        layer.unmerge()
        _set(model, name, layer.base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def merge(model: nn.Module) -> nn.Module:
    """W ← W + (α / r) B A in every adapted layer: inference runs at the base model's speed."""
    for layer in _require(model).values():
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """W ← W − (α / r) B A: back to the frozen base weights (up to float rounding) plus a live adapter."""
    for layer in _require(model).values():
        layer.unmerge()
    return model


@contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the adapters are switched off: `model` computes exactly the base model."""
    layers = _require(model)
    if any(layer.merged for layer in layers.values()):
        raise ValueError("the adapter is merged into the weights; call lora.unmerge(model) before disabling it")
    for layer in layers.values():
        layer.enabled = False
    try:
        yield model
    finally:
        for layer in layers.values():
            layer.enabled = True


def _require(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("this model has no LoRA adapters; call lora.apply(model, LoraConfig(...)) first")
    return layers


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights: '<layer>.A' and '<layer>.B' for every adapted layer."""
    return {f"{name}.{p}": getattr(layer, p).detach() for name, layer in _require(model).items() for p in "AB"}


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's tensors under the base model's names: each adapted layer's ``<layer>.base.weight``
    read as ``<layer>.weight``, the adapters (A, B) left out.  A model without adapters gives its state_dict.
    With the adapter merged these are the merged weights (an ordinary model again, as `fmlab.hf` exports)."""
    adapted = lora_layers(model)
    return {k.replace(".base.", "."): v for k, v in model.state_dict().items()
            if not (k.endswith((".A", ".B")) and k.rpartition(".")[0] in adapted)}


def save(model: nn.Module, path: str | Path) -> str:
    """Save the adapter alone (A and B of every adapted layer) to safetensors; returns the sha256."""
    layers = _require(model)
    if any(layer.merged for layer in layers.values()):
        raise ValueError("the adapter is merged into the weights; call lora.unmerge(model) before saving")
    cfg = asdict(model.lora_config)
    return save_tensors(adapter_state(model), path, {"lora_config": {**cfg, "targets": list(cfg["targets"])}})


def load(model: nn.Module, path: str | Path) -> nn.Module:
    """Put a saved adapter on `model`: swaps out any adapter it has, then applies and fills A and B."""
    state, meta = load_tensors(path, rebuild_hint="save the adapter again with lora.save(model, path)")
    info = dict(meta["lora_config"])
    cfg = LoraConfig(**{**info, "targets": tuple(info["targets"])})
    remove(model)
    apply(model, cfg)
    expected = {k: v.shape for k, v in adapter_state(model).items()}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        remove(model)
        raise ValueError(f"{path}: adapter tensors do not fit this model (expected {len(expected)} tensors "
                         "of the shapes lora.apply makes); was it trained on another base model?")
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            layer.A.copy_(state[f"{name}.A"])
            layer.B.copy_(state[f"{name}.B"])
    return model
