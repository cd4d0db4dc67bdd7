"""LoRA: fine-tune a frozen model by learning a low-rank *change* to some of its weight matrices.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685) keeps a
pre-trained weight W (d_out × d_in) frozen and learns its update as a product of two thin matrices:

    h = W x + (α / r) · B A x        A: r × d_in,  B: d_out × r,  r ≪ min(d_in, d_out)

so ΔW = (α / r) B A has rank at most r and costs r (d_in + d_out) numbers instead of d_in d_out.
A starts like nn.Linear's weight (Kaiming-uniform) and B at zero, so at step 0 the adapter adds nothing
and the model is exactly the base model.  The scale α / r keeps the update's size roughly independent of
the rank, so a learning rate found at one rank carries over to another.

For inference the update can be *merged*: W ← W + (α / r) B A gives one ordinary matrix again (no extra
latency); *unmerging* subtracts it.  Only A and B need saving: an adapter is kilobytes where the model is
megabytes, and one base model can serve many tasks by swapping adapters.

Words the base model never saw (a new label) have embeddings pre-training never shaped; with tied
embeddings those rows are also the output layer, and a low-rank update elsewhere struggles to make up for
them.  ``train_tokens`` therefore also trains a delta on a few embedding rows (`TokenRows`), as peft's
``trainable_token_indices`` does.

Simplifications vs the paper: adapters wrap `nn.Linear` layers only (the paper and peft also handle
embeddings and convolutions); targets are chosen by module-name suffix, not regex; one adapter per layer
at a time (peft keeps several named adapters side by side); no rsLoRA / DoRA variants.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoint import load_tensors, save_tensors

__all__ = ["LoraConfig", "LoRALinear", "TokenRows", "ATTENTION", "ALL_LINEAR", "apply", "remove", "merge",
           "unmerge", "lora_layers", "token_layers", "adapter_state", "count_params", "save", "load"]

ATTENTION = ("attn.qkv", "attn.proj")                    # MiniGPT's attention projections
ALL_LINEAR = ATTENTION + ("mlp.fc", "mlp.proj")          # ... and its MLP (the tied output head excluded)


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8                            # r: rank of the update B A; trainable numbers grow linearly in r
    alpha: float = 16.0                      # α: the update is scaled by α / r (α = 2 r is a common default)
    dropout: float = 0.0                     # dropout on the adapter's input only (the base path is untouched)
    targets: tuple[str, ...] = ATTENTION     # wrap every nn.Linear whose name ends with one of these
    train_tokens: tuple[int, ...] = ()       # token ids whose embedding rows also train (new words, labels)
    seed: int = 0                            # initialises A (B starts at zero)

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}; try rank=8")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}; a common choice is alpha = 2 * rank")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.targets, str) or not self.targets:
            raise ValueError(f"targets must be a non-empty tuple of module names, e.g. {ATTENTION}, "
                             f"got {self.targets!r}")
        if len(set(self.train_tokens)) != len(self.train_tokens) or any(
                not isinstance(i, int) or i < 0 for i in self.train_tokens):
            raise ValueError(f"train_tokens must be distinct token ids >= 0, got {self.train_tokens!r}; "
                             "e.g. tuple(tok.encode('positive negative'))")

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

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α / r) B A, shaped like the base weight (d_out, d_in)."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)                                       # W x + b (already includes ΔW when merged)
        if self.merged:
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


class TokenRows(nn.Module):
    """An embedding (or the output layer tied to it) whose rows `ids` get a trainable delta: W' = W + Δ[ids].

    peft's ``trainable_token_indices`` does the same: a word the base model never saw (a new label) has
    an embedding the pre-training never shaped, and a low-rank update of the *other* layers struggles to
    compensate; training just those rows costs k × d numbers.  Embedding and tied head share one Δ.
    """

    def __init__(self, base: nn.Embedding | nn.Linear, ids: torch.Tensor, delta: nn.Parameter):
        super().__init__()
        self.base, self.delta = base, delta
        self.register_buffer("ids", ids, persistent=False)
        self.merged = False

    def weight(self) -> torch.Tensor:
        if self.merged:
            return self.base.weight
        return self.base.weight.index_add(0, self.ids, self.delta)          # (vocab, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.base, nn.Embedding):
            return nn.functional.embedding(x, self.weight())
        return nn.functional.linear(x, self.weight(), self.base.bias)


def _kaiming_uniform_(weight: torch.Tensor, generator: torch.Generator | None) -> None:
    """nn.Linear's default init (kaiming_uniform_ with a = √5): U(-1/√d_in, 1/√d_in), seeded."""
    bound = 1.0 / math.sqrt(weight.size(1))
    with torch.no_grad():
        weight.copy_(torch.rand(weight.shape, generator=generator, dtype=weight.dtype).to(weight.device)
                     * 2 * bound - bound)


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
                         "from a fresh base model (foundation.load_base_model())")
    linear = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = [name for name in linear if _matches(name, cfg.targets)]
    if not chosen:
        raise ValueError(f"targets {cfg.targets} match no nn.Linear layer; names end with one of "
                         f"{sorted({n.split('.', 2)[-1] for n in linear})}")
    tied = {id(p) for name, p in model.named_parameters() if not name.startswith(tuple(chosen))}
    for name in chosen:
        if id(linear[name].weight) in tied:
            raise ValueError(f"{name} shares its weight with another layer (tied embeddings); merging an "
                             "adapter into it would change both -- leave it out of targets")
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    for name in chosen:                                    # model order: the same seed gives the same A's
        _set(model, name, LoRALinear(linear[name], cfg.rank, cfg.alpha, cfg.dropout, gen))
    if cfg.train_tokens:
        _add_token_rows(model, cfg.train_tokens)
    model.lora_config = cfg
    return model


def _add_token_rows(model: nn.Module, token_ids: tuple[int, ...]) -> None:
    """Wrap the token embedding (the largest nn.Embedding) and any nn.Linear tied to it with one shared Δ."""
    embeddings = {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    if not embeddings:
        raise ValueError("train_tokens needs a model with an nn.Embedding; leave train_tokens empty")
    name, emb = max(embeddings.items(), key=lambda kv: kv[1].num_embeddings)
    if max(token_ids) >= emb.num_embeddings:
        raise ValueError(f"train_tokens has id {max(token_ids)} but {name} has {emb.num_embeddings} rows; "
                         "use ids from this model's tokenizer")
    w = emb.weight
    ids = torch.tensor(token_ids, dtype=torch.long, device=w.device)
    delta = nn.Parameter(torch.zeros(len(token_ids), w.size(1), device=w.device, dtype=w.dtype))  # no-op start
    tied = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.weight is w]
    for n in [name] + tied:
        _set(model, n, TokenRows(model.get_submodule(n), ids, delta))


def token_layers(model: nn.Module) -> dict[str, TokenRows]:
    """name -> TokenRows for the embedding (and tied output layer) with trainable rows."""
    return {name: m for name, m in model.named_modules() if isinstance(m, TokenRows)}


@torch.no_grad()
def _merge_tokens(model: nn.Module, sign: int) -> None:
    done = set()
    for layer in token_layers(model).values():
        if layer.merged == (sign > 0):
            continue
        if id(layer.base.weight) not in done:               # tied layers share one weight: add Δ once
            layer.base.weight.index_add_(0, layer.ids, sign * layer.delta)
            done.add(id(layer.base.weight))
        layer.merged = sign > 0


def remove(model: nn.Module) -> nn.Module:
    """Unmerge and take the adapters out, leaving the plain base layers (still frozen)."""
    for name, layer in lora_layers(model).items():
        layer.unmerge()
        _set(model, name, layer.base)
    _merge_tokens(model, -1)
    for name, layer in token_layers(model).items():
        _set(model, name, layer.base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def merge(model: nn.Module) -> nn.Module:
    """W ← W + (α / r) B A in every adapted layer: inference runs at the base model's speed."""
    layers = _require(model)
    for layer in layers.values():
        layer.merge()
    _merge_tokens(model, +1)
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """W ← W − (α / r) B A: back to the frozen base weights (up to float rounding) plus a live adapter."""
    for layer in _require(model).values():
        layer.unmerge()
    _merge_tokens(model, -1)
    return model


def _require(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("this model has no LoRA adapters; call lora.apply(model, LoraConfig(...)) first")
    return layers


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights: '<layer>.A' and '<layer>.B' for every adapted layer (+ 'tokens.delta')."""
    state = {f"{name}.{p}": getattr(layer, p).detach() for name, layer in _require(model).items() for p in "AB"}
    tokens = list(token_layers(model).values())
    if tokens:
        state["tokens.delta"] = tokens[0].delta.detach()
    return state


def count_params(model: nn.Module) -> dict[str, int]:
    """Trainable (requires_grad) and total parameters, each tensor counted once (tied weights too)."""
    params = {id(p): p for p in model.parameters()}.values()
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "total": sum(p.numel() for p in params)}


def save(model: nn.Module, path: str | Path) -> str:
    """Save the adapter alone (A and B of every layer, a few KB) to safetensors; returns the sha256."""
    _require(model)
    if any(layer.merged for layer in [*lora_layers(model).values(), *token_layers(model).values()]):
        raise ValueError("the adapter is merged into the weights; call lora.unmerge(model) before saving")
    cfg = asdict(model.lora_config)
    info = {**cfg, "targets": list(cfg["targets"]), "train_tokens": list(cfg["train_tokens"])}
    return save_tensors(adapter_state(model), path, {"lora_config": info})


def load(model: nn.Module, path: str | Path) -> nn.Module:
    """Put a saved adapter on `model`: swaps out any adapter it has, then applies and fills A and B."""
    state, meta = load_tensors(path, rebuild_hint="save the adapter again with lora.save(model, path)")
    info = dict(meta["lora_config"])
    cfg = LoraConfig(**{**info, "targets": tuple(info["targets"]), "train_tokens": tuple(info["train_tokens"])})
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
        for layer in token_layers(model).values():
            layer.delta.copy_(state["tokens.delta"])             # shared: copied once in effect
    return model
