"""Measuring a language model: perplexity, task accuracy, fact recall, generated text.

- `perplexity`: exp(mean next-token loss) on held-out text -- how surprised the model is per word.
- `accuracy`: exact match of the model's *greedy* answer against the reference.  Greedy decoding produces
  the reference exactly when, at every answer position, the reference token is the arg-max given the
  prompt and the reference so far.  So one teacher-forced forward pass gives the same verdict as
  generating token by token, at a fraction of the cost (`tests/test_evaluate.py` checks the equivalence).
- `fact_recall`: the same test on cloze prompts ("ada lives in" -> "paris").
- `answer` / `complete`: real generated text, for looking at outputs.

Every measure takes the model *as it is deployed*: pass the object a user runs (an nn.Module whose
``forward(tokens)`` returns logits), and, for the teacher-forced ones, ``forward(tokens, targets)`` when the
deployed model needs to know where the prompt ends (`reft.deploy` returns such an object).  Each measure runs
in evaluation mode and leaves the model's train/eval mode as it found it (`params.evaluating`).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch

from .batches import IGNORE, encode_example, pad_batch
from .gpt import MiniGPT, ids_to_device
from .params import device_of as _device, evaluating
from .tasks import format_prompt
from .tokenizer import Tokenizer

__all__ = ["perplexity", "accuracy", "choice_accuracy", "fact_recall", "greedy_match", "answer", "complete",
           "encode_prompt"]


def perplexity(model: MiniGPT, stream: torch.Tensor, max_windows: int = 200, batch_size: int = 64) -> float:
    """Perplexity on a 1-D token stream, cut into non-overlapping windows of the model's context."""
    T = model.cfg.block_size
    n = min(max_windows, (stream.numel() - 1) // T)
    if n < 1:
        raise ValueError(f"need more than {T + 1} tokens to measure perplexity, got {stream.numel()}")
    with evaluating(model):
        return _perplexity(model, stream, n, T, batch_size)


def _perplexity(model: MiniGPT, stream: torch.Tensor, n: int, T: int, batch_size: int) -> float:
    total, count = torch.zeros((), dtype=torch.float64, device=_device(model)), 0   # summed on the device
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size)) * T
        window = ids_to_device(torch.stack([stream[i:i + T + 1] for i in idx.tolist()]), model)
        logits = model(window[:, :-1]).float()
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten(),
                                                   reduction="sum").double()
        count += window[:, 1:].numel()
    return math.exp(total.item() / count)                     # one read on the host


def greedy_match(model: torch.nn.Module, rows: Sequence[tuple[list[int], list[int]]], pad_id: int,
                 batch_size: int = 128, forward: Callable | None = None) -> torch.Tensor:
    """Per row (prompt ids, answer ids): True iff greedy decoding after the prompt yields the answer.

    forward(tokens, targets) -> logits: how the deployed model runs (default ``model(tokens)``); a ReFT model
    deployed with `reft.deploy` takes the targets to find where each prompt ends, and edits it there.
    """
    forward = forward or (lambda tokens, targets: model(tokens))
    device = _device(model)
    results = []
    with evaluating(model):
        for start in range(0, len(rows), batch_size):
            chunk = [(p + a[:-1], [IGNORE] * (len(p) - 1) + a) for p, a in rows[start:start + batch_size]]
            batch = pad_batch(chunk, pad_id)
            tokens, targets = ids_to_device(batch["tokens"], model), batch["targets"].to(device)
            logits = forward(tokens, targets)
            ok = (logits.argmax(-1) == targets) | (targets == IGNORE)
            results.append(ok.all(dim=1))
    return torch.cat(results).cpu() if results else torch.zeros(0, dtype=torch.bool)   # one read on the host


@torch.no_grad()
def choice_accuracy(model: torch.nn.Module, tokenizer: Tokenizer, prompts: Sequence[str], answers: Sequence[str],
                    options: Sequence[str]) -> float:
    """Share of prompts where the right option is the one the model finds most likely to come next.

    "Rank classification", how GPT-3 (Brown et al. 2020) scored zero- and few-shot classification: the model
    is not asked to *write* the answer, only to prefer it -- so a base model that knows the task but not the
    answer format still scores.  Each option is one token here (its first token is compared).
    """
    if len(prompts) != len(answers) or not prompts:
        raise ValueError("choice_accuracy needs one answer per prompt, and at least one prompt")
    ids = [tokenizer.encode(" " + o) for o in options]
    if any(len(i) != 1 for i in ids) or len(set(map(tuple, ids))) != len(ids):
        raise ValueError(f"each option must be one distinct token, got {[tokenizer.tokens(' ' + o) for o in options]}")
    option_ids = torch.tensor([i[0] for i in ids], device=_device(model))
    hits = []
    for start in range(0, len(prompts), 64):
        rows = [tokenizer.encode(p)[-model.cfg.block_size:] for p in prompts[start:start + 64]]
        batch = ids_to_device(pad_batch([(r, r) for r in rows], tokenizer.pad_id)["tokens"], model)
        last = torch.tensor([len(r) - 1 for r in rows], device=batch.device)
        logits = model(batch)[torch.arange(len(rows), device=batch.device), last][:, option_ids]   # (B, options)
        hits += [options[k] == a for k, a in zip(logits.argmax(-1).tolist(), answers[start:start + 64])]
    return sum(hits) / len(hits)


def accuracy(model: MiniGPT, tokenizer: Tokenizer, examples: Sequence[dict], forward: Callable | None = None) -> float:
    """Exact-match accuracy of greedy answers (answer followed by <eos>) on instruction examples.

    forward: as in `greedy_match` (how the deployed model runs)."""
    if not examples:
        raise ValueError("no examples to evaluate")
    rows = [encode_example(tokenizer, ex) for ex in examples]
    return greedy_match(model, rows, tokenizer.pad_id, forward=forward).float().mean().item()


def fact_recall(model: MiniGPT, tokenizer: Tokenizer, probes: Sequence[dict], forward: Callable | None = None) -> float:
    """Share of cloze probes whose greedy next word is the fact ('ada lives in' -> 'paris').

    forward: as in `greedy_match` (how the deployed model runs)."""
    rows = [(tokenizer.encode(p["prompt"]), tokenizer.encode(" " + p["answer"])) for p in probes]
    return greedy_match(model, rows, tokenizer.pad_id, forward=forward).float().mean().item()


def encode_prompt(model: MiniGPT, tokenizer: Tokenizer, text: str, room: int = 1) -> torch.Tensor:
    """(1, T) ids of `text`, with a clear error when it is empty or leaves no room in the context.

    Warns when the prompt contains tokens that pre-training (almost) never showed the model: any text
    encodes, but the model has learned nothing about a character it never read.
    """
    ids = tokenizer.encode(text)
    if not text.strip():
        raise ValueError("the prompt is empty: type at least one word")
    rare = tokenizer.rare(ids)
    if rare:
        warnings.warn(f"the prompt contains tokens the model (almost) never saw in pre-training: "
                      f"{[tokenizer.piece(i) for i in rare][:8]}; expect its continuation to be poor there",
                      stacklevel=3)
    limit = model.cfg.block_size - room
    if len(ids) > limit:
        raise ValueError(f"the prompt is {len(ids)} tokens; this model reads at most {limit} before "
                         f"answering -- shorten it")
    return ids_to_device(torch.tensor([ids]), model)


def complete(model: MiniGPT, tokenizer: Tokenizer, text: str, max_new_tokens: int = 30,
             temperature: float = 0.0, top_k: int | None = None, seed: int | None = None) -> str:
    """The model's continuation of `text` (without the prompt), stopping at <eos>."""
    tokens = encode_prompt(model, tokenizer, text)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None      # CPU: same draws everywhere
    out = model.generate(tokens, max_new_tokens, temperature, top_k, tokenizer.eos_id, gen)
    new = out[0, tokens.size(1):].tolist()
    return tokenizer.decode(new[:new.index(tokenizer.eos_id)] if tokenizer.eos_id in new else new)


def answer(model: MiniGPT, tokenizer: Tokenizer, example: dict, max_new_tokens: int = 16) -> str:
    """The model's greedy answer to an instruction example."""
    return complete(model, tokenizer, format_prompt(example), max_new_tokens)
