"""Preparing fine-tuning data: curation, labelling quality and representativeness.

A fine-tuning set is only as good as its examples.  Three checks an engineer runs before training, and
the faults they catch (each can be *injected* here, so a notebook can measure what it costs):

- curation -- exact duplicates (`deduplicate`) and malformed examples (`is_malformed`: a missing field,
  an empty answer, an answer that is not one of the task's labels, a prompt longer than the context).
  ``clean = deduplicate([e for e in data if not is_malformed(e, ...)])``.
- labelling quality -- a fraction of labels flipped to a wrong class (`flip_labels`), as careless
  annotators do; `label_counts` shows the class balance.
- representativeness -- a class (or a whole task) missing from training (`drop_label`): the model can
  only answer what it was shown.

Simplifications vs practice: duplicates are exact (real pipelines also remove near-duplicates with
MinHash / embeddings), and "malformed" is checked by rules; real label audits use several annotators.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

__all__ = ["FIELDS", "deduplicate", "is_malformed", "clean", "duplicate", "corrupt", "flip_labels",
           "drop_label", "label_counts"]

FIELDS = ("task", "instruction", "input", "output")


def _key(example: dict) -> tuple:
    return tuple(example.get(f) for f in FIELDS)


def deduplicate(examples: Sequence[dict]) -> list[dict]:
    """Examples with exact duplicates removed, first occurrence kept, order preserved."""
    seen, out = set(), []
    for ex in examples:
        if _key(ex) not in seen:
            seen.add(_key(ex))
            out.append(ex)
    return out


def is_malformed(example: dict, labels: Sequence[str] | None = None, max_words: int = 40) -> bool:
    """True when a field is missing or blank, the answer is not an allowed label, or the text is too long."""
    if any(not isinstance(example.get(f), str) or not example[f].strip() for f in FIELDS):
        return True
    if labels is not None and example["output"] not in labels:
        return True
    return len(f"{example['instruction']} {example['input']} {example['output']}".split()) > max_words


def clean(examples: Sequence[dict], labels: Sequence[str] | None = None, max_words: int = 40) -> list[dict]:
    """Drop malformed examples, then exact duplicates."""
    return deduplicate([ex for ex in examples if not is_malformed(ex, labels, max_words)])


def duplicate(examples: Sequence[dict], n_copies: int, n_examples: int = 1, seed: int = 0) -> list[dict]:
    """`examples` plus `n_copies` extra copies of each of `n_examples` random examples, shuffled in."""
    if n_copies < 0 or not 0 < n_examples <= len(examples):
        raise ValueError(f"need n_copies >= 0 and 0 < n_examples <= {len(examples)}")
    rng = random.Random(seed)
    out = list(examples) + [dict(ex) for ex in rng.sample(list(examples), n_examples) for _ in range(n_copies)]
    rng.shuffle(out)
    return out


def corrupt(examples: Sequence[dict], fraction: float, seed: int = 0) -> list[dict]:
    """A copy where `fraction` of the examples are malformed: empty answer, or input pasted as answer."""
    _check_fraction(fraction)
    rng = random.Random(seed)
    out = [dict(ex) for ex in examples]
    for i in rng.sample(range(len(out)), round(fraction * len(out))):
        out[i]["output"] = "" if rng.random() < 0.5 else out[i]["input"]
    return out


def flip_labels(examples: Sequence[dict], fraction: float, labels: Sequence[str], seed: int = 0) -> list[dict]:
    """A copy where `fraction` of the examples get a different label from `labels` (label noise)."""
    _check_fraction(fraction)
    if len(set(labels)) < 2:
        raise ValueError("flip_labels needs at least two distinct labels")
    rng = random.Random(seed)
    out = [dict(ex) for ex in examples]
    for i in rng.sample(range(len(out)), round(fraction * len(out))):
        out[i]["output"] = rng.choice([lab for lab in labels if lab != out[i]["output"]])
    return out


def drop_label(examples: Sequence[dict], label: str) -> list[dict]:
    """The examples without any whose answer is `label` (a class missing from the training data)."""
    if not any(ex["output"] == label for ex in examples):
        raise ValueError(f"no example has the label {label!r}; nothing to drop")
    return [ex for ex in examples if ex["output"] != label]


def label_counts(examples: Sequence[dict]) -> dict[str, int]:
    """How many examples carry each answer (class balance), most common first."""
    return dict(Counter(ex["output"] for ex in examples).most_common())


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
