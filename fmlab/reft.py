"""Representation fine-tuning (ReFT): train a small edit of the hidden states, not the weights.

LoReFT (Wu et al. 2024, "ReFT: Representation Finetuning for Language Models", arXiv:2404.03592) edits
the residual stream h (a d-vector) at chosen layers and token positions:

    Φ(h) = h + Rᵀ (W h + b − R h)

R (r × d) has orthonormal rows: it spans an r-dimensional subspace of the d-dimensional stream.  R h is
what h currently says in that subspace, W h + b what it *should* say; the edit replaces the first by the
second and leaves every direction orthogonal to the subspace untouched.  The base model stays frozen:
only R, W and b train -- 2 r d + r numbers per edited layer (rank 4 at width 128: 1 028).

Where the edit happens matters.  It is applied to the *prompt* only (the first `first` and the last
`last` prompt tokens), so at generation time it costs nothing after the prompt.  Later tokens -- the
answer and its end-of-text token -- only see it through attention in the blocks *after* the edited layer,
so an edit after the last block can change the first answer token but never the ones after it.

Simplifications vs the paper: one intervention per layer shared by all edited positions (pyreft's
``share_weights``); positions are explicit integer tensors, not strings like "f1+l1"; R is kept
orthonormal by a QR decomposition of an unconstrained matrix (pyreft: ``parametrizations.orthogonal``);
no dropout, no activation on W h + b.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from .batches import IGNORE, encode_example, pad_batch
from .checkpoint import load_tensors, save_tensors
from .gpt import MiniGPT
from .tokenizer import Tokenizer
from .train import lm_loss

__all__ = ["ReftConfig", "LoReFT", "ReftModel", "apply", "prompt_positions", "positions_from_targets",
           "reft_loss", "accuracy", "save", "load"]


@dataclass(frozen=True)
class ReftConfig:
    layers: tuple[int, ...] = (0, 1, 2, 3)   # edit the output of these blocks (0-based, < n_layer)
    rank: int = 4                            # r: dimensions of the edited subspace, per layer
    first: int = 1                           # edit the first `first` prompt tokens ...
    last: int = 1                            # ... and the last `last` (where the answer is decided)
    answer: bool = False                     # also edit each answer token as it is generated (see below)
    seed: int = 0                            # initialises R and W (the base model is not touched)

    def __post_init__(self):
        if self.rank <= 0:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if not self.layers:
            raise ValueError("layers is empty: give at least one block index to edit, e.g. layers=(2,)")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers has duplicates: {self.layers}")
        if self.first < 0 or self.last < 0 or self.first + self.last == 0:
            raise ValueError(f"first={self.first}, last={self.last}: edit at least one position, "
                             "e.g. last=1")


def _orthonormal_rows(a: torch.Tensor) -> torch.Tensor:
    """Q with orthonormal rows spanning the rows of a (r × d), via QR; signs fixed so Q is unique."""
    q, r = torch.linalg.qr(a.T)                       # a.T = q r, q: (d, r) orthonormal columns
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).T


class LoReFT(nn.Module):
    """Φ(h) = h + Rᵀ(W h + b − R h) on the last dimension of h (any leading shape).

    W and b are stored preconditioned: W h + b = V (h − μ)/σ + c, with μ, σ the per-coordinate mean and
    spread of the base model's states at the edited positions (`calibrate`).  Same function, same number
    of parameters; but a gradient step on V moves every coordinate in its own units, so a direction with
    small spread (here: sentiment) is learned as fast as the large ones.  With μ = 0, σ = 1 (the
    default) V = W and c = b exactly as in the paper.
    """

    def __init__(self, dim: int, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        if not 0 < rank <= dim:
            raise ValueError(f"rank must be in [1, {dim}] for a {dim}-wide stream, got {rank}")
        self.rotate = nn.Parameter(torch.randn(rank, dim, generator=generator) / dim ** 0.5)  # R before QR
        self.proj = nn.Linear(dim, rank)                  # V z + c, z = (h − μ)/σ
        self.register_buffer("mean", torch.zeros(dim))    # μ
        self.register_buffer("std", torch.ones(dim))      # σ
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Start as a no-op: W = R and b = 0, so Φ(h) = h."""
        R = self.R
        self.proj.weight.copy_(R * self.std)
        self.proj.bias.copy_(R @ self.mean)

    @torch.no_grad()
    def calibrate(self, states: torch.Tensor) -> None:
        """Set μ, σ from base-model states (N, d) at the edited positions, then restart as a no-op."""
        self.mean.copy_(states.mean(0))
        self.std.copy_(states.std(0).clamp(min=1e-3))
        self.reset()

    @property
    def R(self) -> torch.Tensor:
        """The r × d matrix with orthonormal rows (R Rᵀ = I)."""
        return _orthonormal_rows(self.rotate)

    @property
    def W(self) -> torch.Tensor:
        """The effective r × d matrix W of the equation."""
        return self.proj.weight / self.std

    @property
    def b(self) -> torch.Tensor:
        """The effective bias b of the equation."""
        return self.proj.bias - self.W @ self.mean

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        R = self.R
        target = self.proj((h - self.mean) / self.std)    # W h + b: what the subspace should say
        return h + (target - h @ R.T) @ R                 # h + Rᵀ(W h + b − R h), rows of h as vectors


def prompt_positions(prompt_lengths: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """(B, first + last) positions: the first `first` and last `last` tokens of each prompt.

    Prompts shorter than first + last repeat positions (the edit is then applied once per position).
    """
    lengths = torch.as_tensor(prompt_lengths, dtype=torch.long).reshape(-1, 1)
    if lengths.numel() and int(lengths.min()) < 1:
        raise ValueError("a prompt has no tokens; every prompt needs at least one token to edit")
    head = torch.arange(first).expand(lengths.size(0), first)
    tail = lengths - last + torch.arange(last)
    return torch.cat([torch.minimum(head, lengths - 1), tail.clamp(min=0)], dim=1)


def positions_from_targets(targets: torch.Tensor, first: int, last: int, answer: bool = False) -> torch.Tensor:
    """Edited positions of an instruction batch (B, k): the prompt ends where the first target is set.

    answer=True adds the positions of the answer tokens fed back to the model (all but the last answer
    token); rows with fewer repeat their last prompt position (an edit applied twice at one position
    gives the same result).
    """
    has_target = targets != IGNORE
    if not bool(has_target.any(dim=1).all()):
        raise ValueError("a row has no answer tokens (all targets are IGNORE); cannot find its prompt")
    lengths = has_target.int().argmax(dim=1) + 1
    pos = prompt_positions(lengths, first, last)
    if not answer:
        return pos
    T = targets.size(1)
    steps = torch.arange(T).unsqueeze(0)                            # (1, T)
    fed = has_target & (steps >= lengths.unsqueeze(1))              # input positions inside the answer
    k = int(fed.sum(dim=1).max())
    extra = torch.where(fed, steps, lengths.unsqueeze(1) - 1)       # others -> the last prompt position
    extra = extra.sort(dim=1, descending=True).values[:, :max(k, 1)]
    return torch.cat([pos, extra], dim=1)


class ReftModel(nn.Module):
    """A frozen base model with LoReFT interventions hooked onto chosen blocks.

    ``forward(tokens, positions)`` -> logits with the edit at `positions` (B, k).  Calling the base model
    directly (or with positions=None) gives exactly the base model's logits; `remove()` detaches the hooks.
    """

    def __init__(self, base_model: MiniGPT, cfg: ReftConfig):
        super().__init__()
        n_layer = len(base_model.blocks)
        bad = [i for i in cfg.layers if not 0 <= i < n_layer]
        if bad:
            raise ValueError(f"layers {bad} do not exist: the model has blocks 0..{n_layer - 1}")
        self.cfg, self.base_model = cfg, base_model
        base_model.requires_grad_(False)
        gen = torch.Generator().manual_seed(cfg.seed)
        dim = base_model.cfg.n_embd
        self.interventions = nn.ModuleDict({str(i): LoReFT(dim, cfg.rank, gen) for i in cfg.layers})
        self.to(next(base_model.parameters()).device)
        self._positions: torch.Tensor | None = None
        self._hooks = [base_model.blocks[i].register_forward_hook(self._hook(str(i))) for i in cfg.layers]

    def _hook(self, key: str):
        def edit(module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
            pos = self._positions
            if pos is None:
                return None                                             # no edit: base model output
            if int(pos.max()) >= out.size(1) or int(pos.min()) < 0:
                raise ValueError(f"positions must lie in [0, {out.size(1)}) for this batch, got "
                                 f"{int(pos.min())}..{int(pos.max())}")
            idx = pos.unsqueeze(-1).expand(-1, -1, out.size(-1))        # (B, k, C)
            edited = self.interventions[key](out.gather(1, idx))
            return out.scatter(1, idx, edited.to(out.dtype))
        return edit

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        if positions is not None:
            positions = torch.as_tensor(positions, dtype=torch.long, device=tokens.device)
            if positions.dim() != 2 or positions.size(0) != tokens.size(0):
                raise ValueError(f"positions must be (batch, k) with batch={tokens.size(0)}, got "
                                 f"{tuple(positions.shape)}")
        self._positions = positions
        try:
            return self.base_model(tokens)
        finally:
            self._positions = None

    @torch.no_grad()
    def calibrate(self, tokens: torch.Tensor, positions: torch.Tensor) -> None:
        """Measure μ, σ of the base model's states at `positions` (B, k) for each edited layer."""
        states = self.base_model.residual_stream(tokens)          # no edits: hooks skip without positions
        idx = torch.as_tensor(positions, dtype=torch.long, device=tokens.device)
        for key, iv in self.interventions.items():
            h = states[int(key) + 1]                                # output of block `key`
            iv.calibrate(h.gather(1, idx.unsqueeze(-1).expand(-1, -1, h.size(-1))).flatten(0, 1))

    def remove(self) -> MiniGPT:
        """Detach the hooks; returns the (unchanged) base model."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return self.base_model


def apply(base_model: MiniGPT, cfg: ReftConfig, calibration: dict | None = None) -> ReftModel:
    """Freeze `base_model` and hook LoReFT interventions (no-ops at first) onto blocks cfg.layers.

    calibration: an instruction batch ({'tokens', 'targets'}) whose prompt states set μ, σ (see LoReFT);
    None keeps μ = 0, σ = 1 (the paper's plain parametrisation).
    """
    model = ReftModel(base_model, cfg)
    if calibration is not None:
        targets = calibration["targets"]
        model.calibrate(calibration["tokens"], positions_from_targets(targets, cfg.first, cfg.last, cfg.answer))
    return model


def reft_loss(model: ReftModel, batch: dict, temperature: float = 1.0) -> torch.Tensor:
    """Next-token loss on the answer, with the edit on the batch's prompt positions (a `train` loss_fn).

    temperature < 1 sharpens the logits before the cross-entropy.  The greedy answer (the arg-max) is
    the same at any temperature, but a frozen output layer may be unable to give a rare token a high
    probability; the sharpened loss still rewards making it the arg-max.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    pos = positions_from_targets(batch["targets"], model.cfg.first, model.cfg.last, model.cfg.answer)
    return lm_loss(model(batch["tokens"], pos) / temperature, batch["targets"])


@torch.no_grad()
def accuracy(model: ReftModel, tokenizer: Tokenizer, examples: Sequence[dict], batch_size: int = 256) -> float:
    """Exact-match greedy accuracy (as `evaluate.accuracy`), with the edit on each prompt."""
    if not examples:
        raise ValueError("no examples to evaluate")
    device = next(model.parameters()).device
    hits = []
    for start in range(0, len(examples), batch_size):
        rows = [encode_example(tokenizer, ex) for ex in examples[start:start + batch_size]]
        batch = pad_batch([(p + a[:-1], [IGNORE] * (len(p) - 1) + a) for p, a in rows], tokenizer.pad_id)
        tokens, targets = batch["tokens"].to(device), batch["targets"].to(device)
        logits = model(tokens, positions_from_targets(targets, model.cfg.first, model.cfg.last, model.cfg.answer))
        hits.append(((logits.argmax(-1) == targets) | (targets == IGNORE)).all(dim=1).cpu())
    return torch.cat(hits).float().mean().item()


def save(model: ReftModel, path: str) -> str:
    """The interventions alone (a few KB) to safetensors; returns the sha256."""
    meta = {"reft_config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(model.cfg).items()}}
    return save_tensors(model.interventions.state_dict(), path, meta)


def load(base_model: MiniGPT, path: str) -> ReftModel:
    """Hook saved interventions onto `base_model` (which is frozen)."""
    state, meta = load_tensors(path)
    info = dict(meta["reft_config"])
    model = ReftModel(base_model, ReftConfig(**{**info, "layers": tuple(info["layers"])}))
    model.interventions.load_state_dict(state)
    return model
