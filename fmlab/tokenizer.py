"""A byte-level BPE tokenizer (GPT-2 style), learned on the pre-training corpus, shared by the whole course.

Text is UTF-8 bytes, so *any* string encodes and decodes back exactly -- "café", "日本語", emoji, tabs.  The
256 single bytes are the first 256 tokens; training then repeatedly *merges* the most frequent adjacent pair
of tokens into a new token (Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019)::

    " plasma"  ->  bytes  ->  " pl" "as" "ma"  ->  " plas" "ma"  ->  " plasma"      (if frequent enough)

Before merging, text is split into chunks by a regular expression (a word with its leading space, a number,
a run of punctuation, whitespace), so merges never cross a word boundary.  Encoding applies the merges in the
order they were learned.  Two special tokens follow: ``<eos>`` ends every document, ``<pad>`` fills batches
(it is never a training target and never read by a position that carries loss).

Why this and not whole words: a word-level vocabulary has rows for words that pre-training never showed the
model (a new label, domain jargon) -- rows that stay random and make fine-tuning behave like nothing real
models do.  Here every merge is learned from the pre-training text, and `train` makes sure each merged token
occurs at least ``min_count`` times in it, so jargon the model never read is made of pieces it did read --
as in real models.  `counts` keeps how often each token occurred in the pre-training stream, so a
prompt made of tokens the model rarely saw (a rare byte of an exotic script) can be flagged.

Simplifications vs GPT-2: the split pattern uses Python's ``re`` (letters are ``[^\\W\\d]``, GPT-2 uses
``\\p{L}`` from the ``regex`` package); digits group by up to three (as GPT-4); punctuation is split one
character at a time (GPT-2 keeps runs such as ``"(`` or ``{}`` together: with our small corpus such runs
became tokens the pre-training text used only a few times, and the Python reference then produced them);
training counts pairs inside distinct chunks weighted by frequency (minbpe's algorithm); and the
vocabulary is ~900 tokens instead of 50 257.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

__all__ = ["Tokenizer", "SPLIT_PATTERN", "EOS", "PAD"]

EOS, PAD = "<eos>", "<pad>"
SPLIT_PATTERN = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d]+| ?\d{1,3}| ?[^\s\w]|\s+(?!\S)|\s+""")


def _pair_counts(words: Sequence[list[int]], freqs: Sequence[int]) -> Counter:
    counts: Counter = Counter()
    for w, f in zip(words, freqs):
        for pair in zip(w, w[1:]):
            counts[pair] += f
    return counts


def _merge(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by the token `new` (left to right)."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _learn_merges(chunks: Counter, n_merges: int, min_count: int) -> list[tuple[int, int]]:
    """Greedy BPE on a chunk -> frequency table: the most frequent pair first (ties: smallest ids)."""
    words, freqs = [list(c.encode("utf-8")) for c in chunks], list(chunks.values())
    merges: list[tuple[int, int]] = []
    for new in range(256, 256 + n_merges):
        counts = _pair_counts(words, freqs)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        if counts[pair] < min_count:
            break
        merges.append(pair)
        words = [_merge(w, pair, new) if len(w) > 1 else w for w in words]
    return merges


class Tokenizer:
    """Byte-level BPE: ids 0..255 are bytes, then one id per kept merge, then <eos> and <pad>.

    merges: the learned pairs, in order; merge k makes the *internal* token 256 + k.
    kept: the internal tokens that encoding may emit (default: all).  A merge that is not kept is still
        applied on the way (it can be the first half of a kept one), but if it survives to the end of a
        chunk it is split back into its two halves.  Ids are given to bytes and kept merges only.
    counts: occurrences of each id in the pre-training stream (optional; see `rare`).
    """

    def __init__(self, merges: Sequence[Sequence[int]], kept: Iterable[int] | None = None,
                 counts: Sequence[int] | None = None):
        self.merges = [tuple(int(x) for x in m) for m in merges]
        for k, m in enumerate(self.merges):
            if len(m) != 2 or not all(0 <= x < 256 + k for x in m):
                raise ValueError(f"merge {k} {m} refers to a token that does not exist yet; was the tokenizer "
                                 "file edited? rebuild it with `python -m fmlab.foundation data`")
        n_internal = 256 + len(self.merges)
        self.kept = sorted(set(range(256, n_internal)) if kept is None else {int(i) for i in kept})
        if any(not 256 <= i < n_internal for i in self.kept):
            raise ValueError(f"kept ids must be merges, in [256, {n_internal})")
        self._rank = {pair: 256 + k for k, pair in enumerate(self.merges)}
        internal = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            internal.append(internal[a] + internal[b])
        self._vocab_id = {i: i for i in range(256)} | {i: 256 + j for j, i in enumerate(self.kept)}
        self.pieces: list[bytes] = internal[:256] + [internal[i] for i in self.kept]   # id -> its bytes
        self.eos_id, self.pad_id = len(self.pieces), len(self.pieces) + 1
        self.specials = {self.eos_id: EOS, self.pad_id: PAD}
        if counts is not None and len(counts) != len(self):
            raise ValueError(f"counts has {len(counts)} entries for a vocabulary of {len(self)}")
        self.counts = list(counts) if counts is not None else None
        self._encode_chunk = lru_cache(maxsize=1 << 16)(self._encode_chunk_uncached)

    # --- training -------------------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], n_merges: int = 1000, min_count: int = 20) -> "Tokenizer":
        """Learn up to `n_merges` merges on `texts`, then keep the tokens the texts use >= `min_count` times.

        Learning stops early when no pair occurs `min_count` times.  A merged token can still end up rare
        once later merges use it up (" liv" on the way to " lives"); such tokens are not kept, so encoding
        never emits a token that the training text (the pre-training corpus) used fewer than `min_count`
        times -- whatever text is encoded.  Dropping one can raise its halves' counts, never lower a kept
        token's, so the loop ends.  (Forbidding such merges and learning again instead cascades: " li",
        " liv" ... all end up forbidden and common words fall apart into letters -- measured.)
        """
        texts = list(texts)
        chunks = Counter(c for t in texts for c in SPLIT_PATTERN.findall(t))
        merges = _learn_merges(chunks, n_merges, min_count)
        kept = set(range(256, 256 + len(merges)))
        while True:
            tok = cls(merges, kept)
            counts = tok.count(chunks)
            rare = {i for i in kept if counts[tok._vocab_id[i]] < min_count}
            if not rare:
                break
            kept -= rare
        return cls(merges, kept, tok.count_texts(texts))

    def count(self, chunks: Counter) -> list[int]:
        """How often each id occurs when a chunk -> frequency table is encoded (no <eos>)."""
        counts = [0] * len(self)
        for chunk, f in chunks.items():
            for i in self._encode_chunk(chunk):
                counts[i] += f
        return counts

    def count_texts(self, texts: Iterable[str]) -> list[int]:
        """Occurrences of each id in `texts` encoded as documents (each followed by <eos>)."""
        texts = list(texts)
        counts = self.count(Counter(c for t in texts for c in SPLIT_PATTERN.findall(t)))
        counts[self.eos_id] += len(texts)
        return counts

    # --- encoding -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pieces) + 2

    def _emit(self, i: int) -> list[int]:
        """Vocabulary ids for internal token i: itself if kept (or a byte), else its two halves, recursively."""
        if i in self._vocab_id:
            return [self._vocab_id[i]]
        a, b = self.merges[i - 256]
        return self._emit(a) + self._emit(b)

    def _encode_chunk_uncached(self, chunk: str) -> tuple[int, ...]:
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self._rank.get(p, 1 << 30))
            if pair not in self._rank:
                break
            ids = _merge(ids, pair, self._rank[pair])
        return tuple(v for i in ids for v in self._emit(i))

    def encode(self, text: str, eos: bool = False) -> list[int]:
        """Token ids of `text` (any Unicode string); `eos=True` appends <eos>."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a string, got {type(text).__name__}")
        ids = [i for chunk in SPLIT_PATTERN.findall(text) for i in self._encode_chunk(chunk)]
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of `ids`; bytes that do not form valid UTF-8 (a cut-off character) show as '\ufffd'."""
        out, n = [], len(self)
        if hasattr(ids, "tolist"):            # a tensor: read it on the host once, not id by id
            ids = ids.tolist()
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside the vocabulary (size {n})")
            if i in self.specials:
                if not skip_special:
                    out.append(self.specials[i].encode())
                continue
            out.append(self.pieces[i])
        return b"".join(out).decode("utf-8", errors="replace")

    def piece(self, i: int) -> str:
        """A readable name of token `i`: its text, with a leading space shown as '▁' ('<eos>' for specials)."""
        if i in self.specials:
            return self.specials[i]
        return self.pieces[i].decode("utf-8", errors="backslashreplace").replace(" ", "▁")

    def tokens(self, text: str) -> list[str]:
        """The token pieces of `text` (for showing tokenization)."""
        return [self.piece(i) for i in self.encode(text)]

    def rare(self, ids: Iterable[int], min_count: int = 20) -> list[int]:
        """The distinct ids among `ids` that occurred fewer than `min_count` times in pre-training."""
        if self.counts is None:
            return []
        return sorted({int(i) for i in ids if self.counts[int(i)] < min_count and int(i) not in self.specials})

    # --- saving ---------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"type": "byte-level BPE", "specials": [EOS, PAD], "merges": self.merges,
                           "kept": self.kept, "counts": self.counts})

    @classmethod
    def from_json(cls, text: str) -> "Tokenizer":
        try:
            info = json.loads(text)
            if info.get("type") != "byte-level BPE" or info.get("specials") != [EOS, PAD]:
                raise ValueError("not a byte-level BPE tokenizer file")
            return cls(info["merges"], info["kept"], info.get("counts"))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"unreadable tokenizer file ({e}); rebuild it with `python -m fmlab.foundation data`"
                             ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and (self.merges, self.kept) == (other.merges, other.kept)

    __hash__ = None  # type: ignore[assignment]   # compared by merges; not a dict key


