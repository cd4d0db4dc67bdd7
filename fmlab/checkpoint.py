"""Saving and loading models safely.

Weights go to ``NAME.safetensors`` (a format that holds tensors only -- loading it cannot run code, unlike
a pickle).  Beside it, ``NAME.json`` keeps what the weights mean: the model config, the tokenizer's
vocabulary (ids are positions in it, so a reordered vocabulary silently breaks a model), the sha256 of
the weights file, and free-form metadata (training log, machine).  `load` checks all of it and refuses a
file that does not match, naming the command that rebuilds it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .gpt import GPTConfig, MiniGPT
from .tokenizer import Tokenizer

__all__ = ["save", "load", "sha256", "CheckpointError", "save_tensors", "load_tensors"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, tampered with, or does not match the model or tokenizer."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, meta: dict | None = None) -> str:
    """Any named tensors (an adapter, an intervention) to safetensors + JSON with their sha256."""
    weights, card = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(weights))
    digest = sha256(weights)
    card.write_text(json.dumps({"sha256": digest, **(meta or {})}, indent=1))
    return digest


def load_tensors(path: str | Path, rebuild_hint: str = "save it again") -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata saved by `save_tensors`; the sha256 must match."""
    weights, card = _paths(path)
    for f in (weights, card):
        if not f.exists():
            raise CheckpointError(f"{f} is missing; {rebuild_hint}")
    meta = json.loads(card.read_text())
    if sha256(weights) != meta.get("sha256"):
        raise CheckpointError(f"{weights} does not match the sha256 in {card.name} (corrupted or "
                              f"modified); {rebuild_hint}")
    return load_file(str(weights)), meta


def save(model: MiniGPT, tokenizer: Tokenizer, path: str | Path, meta: dict | None = None) -> str:
    """Save model weights, config and vocabulary; returns the weights' sha256."""
    if model.cfg.vocab_size != len(tokenizer):
        raise CheckpointError(f"model has {model.cfg.vocab_size} token embeddings, tokenizer {len(tokenizer)}")
    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}   # tied to tok_emb
    info = {"config": dataclasses.asdict(model.cfg), "vocab": tokenizer.vocab, "meta": meta or {}}
    return save_tensors(state, path, info)


def load(path: str | Path, device: torch.device | str = "cpu", tokenizer: Tokenizer | None = None,
         rebuild_hint: str = "save it again") -> tuple[MiniGPT, Tokenizer, dict]:
    """(model, tokenizer, meta) from a checkpoint written by `save`; every mismatch is a CheckpointError.

    tokenizer: when given, its vocabulary must equal the one the model was trained with.
    """
    state, info = load_tensors(path, rebuild_hint)
    try:
        cfg = GPTConfig(**info["config"])
        saved_tok = Tokenizer(info["vocab"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config or vocabulary ({e}); {rebuild_hint}") from None
    if tokenizer is not None and tokenizer.vocab != saved_tok.vocab:
        raise CheckpointError(f"{path} was trained with a different vocabulary than the tokenizer given; "
                              f"{rebuild_hint}")
    model = MiniGPT(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "head.weight"}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
        raise CheckpointError(f"{path}: tensor names or shapes do not match the config (e.g. {diff}); "
                              f"{rebuild_hint}")
    model.load_state_dict(state, strict=False)
    return model.to(device).eval(), saved_tok, info["meta"]
