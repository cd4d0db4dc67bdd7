"""Preparing fine-tuning data: curation, labelling quality and representativeness.

A fine-tuning set is only as good as its examples.  Three checks an engineer runs before training, and
the faults they catch (each can be *injected* here, so a notebook can measure what it costs):

- curation -- exact duplicates (`deduplicate`) and malformed examples (`problem` / `is_malformed`: a
  missing field, an empty answer, an answer that is not one of the task's labels, an example longer than
  the model's context).  ``clean = deduplicate([e for e in data if not is_malformed(e, ...)])``;
  `report` counts what it removes, by reason.
- labelling quality -- a fraction of labels flipped to a wrong class at random (`flip_labels`), as
  careless annotators do, or the same mistake made every time (`mislabel_words`); `label_counts` shows
  the class balance.
- representativeness -- a class (or a whole task) missing from training (`drop_label`): the model can
  only answer what it was shown.

Personal data and the dataset's documentation are governance, in `fmlab.governance`.

Simplifications vs practice: duplicates are exact (real pipelines also remove near-duplicates with
MinHash / embeddings), and "malformed" is checked by rules; real label audits use several annotators.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

from .batches import encode_example
from .tokenizer import Tokenizer

__all__ = ["FIELDS", "deduplicate", "n_tokens", "problem", "is_malformed", "clean", "report", "duplicate",
           "corrupt", "flip_labels", "mislabel_words", "drop_label", "label_counts"]

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


def n_tokens(example: dict, tokenizer: Tokenizer) -> int:
    """Tokens the model reads to train on this example: prompt + answer (+ <eos>), minus the last."""
    prompt, answer = encode_example(tokenizer, example)
    return len(prompt) + len(answer) - 1


def problem(example: dict, labels: Sequence[str] | None = None, tokenizer: Tokenizer | None = None,
            block_size: int | None = None) -> str | None:
    """Why an example is malformed ("missing input", "empty answer", "not a label", "too long"), or None.

    labels: the allowed answers (classification tasks); tokenizer + block_size: check that the example fits
    the model's context (a longer one cannot be trained on without cutting it).
    """
    for f in FIELDS:
        if not isinstance(example.get(f), str):
            return f"missing {f}"
        if not example[f].strip():
            return "empty answer" if f == "output" else f"empty {f}"
    if labels is not None and example["output"] not in labels:
        return "not a label"
    if tokenizer is not None and block_size is not None and n_tokens(example, tokenizer) > block_size:
        return "too long"
    return None


def is_malformed(example: dict, labels: Sequence[str] | None = None, tokenizer: Tokenizer | None = None,
                 block_size: int | None = None) -> bool:
    """True when `problem` finds something wrong with the example."""
    return problem(example, labels, tokenizer, block_size) is not None


def clean(examples: Sequence[dict], labels: Sequence[str] | None = None, tokenizer: Tokenizer | None = None,
          block_size: int | None = None) -> list[dict]:
    """Drop malformed examples, then exact duplicates."""
    return deduplicate([ex for ex in examples if not is_malformed(ex, labels, tokenizer, block_size)])


def report(examples: Sequence[dict], labels: Sequence[str] | None = None, tokenizer: Tokenizer | None = None,
           block_size: int | None = None) -> dict[str, int]:
    """What `clean` would remove, by reason: {problem: count, ..., "duplicate": extra copies}."""
    problems = Counter(problem(ex, labels, tokenizer, block_size) for ex in examples)
    well_formed = problems.pop(None, 0)
    kept = len(clean(examples, labels, tokenizer, block_size))
    return {**dict(problems.most_common()), "duplicate": well_formed - kept}


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


def mislabel_words(examples: Sequence[dict], words: Sequence[str], label: str) -> list[dict]:
    """A copy where every example whose input contains one of `words` is labelled `label`.

    A *systematic* labelling error -- one annotator's habit, or a keyword rule -- unlike `flip_labels`'
    random noise: the same mistake every time, so a model can learn it.
    """
    words = set(words)
    return [{**ex, "output": label} if words & set(ex["input"].split()) else dict(ex) for ex in examples]


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
