import pytest

from fmlab import curation

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
    assert not curation.is_malformed(ex(0), LABELS)
    assert curation.is_malformed({**ex(0), "output": ""}, LABELS)
    assert curation.is_malformed({**ex(0), "output": "maybe"}, LABELS)
    assert curation.is_malformed({k: v for k, v in ex(0).items() if k != "input"})
    assert curation.is_malformed({**ex(0), "input": "word " * 50})


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
