"""A word-level tokenizer with a spelling fallback, shared by the whole course.

Real foundation models use sub-word tokenizers (BPE) learned on huge corpora.  At our scale a word-level
vocabulary learns the synthetic world fastest per CPU-second, so every known word is one token.  A word
that is not in the vocabulary is *spelled*: its first character as a word, the rest as ``##c`` pieces
(the WordPiece convention), so anything a learner types encodes without an error and decodes back::

    "ada likes zorbs"  ->  ["ada", "likes", "z", "##o", "##r", "##b", "##s"]  ->  "ada likes zorbs"

Text is lower-cased; a character outside ``a-z 0-9 _`` and the known punctuation becomes ``<unk>``.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable

__all__ = ["Tokenizer", "PAD", "UNK", "EOS"]

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
_SPECIALS = [PAD, UNK, EOS]
_WORD = re.compile(r"\w+|[^\w\s]")
_SPELLABLE = string.ascii_lowercase + string.digits + "_"


class Tokenizer:
    def __init__(self, vocab: list[str]):
        if vocab[:3] != _SPECIALS or len(set(vocab)) != len(vocab):
            raise ValueError("vocab must start with <pad>, <unk>, <eos> and have no duplicates")
        self.vocab = list(vocab)
        self.ids = {w: i for i, w in enumerate(vocab)}
        self.pad_id, self.unk_id, self.eos_id = 0, 1, 2

    @classmethod
    def train(cls, texts: Iterable[str], max_words: int | None = None, keep: Iterable[str] = ()) -> "Tokenizer":
        """Vocabulary = specials + spelling pieces + the most frequent words (ties broken alphabetically)."""
        counts = Counter(w for t in texts for w in _WORD.findall(t.lower()))
        words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:max_words]
        pieces = list(_SPELLABLE) + ["##" + c for c in _SPELLABLE]
        vocab = _SPECIALS + pieces + sorted(set(keep) - set(pieces))
        vocab += [w for w in words if w not in set(vocab)]
        return cls(vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def _word_ids(self, word: str) -> list[int]:
        if word in self.ids:
            return [self.ids[word]]
        if all(c in _SPELLABLE for c in word):
            return [self.ids[word[0]]] + [self.ids["##" + c] for c in word[1:]]
        return [self.unk_id]

    def encode(self, text: str, eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a string, got {type(text).__name__}")
        ids = [i for w in _WORD.findall(text.lower()) for i in self._word_ids(w)]
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.vocab):
                raise ValueError(f"token id {i} is outside the vocabulary (size {len(self.vocab)})")
            w = self.vocab[i]
            if skip_special and w in (PAD, EOS):
                continue
            if w.startswith("##") and words:
                words[-1] += w[2:]
            else:
                words.append(w[2:] if w.startswith("##") else w)
        return " ".join(words)

    def tokens(self, text: str) -> list[str]:
        """The token strings of `text` (for showing tokenization)."""
        return [self.vocab[i] for i in self.encode(text)]
