import json

import pytest

from fmlab import checkpoint, foundation, governance, world

CAST = world.NAMES


def card_for(examples, name="reviews"):
    return governance.DatasetCard.describe(examples, name=name, source="a test", licence="CC-BY-4.0",
                                           collected="2024-05", intended_use="tests only",
                                           known_gaps=("no negative reviews",))


def rows(n=4):
    return [{"task": "qa", "instruction": "answer the question .", "input": f"question {i} ?", "output": "paris"}
            for i in range(n)]


def test_find_pii_kinds_and_cast():
    text = "ada met mia . write to mia.kowal@post.net , call 555 0142 or +44 20 7946 0958 ."
    assert governance.find_pii(text, CAST) == [("email", "mia.kowal@post.net"), ("phone", "555 0142"),
                                               ("phone", "+44 20 7946 0958"), ("name", "mia")]
    assert governance.find_pii("Ada and Ben ate soup .", CAST) == []           # the cast is not PII
    assert governance.find_pii("Ada and Ben ate soup .") == [("name", "Ada"), ("name", "Ben")]


def test_numbers_of_the_world_are_not_phone_numbers():
    for text in ["the flux coil holds at 40 zarn .", "@Ada I agree & 9/10 ^_^ #lima", "deck 3 , 12 + 45 = 57",
                 "Weather: 23°C", "x[3] is an item, x+=3 adds 3", "version 3.11.2"]:
        assert governance.find_pii(text, CAST) == [], text


def test_redact_hand_checked():
    text = "how can i reach zoe ? zoe.silva@inbox.com or 342 5617 , says ada ."
    assert governance.redact(text, CAST) == "how can i reach [name] ? [email] or [phone] , says ada ."


def test_shipped_tasks_hold_no_pii():
    for task in ("sentiment", "translate", "summarize", "qa", "triage"):
        assert governance.pii_counts(foundation.load_task(task)["train"], CAST) == {"email": 0, "phone": 0, "name": 0}


def test_plant_pii_counts_and_filter():
    base = rows(10)
    dirty, planted = governance.plant_pii(base, copies=(1, 4), seed=3)
    assert len(planted) == 10 and len({p.person for p in planted}) == 10
    assert not {p.person for p in planted} & set(CAST)
    assert [p.copies for p in planted] == [1, 1, 4, 4, 1, 1, 4, 4, 1, 1]
    assert len(dirty) == 10 + 22
    for p in planted:
        assert sum(ex == p.example for ex in dirty) == p.copies
    n_email = sum("@" in ex["output"] for ex in dirty)
    assert n_email == 11
    counts = governance.pii_counts(dirty, CAST)
    known = sum(p.copies for p in planted if p.person in governance.FIRST_NAMES)
    assert counts == {"email": 11, "phone": 11, "name": known}
    assert known < 22                               # some planted names are unknown to the list
    filtered = governance.filter_pii(dirty, CAST)
    assert governance.pii_counts(filtered, CAST) == {"email": 0, "phone": 0, "name": 0}
    assert not any(p.secret in ex["output"] or p.secret in ex["input"] for p in planted for ex in filtered)
    assert [ex for ex in filtered if ex in base] == [ex for ex in dirty if ex in base]    # clean rows untouched
    assert governance.plant_pii(base, seed=3) == governance.plant_pii(base, seed=3)        # deterministic


def test_dataset_hash_ignores_key_order_not_content():
    a = rows(3)
    reordered = [dict(reversed(list(ex.items()))) for ex in a]
    assert governance.dataset_sha256(a) == governance.dataset_sha256(reordered)
    assert governance.dataset_sha256(a) != governance.dataset_sha256(a[::-1])
    assert governance.dataset_sha256(a) != governance.dataset_sha256([*a[:2], {**a[2], "output": "lima"}])


def test_card_travels_with_the_data(tmp_path):
    data = rows(5)
    card = card_for(data)
    assert card.n_examples == 5 and card.matches(data) and not card.matches(data[:4])
    path = governance.save_dataset(data, card, tmp_path)
    loaded, loaded_card = governance.load_dataset(path)
    assert loaded == data and loaded_card == card
    with pytest.raises(ValueError, match="does not describe"):
        governance.save_dataset(data[:4], card, tmp_path)
    path.write_text(path.read_text().replace("paris", "lima", 1))
    with pytest.raises(ValueError, match="changed after its card"):
        governance.load_dataset(path)


def test_lineage_through_checkpoint_cards(tiny_model, tiny_tok, tmp_path):
    dirty, clean = rows(4), rows(3)
    for name, data in (("model_dirty", dirty), ("model_clean", clean), ("model_clean_2", clean)):
        checkpoint.save(tiny_model, tiny_tok, tmp_path / name, {"dataset": card_for(data, name).to_dict()})
    (tmp_path / "notes.json").write_text(json.dumps({"not": "a card"}))
    (tmp_path / "odd.json").write_text(json.dumps({"meta": {"dataset": "a string"}}))
    (tmp_path / "list.json").write_text("[1, 2]")
    assert governance.trained_on(tmp_path, governance.dataset_sha256(clean)) == ["model_clean", "model_clean_2"]
    assert governance.trained_on(tmp_path, governance.dataset_sha256(dirty)) == ["model_dirty"]
    _, _, meta = checkpoint.load(tmp_path / "model_dirty")
    assert meta["dataset"]["sha256"] == governance.dataset_sha256(dirty)
