"""Saving and loading models safely.

Everything a checkpoint needs goes into one ``NAME.safetensors`` file: the tensors, and in the file's
metadata header the model config, the tokenizer (its merges: ids are positions in its vocabulary, so a
different tokenizer silently breaks a model) and free-form metadata (training log, data lineage, machine).
safetensors holds tensors and strings only -- loading it cannot run code, unlike a pickle.  Beside it,
``NAME.json`` is the *card*: the file's sha256 and a readable copy of the metadata.  The sha256 covers the
whole .safetensors file, header included, so changing a config value, the tokenizer or a single weight
makes `load` refuse the file with a `CheckpointError` that names the command to rebuild it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
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
    """Named tensors (a model, an adapter, an intervention) + JSON metadata in one safetensors file.

    The metadata travels in the file's header (so the sha256 covers it); the card beside it repeats it
    for reading and records the sha256.  Returns the sha256.
    """
    weights, card = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(weights),
              metadata={"fmlab": json.dumps(meta)})
    digest = sha256(weights)
    card.write_text(json.dumps({"sha256": digest, **meta}, indent=1))
    return digest


def load_tensors(path: str | Path, rebuild_hint: str = "save it again",
                 expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata saved by `save_tensors`; the file's sha256 must match its card (and
    `expected_sha256`, e.g. from a manifest, when given)."""
    weights, card = _paths(path)
    for f in (weights, card):
        if not f.exists():
            raise CheckpointError(f"{f} is missing; {rebuild_hint}")
    try:
        recorded = json.loads(card.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{card} is not a readable checkpoint card ({e}); {rebuild_hint}") from None
    digest = sha256(weights)
    if digest != recorded or (expected_sha256 is not None and digest != expected_sha256):
        raise CheckpointError(f"{weights} does not match its recorded sha256 (corrupted or modified); "
                              f"{rebuild_hint}")
    try:
        from safetensors import safe_open
        with safe_open(str(weights), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["fmlab"])
        return load_file(str(weights)), meta
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"{weights} is not an fmlab safetensors file ({e}); {rebuild_hint}") from None


def save(model: MiniGPT, tokenizer: Tokenizer, path: str | Path, meta: dict | None = None) -> str:
    """Save weights, config, tokenizer and metadata (training log, lineage); returns the sha256."""
    if model.cfg.vocab_size != len(tokenizer):
        raise CheckpointError(f"model has {model.cfg.vocab_size} token embeddings, tokenizer {len(tokenizer)}")
    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}   # tied to tok_emb
    info = {"config": dataclasses.asdict(model.cfg), "tokenizer": json.loads(tokenizer.to_json()),
            "meta": meta or {}}
    return save_tensors(state, path, info)


def load(path: str | Path, device: torch.device | str = "cpu", tokenizer: Tokenizer | None = None,
         rebuild_hint: str = "save it again", expected_sha256: str | None = None) -> tuple[MiniGPT, Tokenizer, dict]:
    """(model, tokenizer, meta) from a checkpoint written by `save`; every mismatch is a CheckpointError.

    tokenizer: when given, it must be the tokenizer the model was trained with.
    """
    state, info = load_tensors(path, rebuild_hint, expected_sha256)
    try:
        cfg = GPTConfig(**info["config"])
        saved_tok = Tokenizer.from_json(json.dumps(info["tokenizer"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config or tokenizer ({e}); {rebuild_hint}") from None
    if tokenizer is not None and tokenizer != saved_tok:
        raise CheckpointError(f"{path} was trained with a different tokenizer than the one given; {rebuild_hint}")
    model = MiniGPT(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "head.weight"}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
        raise CheckpointError(f"{path}: tensor names or shapes do not match the config (e.g. {diff}); "
                              f"{rebuild_hint}")
    model.load_state_dict(state, strict=False)
    return model.to(device).eval(), saved_tok, info["meta"]
