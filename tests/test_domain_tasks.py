import pytest

from fmlab import domain


def test_part_task_answers_the_component_on_the_triage_splits():
    t = domain.triage_task()
    parts = domain.part_task(t)
    assert {k: len(v) for k, v in parts.items()} == {k: len(v) for k, v in t.items()}
    for split in t:
        for e, p in zip(t[split], parts[split]):
            assert p["input"] == e["input"] and p["output"] in domain.COMPONENTS
            assert f"in the {p['output']} at" in p["input"]
    assert parts == domain.part_task(domain.triage_task())          # deterministic


def test_part_task_test_pairs_unseen_in_train():
    parts = domain.part_task(domain.triage_task())
    pair = lambda e: e["input"].split(" logs ")[1].split(" at ")[0]  # noqa: E731
    assert not {pair(e) for e in parts["train"]} & {pair(e) for e in parts["test"]}


def test_part_task_rejects_other_tasks():
    with pytest.raises(ValueError, match="triage splits"):
        domain.part_task({"train": [{"task": "sentiment", "input": "x", "output": "y"}]})
