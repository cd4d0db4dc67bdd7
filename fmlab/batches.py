"""Turning text into training batches.

A *batcher* is any callable ``get_batch(batch_size, generator) -> {"tokens": (B, T), "targets": (B, T)}``.
``targets[b, t]`` is the token the model should predict after seeing ``tokens[b, :t+1]``, or -100 where
no loss is taken (padding, and the prompt in instruction fine-tuning).  The training loop only ever
sees batchers, so pre-training, instruction tuning, replay and multitask mixtures are all the same loop.

- `lm_batches`: random windows of a token stream (self-supervised: the text is its own label).
- `instruction_batches`: prompt + answer, loss on the answer tokens only.
- `mix`: draw each row from one of several batchers with given weights (multitask, replay).
- `pad_batch` / `pad_sequences`: right-pad rows into one tensor (with targets / with prompt and row lengths,
  as sampled completions and preference pairs need).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .tasks import format_prompt
from .tokenizer import Tokenizer

__all__ = ["IGNORE", "Batcher", "encode_corpus", "encode_example", "lm_batches", "instruction_batches", "mix",
           "pad_batch", "pad_sequences", "instruction_rows"]

IGNORE = -100   # cross_entropy's ignore_index: positions that contribute no loss
Batcher = Callable[[int, torch.Generator], dict]


def encode_corpus(tokenizer: Tokenizer, documents: Sequence[str]) -> torch.Tensor:
    """All documents as one 1-D token stream, each followed by <eos>."""
    ids = [i for doc in documents for i in tokenizer.encode(doc, eos=True)]
    return torch.tensor(ids, dtype=torch.long)


def encode_example(tokenizer: Tokenizer, example: dict) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids ending in <eos>) of an instruction example.

    The answer is encoded with its leading space (" positive"), exactly as it continues the prompt text
    "... answer : positive": a BPE token for "positive" at the start of a text is a different token.
    """
    prompt = tokenizer.encode(format_prompt(example))
    answer = tokenizer.encode(" " + example["output"], eos=True)
    return prompt, answer


def lm_batches(stream: torch.Tensor, block_size: int) -> Batcher:
    if stream.numel() <= block_size + 1:
        raise ValueError(f"token stream of {stream.numel()} tokens is too short for windows of {block_size}")

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        starts = torch.randint(0, stream.numel() - block_size - 1, (batch_size,), generator=generator)
        window = torch.stack([stream[s:s + block_size + 1] for s in starts.tolist()])  # (B, T+1)
        return {"tokens": window[:, :-1], "targets": window[:, 1:].clone()}
    return get_batch


def pad_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict:
    """Right-pad (tokens, targets) rows to the longest; padded targets are IGNORE."""
    T = max(len(t) for t, _ in rows)
    tokens = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for b, (t, y) in enumerate(rows):
        tokens[b, :len(t)], targets[b, :len(y)] = torch.tensor(t), torch.tensor(y)
    return {"tokens": tokens, "targets": targets}


def pad_sequences(rows: Sequence[list[int]], prompt_lens: Sequence[int], pad_id: int) -> dict:
    """Right-pad token rows: {'tokens' (N, T), 'prompt_len' (N,), 'length' (N,)}."""
    T = max(len(r) for r in rows)
    tokens = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    return {"tokens": tokens, "prompt_len": torch.tensor(list(prompt_lens)),
            "length": torch.tensor([len(r) for r in rows])}


def instruction_rows(tokenizer: Tokenizer, examples: Sequence[dict], block_size: int) -> list:
    """(tokens, targets) per example; targets mask the prompt so only answer tokens carry loss."""
    rows = []
    for ex in examples:
        prompt, answer = encode_example(tokenizer, ex)
        seq = prompt + answer
        if len(seq) - 1 > block_size:
            raise ValueError(f"example is {len(seq)} tokens, longer than the context ({block_size}): "
                             f"{format_prompt(ex)!r}")
        targets = [IGNORE] * (len(prompt) - 1) + answer    # target t is seq[t + 1]
        rows.append((seq[:-1], targets))
    return rows


def instruction_batches(tokenizer: Tokenizer, examples: Sequence[dict], block_size: int) -> Batcher:
    if not examples:
        raise ValueError("no examples to train on")
    rows = instruction_rows(tokenizer, examples, block_size)

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        idx = torch.randint(0, len(rows), (batch_size,), generator=generator).tolist()
        return pad_batch([rows[i] for i in idx], tokenizer.pad_id)
    return get_batch


def mix(batchers: Sequence[Batcher], weights: Sequence[float], pad_id: int = 0) -> Batcher:
    """A batcher whose rows come from `batchers[i]` with probability weights[i] (weights need not sum to 1)."""
    if len(batchers) != len(weights) or not batchers:
        raise ValueError("mix() needs one weight per batcher")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"mixture weights must be >= 0 and not all zero, got {list(weights)}")
    probs = torch.tensor(weights, dtype=torch.float) / sum(weights)

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        counts = torch.multinomial(probs, batch_size, replacement=True, generator=generator).bincount(
            minlength=len(batchers)).tolist()
        rows = []
        for batcher, n in zip(batchers, counts):
            if n:
                part = batcher(n, generator)
                rows += list(zip(part["tokens"].tolist(), part["targets"].tolist()))
        return pad_batch(rows, pad_id)
    return get_batch
