import pytest

from fmlab import curation, foundation

LABELS = ["positive", "negative"]


def ex(i: int, out: str = "positive") -> dict:
    return {"task": "sentiment", "instruction": "rate it ?", "input": f"review {i} .", "output": out}


def data(n: int = 20) -> list[dict]:
    return [ex(i, LABELS[i % 2]) for i in range(n)]


def test_deduplicate_keeps_first_and_order():
    d = data(5)
    out = curation.deduplicate([d[0], d[1], d[0], d[2], d[1]])
    assert out == [d[0], d[1], d[2]]


def test_is_malformed_rules():
    tok = foundation.load_tokenizer()
    assert not curation.is_malformed(ex(0), LABELS, tok, 64)
    assert curation.problem({**ex(0), "output": ""}, LABELS) == "empty answer"
    assert curation.problem({**ex(0), "output": "maybe"}, LABELS) == "not a label"
    assert curation.problem({**ex(0), "output": "maybe"}) is None           # no label set: any answer goes
    assert curation.problem({k: v for k, v in ex(0).items() if k != "input"}) == "missing input"
    long = {**ex(0), "input": "the soup was great . " * 12}
    assert curation.problem(long, LABELS) is None                          # no tokenizer: length unchecked
    assert curation.problem(long, LABELS, tok, 64) == "too long"


def test_n_tokens_counts_what_training_reads():
    tok = foundation.load_tokenizer()
    e = ex(3)
    prompt = tok.encode(f"instruction : {e['instruction']} input : {e['input']} answer :")
    answer = tok.encode(" positive") + [tok.eos_id]
    assert curation.n_tokens(e, tok) == len(prompt) + len(answer) - 1


def test_report_counts_by_reason():
    d = data(10)
    dirty = d + [d[0], d[0], d[1], {**d[2], "output": ""}, {**d[3], "output": "maybe"}]
    assert curation.report(dirty, LABELS) == {"empty answer": 1, "not a label": 1, "duplicate": 3}
    assert len(curation.clean(dirty, LABELS)) == 10


def test_corrupt_then_clean_recovers_clean_subset():
    d = data(40)
    dirty = curation.duplicate(curation.corrupt(d, 0.25, seed=1), n_copies=5, n_examples=2, seed=1)
    assert len(dirty) == 40 + 10
    cleaned = curation.clean(dirty, LABELS)
    assert len(cleaned) == 30                     # 10 malformed dropped, copies removed
    assert all(e in d for e in cleaned)
    assert curation.corrupt(d, 0.25, seed=1) == curation.corrupt(d, 0.25, seed=1)   # deterministic


def test_flip_labels_flips_exact_fraction_and_copies():
    d = data(40)
    noisy = curation.flip_labels(d, 0.3, LABELS, seed=0)
    assert sum(a["output"] != b["output"] for a, b in zip(d, noisy)) == 12
    assert d == data(40)                          # input untouched


def test_mislabel_words_is_systematic():
    d = [ex(0, "negative"), {**ex(1, "negative"), "input": "the soup was bland ."},
         {**ex(2, "positive"), "input": "the cake was bland and stale ."}, {**ex(3, "negative"), "input": "blandly ."}]
    out = curation.mislabel_words(d, ["bland", "stale"], "positive")
    assert [e["output"] for e in out] == ["negative", "positive", "positive", "negative"]   # whole words only
    assert d[1]["output"] == "negative"                                                     # input untouched


def test_drop_label_and_counts():
    d = data(10)
    assert curation.label_counts(d) == {"positive": 5, "negative": 5}
    assert curation.label_counts(curation.drop_label(d, "negative")) == {"positive": 5}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="between 0 and 1"):
        curation.flip_labels(data(), 1.5, LABELS)
    with pytest.raises(ValueError, match="two distinct labels"):
        curation.flip_labels(data(), 0.1, ["positive"])
    with pytest.raises(ValueError, match="nothing to drop"):
        curation.drop_label(data(), "neutral")
    with pytest.raises(ValueError, match="n_examples"):
        curation.duplicate(data(3), 2, n_examples=5)
