"""Representation fine-tuning (ReFT): train a small edit of the hidden states, not the weights.

LoReFT (Wu et al. 2024, "ReFT: Representation Finetuning for Language Models", arXiv:2404.03592) edits
the residual stream h (a d-vector) at chosen layers and token positions:

    Φ(h) = h + Rᵀ (W h + b − R h)

R (r × d) has orthonormal rows: it spans an r-dimensional subspace of the d-dimensional stream.  R h is
what h currently says in that subspace, W h + b what it *should* say; the edit replaces the first by the
second and leaves every direction orthogonal to the subspace untouched.  The base model stays frozen:
only R, W and b train -- 2 r d + r numbers per edited layer (rank 4 at width 128: 1 028).

Where the edit happens matters.  As in the paper it is applied to the *prompt* only (the first `first` and
the last `last` prompt tokens: pyreft's "f1+l1"), so generation costs nothing extra after the prompt.  Later
tokens -- the answer and its end-of-text token -- see it only through attention in the blocks *after* the
edited layer, so an edit after the last block can change the first answer token but never the ones after
it; editing every layer (pyreft's setting, `ReftConfig()`) lets every later block read the edit.  Notebook
05 measures both: the default reaches full fine-tuning's accuracy on sentiment, block 3 alone gets the
label right but never the end-of-text.

Deployed (`deploy`): the model as a user runs it, the edit on the first and last tokens of each prompt --
what `fmlab.evaluate` and the comparison harness measure.

Departures from the paper and pyreft (Wu et al. train LLaMA-7B-class models on commonsense, arithmetic and
instruction data):
- W starts equal to R and b at zero, so the edit starts as the identity (as LoRA's B = 0 does); pyreft's
  ``LoreftIntervention`` starts W at ``nn.Linear``'s random init, an edit that is not a no-op at step 0
  (its later ``LoreftIntervention_IdentityInit`` starts as we do);
- one intervention per layer shared by all edited positions (the paper's "tied weights"; it also tries
  separate prefix and suffix interventions and tunes the number of positions);
- R is kept orthonormal by a QR decomposition of an unconstrained matrix (pyreft: ``parametrizations.orthogonal``);
- no dropout (pyreft optionally drops out the edited representation) and no activation on W h + b (pyreft's
  optional ``act_fn``; the paper's LoReFT has none);
- positions are explicit integers (``first``, ``last``), not strings like "f1+l1".
The unconstrained matrix is drawn from a CPU generator and moved, so a seed gives the same starting matrix on
every device (its QR may round differently there); on MPS, which lacks a QR kernel, the r × d QR runs on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from . import evaluate
from .batches import IGNORE
from .checkpoint import load_tensors, save_tensors
from .gpt import MiniGPT, ids_to_device
from .params import device_of
from .tasks import format_prompt
from .tokenizer import Tokenizer
from .train import lm_loss

__all__ = ["ReftConfig", "LoReFT", "ReftModel", "apply", "prompt_positions", "positions_from_targets",
           "reft_loss", "Deployed", "deploy", "accuracy", "answer", "save", "load"]


@dataclass(frozen=True)
class ReftConfig:
    layers: tuple[int, ...] = (0, 1, 2, 3)   # edit the output of these blocks (0-based, < n_layer)
    rank: int = 4                            # r: dimensions of the edited subspace, per layer
    first: int = 1                           # edit the first `first` prompt tokens ...
    last: int = 1                            # ... and the last `last` (where the answer is decided)
    seed: int = 0                            # initialises R and W (the base model is not touched)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}; the paper uses 4")
        if not isinstance(self.layers, tuple) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in self.layers):
            raise ValueError(f"layers must be a tuple of block indices, e.g. layers=(0, 1, 2, 3) or layers=(2,), "
                             f"got {self.layers!r}")
        if not self.layers:
            raise ValueError("layers is empty: give at least one block index to edit, e.g. layers=(2,)")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers has duplicates: {self.layers}; list each block once")
        if min(self.layers) < 0:
            raise ValueError(f"layers must be block indices >= 0 (0 = the first block), got {self.layers}")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (self.first, self.last)):
            raise ValueError(f"first and last must be integers >= 0, got first={self.first!r}, last={self.last!r}")
        if self.first + self.last == 0:
            raise ValueError(f"first={self.first}, last={self.last}: edit at least one position, "
                             "e.g. first=1, last=1 (pyreft's 'f1+l1')")


def _qr_device(device: torch.device) -> torch.device:
    """Where to run the QR: MPS has no QR kernel in most torch releases, so the tiny r × d matrix goes to
    the CPU there (autograd follows it back); CPU and CUDA compute it in place."""
    return torch.device("cpu") if device.type == "mps" else device


def _orthonormal_rows(a: torch.Tensor) -> torch.Tensor:
    """Q with orthonormal rows spanning the rows of a (r × d), via QR; signs fixed so Q is unique."""
    src = a.T.to(_qr_device(a.device), torch.float32)     # (d, r); QR in fp32 whatever the autocast dtype
    q, r = torch.linalg.qr(src)                           # a.T = q r, q: (d, r) orthonormal columns
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).T.to(a.device, a.dtype)


class LoReFT(nn.Module):
    """Φ(h) = h + Rᵀ(W h + b − R h) on the last dimension of h (any leading shape).

    R is the QR-orthonormalised `rotate`; `proj` holds W and b.  At initialisation W = R and b = 0, so Φ is
    the identity and training starts from the base model's behaviour.
    """

    def __init__(self, dim: int, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        if not 0 < rank <= dim:
            raise ValueError(f"rank must be in [1, {dim}] for a {dim}-wide stream, got {rank}")
        # drawn on the CPU (where `generator` lives): the same seed gives the same R on every device
        self.rotate = nn.Parameter(torch.randn(rank, dim, generator=generator) / dim ** 0.5)  # R before QR
        self.proj = nn.utils.skip_init(nn.Linear, dim, rank)   # W h + b; no random init: set to R, 0 below
        with torch.no_grad():
            self.proj.weight.copy_(self.R)
            self.proj.bias.zero_()

    @property
    def R(self) -> torch.Tensor:
        """The r × d matrix with orthonormal rows (R Rᵀ = I)."""
        return _orthonormal_rows(self.rotate)

    @property
    def W(self) -> torch.Tensor:
        return self.proj.weight

    @property
    def b(self) -> torch.Tensor:
        return self.proj.bias

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        R = self.R
        return h + (self.proj(h) - h @ R.T) @ R          # h + Rᵀ(W h + b − R h), rows of h as vectors


def prompt_positions(prompt_lengths: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """(B, first + last) positions: the first `first` and last `last` tokens of each prompt.

    Prompts shorter than first + last repeat positions (the edit is then applied once per position).
    """
    lengths = torch.as_tensor(prompt_lengths, dtype=torch.long).reshape(-1, 1)
    if lengths.numel() and int(lengths.min()) < 1:
        raise ValueError("a prompt has no tokens; every prompt needs at least one token to edit")
    return _positions(lengths, first, last)


def _positions(lengths: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """`prompt_positions` of lengths (B, 1) >= 1, already checked: every position lies in [0, length)."""
    head = torch.arange(first, device=lengths.device).expand(lengths.size(0), first)
    tail = lengths - last + torch.arange(last, device=lengths.device)
    return torch.cat([torch.minimum(head, lengths - 1), tail.clamp(min=0)], dim=1)


def positions_from_targets(targets: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """Edited positions (B, first + last) of an instruction batch: the prompt ends where the first target is set."""
    has_target = targets != IGNORE
    if not bool(has_target.any(dim=1).all()):
        raise ValueError("a row has no answer tokens (all targets are IGNORE); cannot find its prompt")
    lengths = has_target.int().argmax(dim=1) + 1                   # >= 1 and <= targets.size(1) by construction
    return _positions(lengths.reshape(-1, 1), first, last)


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
            raise ValueError(f"layers {bad} do not exist: the model has blocks 0..{n_layer - 1}; "
                             f"e.g. layers={tuple(range(n_layer))} edits them all")
        self.cfg, self.base_model = cfg, base_model
        base_model.requires_grad_(False)
        gen = torch.Generator().manual_seed(cfg.seed)
        dim = base_model.cfg.n_embd
        self.interventions = nn.ModuleDict({str(i): LoReFT(dim, cfg.rank, gen) for i in cfg.layers})
        self.to(device_of(base_model))
        self._positions: torch.Tensor | None = None
        self._hooks = [base_model.blocks[i].register_forward_hook(self._hook(str(i))) for i in cfg.layers]

    def _hook(self, key: str):
        def edit(module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
            pos = self._positions
            if pos is None:
                return None                                             # no edit: base model output
            idx = pos.unsqueeze(-1).expand(-1, -1, out.size(-1))        # (B, k, C)
            edited = self.interventions[key](out.gather(1, idx))
            return out.scatter(1, idx, edited.to(out.dtype))
        return edit

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """Logits of `tokens` (B, T) with the edit at `positions` (B, k) in [0, T); None: no edit."""
        if positions is not None:
            positions = torch.as_tensor(positions, dtype=torch.long, device=tokens.device)
            if positions.dim() != 2 or positions.size(0) != tokens.size(0):
                raise ValueError(f"positions must be (batch, k) with batch={tokens.size(0)}, got "
                                 f"{tuple(positions.shape)}")
            if positions.numel() and bool(((positions < 0) | (positions >= tokens.size(1))).any()):   # once, not per block
                raise ValueError(f"positions must lie in [0, {tokens.size(1)}) for this batch, got "
                                 f"{int(positions.min())}..{int(positions.max())}")
        return self._edited(tokens, positions)

    def _edited(self, tokens: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """`forward` for positions made by `_positions` for these tokens: in range by construction, so not read
        back from the device to be checked (on a GPU that read would stall every training step)."""
        self._positions = positions
        try:
            return self.base_model(tokens)
        finally:
            self._positions = None

    def remove(self) -> MiniGPT:
        """Detach the hooks; returns the (unchanged) base model."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return self.base_model


def apply(base_model: MiniGPT, cfg: ReftConfig) -> ReftModel:
    """Freeze `base_model` and hook LoReFT interventions (no-ops at first) onto blocks cfg.layers."""
    return ReftModel(base_model, cfg)


def reft_loss(model: ReftModel, batch: dict) -> torch.Tensor:
    """Next-token loss on the answer, with the edit on the batch's prompt positions (a `train` loss_fn)."""
    return lm_loss(model._edited(batch["tokens"], _target_positions(batch["tokens"], batch["targets"], model.cfg)),
                   batch["targets"])


def _target_positions(tokens: torch.Tensor, targets: torch.Tensor, cfg: ReftConfig) -> torch.Tensor:
    """`positions_from_targets` for tokens of the targets' shape: then in [0, T), with no check on the device."""
    if tokens.shape != targets.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and targets {tuple(targets.shape)} must have one shape")
    return positions_from_targets(targets, cfg.first, cfg.last)


class Deployed(nn.Module):
    """A ReFT model as a user runs it: the edit on the first and last tokens of the prompt.

    ``forward(tokens)`` reads all of `tokens` as the prompt (text scored for perplexity: the edit on its first
    and last tokens); ``forward(tokens, targets)`` is the teacher-forced form of answering, where the prompt
    ends at the first answer target (`positions_from_targets`) -- what `fmlab.evaluate`'s ``forward=`` takes.
    """

    def __init__(self, model: ReftModel):
        super().__init__()
        self.reft_model = model
        self.cfg = model.base_model.cfg          # the deployed model's GPTConfig (block size, vocabulary)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.reft_model.cfg
        if tokens.dim() != 2 or tokens.size(1) < 1:
            raise ValueError(f"tokens must be (batch, time) with at least one token, got {tuple(tokens.shape)}")
        if targets is None:                      # the whole row is the prompt: lengths T >= 1
            lengths = torch.full((tokens.size(0), 1), tokens.size(1), device=tokens.device)
            return self.reft_model._edited(tokens, _positions(lengths, cfg.first, cfg.last))
        return self.reft_model._edited(tokens, _target_positions(tokens, targets, cfg))


def deploy(model: ReftModel) -> Deployed:
    """The model as deployed: pass it to `fmlab.evaluate` as the model and as ``forward=``."""
    return Deployed(model)


def accuracy(model: ReftModel, tokenizer: Tokenizer, examples: Sequence[dict]) -> float:
    """Exact-match greedy accuracy (`evaluate.accuracy`) of the deployed model: the edit on each prompt."""
    deployed = deploy(model)
    return evaluate.accuracy(deployed, tokenizer, examples, forward=deployed)


@torch.no_grad()
def answer(model: ReftModel, tokenizer: Tokenizer, example: dict, max_new_tokens: int = 8) -> str:
    """The greedy answer to an instruction example, with the edit on its prompt positions (as `accuracy`)."""
    prompt = tokenizer.encode(format_prompt(example))
    tokens = ids_to_device(torch.tensor([prompt]), model)
    positions = prompt_positions(torch.tensor([len(prompt)], device=tokens.device), model.cfg.first, model.cfg.last)
    new: list[int] = []
    while len(new) < max_new_tokens and tokens.size(1) < model.base_model.cfg.block_size:
        nxt = int(model(tokens, positions)[0, -1].argmax())      # the prompt's edit, every step: no cache
        if nxt == tokenizer.eos_id:
            break
        new.append(nxt)
        tokens = torch.cat([tokens, tokens.new_tensor([[nxt]])], dim=1)
    return tokenizer.decode(new)


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
