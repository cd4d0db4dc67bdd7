"""The byte-level BPE tokenizer: lossless on any text, learned merges, and no token the pre-training never used."""
from collections import Counter

import pytest

from fmlab import corpus, domain, foundation, tasks
from fmlab.tokenizer import SPLIT_PATTERN, Tokenizer

TEXTS = ["the cat sat on the mat .", "the cat ate the rat .", "ada lives in paris .", "the mat is red ."] * 30


@pytest.fixture(scope="module")
def small_tok():
    return Tokenizer.train(TEXTS, n_merges=40, min_count=20)


def test_any_unicode_text_round_trips(small_tok):
    for text in ["", "   ", "café", "日本語", "Ünïcödé ☃ 🙂", "a\tb\nc", "<eos>", "x" * 3000, "naïve — “quotes”"]:
        ids = small_tok.encode(text)
        assert all(0 <= i < len(small_tok) for i in ids)
        assert small_tok.decode(ids) == text
    assert small_tok.encode("ADA") != small_tok.encode("ada")          # lossless: case is kept


def test_merges_follow_frequency(small_tok):
    # the most frequent pair of bytes in TEXTS, counted independently here, is the first merge
    chunks = Counter(c for t in TEXTS for c in SPLIT_PATTERN.findall(t))
    pairs = Counter()
    for c, f in chunks.items():
        b = c.encode()
        for p in zip(b, b[1:]):
            pairs[p] += f
    assert small_tok.merges[0] == max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))
    assert small_tok.tokens(" the") == ["▁the"]                       # a frequent word became one token


def test_every_emitted_token_was_seen_min_count_times(small_tok):
    counts = small_tok.count_texts(TEXTS)
    kept_ids = range(256, len(small_tok) - 2)
    assert all(counts[i] >= 20 for i in kept_ids)
    assert counts == small_tok.counts
    # an unseen word is spelled with pieces; no id it produces is a merge the training text lacked
    ids = small_tok.encode(" thematic rattle")
    assert all(i < 256 or counts[i] >= 20 for i in ids)


def test_eos_pad_and_specials(small_tok):
    ids = small_tok.encode("the cat", eos=True)
    assert ids[-1] == small_tok.eos_id and small_tok.decode(ids) == "the cat"
    assert small_tok.decode(ids, skip_special=False).endswith("<eos>")
    assert {small_tok.eos_id, small_tok.pad_id} == {len(small_tok) - 2, len(small_tok) - 1}


def test_bad_inputs(small_tok):
    with pytest.raises(TypeError):
        small_tok.encode(None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        small_tok.decode([len(small_tok)])
    with pytest.raises(ValueError, match="does not exist yet"):
        Tokenizer([(300, 1)])
    with pytest.raises(ValueError, match="unreadable tokenizer"):
        Tokenizer.from_json("{not json")


def test_json_round_trip_and_determinism(small_tok):
    again = Tokenizer.from_json(small_tok.to_json())
    assert again == small_tok and again.counts == small_tok.counts
    assert Tokenizer.train(list(TEXTS), n_merges=40) == small_tok


# --- the shipped tokenizer and data -------------------------------------------------------------------
def test_no_shipped_data_produces_an_untrained_token():
    """Every token id that the course's data or typical learner prompts produce occurs >= 20 times in the
    pre-training token stream (the stream the base model was trained on)."""
    tok = foundation.load_tokenizer()
    stream = foundation.corpus_stream("pretrain", "train").tolist() + foundation.corpus_stream("pretrain", "val").tolist()
    counts = Counter(stream)
    assert counts == Counter({i: c for i, c in enumerate(tok.counts) if c})     # the recorded counts are true
    texts = list(corpus.LEARNER_PROMPTS) + foundation.load_corpus("station") + foundation.load_corpus("python")
    for name in list(tasks.TASKS) + ["triage"]:
        texts += [f"{tasks.format_prompt(e)} {e['output']}" for split in foundation.load_task(name).values()
                  for e in split]
    texts += [f"{tasks.format_prompt(e)} {e['output']}" for split in domain.part_task(foundation.load_task("triage")).values()
              for e in split]
    produced = Counter(i for t in texts for i in tok.encode(t, eos=True))
    rare = {tok.piece(i): counts[i] for i in produced if counts[i] < 20}
    assert not rare, f"tokens the data produces but pre-training (almost) never showed: {rare}"
