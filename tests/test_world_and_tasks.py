import re

import pytest

from fmlab import corpus, domain, tasks, world
from fmlab.tasks import format_prompt


def _adjective(example):
    (adj,) = [x for x in example["input"].split() if x in world.POSITIVE + world.NEGATIVE]
    return adj


@pytest.fixture(scope="module")
def w():
    return world.make_world(0)


def test_world_is_deterministic(w):
    assert world.make_world(0) == w
    assert world.make_world(1).facts != w.facts
    cfg = corpus.CorpusConfig(n_documents=200)
    assert corpus.pretraining_corpus(w, cfg) == corpus.pretraining_corpus(w, cfg)


def test_corpus_states_only_true_facts(w):
    docs = corpus.pretraining_corpus(w, corpus.CorpusConfig(n_documents=1000))
    for p in w.people:
        for city in world.CITIES:
            if city != w.facts[p]["city"]:
                assert not any(f"{p} lives in {city} ." in d or f"does {p} live ? a : {city} ." in d for d in docs)


def test_corpus_mixes_its_document_kinds_in_the_stated_shares(w):
    cfg = corpus.CorpusConfig(n_documents=2000)
    docs = corpus.pretraining_corpus(w, cfg)
    assert len(docs) == 2000 and all("\n" not in d for d in docs)
    code = set(domain.python_paragraphs())
    verdicts = sum(d not in code and bool(re.search(r"\b(positive|negative)\b", d)) for d in docs)
    assert verdicts == round(cfg.review * 2000)
    assert sum(not d.isascii() for d in docs) >= round(cfg.postcard * 2000)      # postcards carry other scripts
    # the station's urgency knowledge is only in the domain corpus, never in pre-training
    assert not any(" is urgent" in d or "counts as urgent" in d for d in docs)
    with pytest.raises(ValueError, match="shares"):
        corpus.CorpusConfig(review=0.9, qa=0.2)


def test_grammar_measure_accepts_corpus_sentences_and_rejects_word_salad(w):
    docs = [d for d in corpus.pretraining_corpus(w, corpus.CorpusConfig(n_documents=300)) if d.isascii()]
    stories = [d for d in docs if not any(ch.isupper() for ch in d) and "python" not in d]
    assert corpus.grammatical_share(" ".join(stories)) > 0.97
    assert corpus.grammatical_share("paris the lives . ada ada ada .") == 0.0


def test_cloze_probes_cover_every_fact(w):
    probes = world.fact_cloze(w)
    assert len(probes) == 100
    assert {"prompt": "ada lives in", "answer": w.facts["ada"]["city"]}.items() <= probes[0].items()


@pytest.mark.parametrize("name", tasks.TASKS)
def test_task_splits_disjoint_and_deterministic(w, name):
    splits = tasks.make_task(w, name)
    assert splits == tasks.make_task(w, name)
    texts = {s: {format_prompt(e) for e in ex} for s, ex in splits.items()}
    for a in ("train", "val", "test"):
        assert texts[a], a
        for b in ("train", "val", "test", "ood"):
            if a < b and not (name == "qa" and {a, b} == {"test", "ood"}):
                assert not texts[a] & texts[b], (a, b)


def test_task_labels_are_correct(w):
    for ex in tasks.make_task(w, "sentiment")["test"]:
        assert (_adjective(ex) in world.POSITIVE) == (ex["output"] == "positive")
    for ex in tasks.make_task(w, "translate")["ood"]:
        _, adj, noun = ex["input"].split()
        assert ex["output"] == f"{w.toki[noun]} {w.toki[adj]}"
    for ex in tasks.make_task(w, "qa")["test"]:
        person = [p for p in w.people if f" {p} " in f" {ex['input']} "][0]
        assert ex["output"] in w.facts[person].values()
    for ex in tasks.make_task(w, "summarize")["ood"]:
        assert ex["output"].split()[0] in ex["input"]


def test_ood_changes_what_training_never_varied(w):
    s = tasks.make_task(w, "sentiment")
    train_adj = {_adjective(e) for e in s["train"]}
    assert not train_adj & {_adjective(e) for e in s["ood"]}
    qa = tasks.make_task(w, "qa")
    train_people_attr = {e["input"] for e in qa["train"]}
    assert not train_people_attr & {e["input"] for e in qa["test"]}


def test_unknown_task_is_a_clear_error(w):
    with pytest.raises(ValueError, match="choose one of"):
        tasks.make_task(w, "poetry")


def test_triage_labels_balanced_and_test_pairs_unseen():
    labels = domain.triage_labels()
    assert sum(v == "urgent" for v in labels.values()) == len(labels) // 2
    assert all((u == "urgent") == (s in domain.SEVERE) for (c, s), u in labels.items())
    t = domain.triage_task()
    pair = lambda e: tuple(e["input"].split(" logs ")[1].split(" at ")[0].split(" in the "))  # noqa: E731
    train_pairs = {pair(e) for e in t["train"]}
    assert not train_pairs & {pair(e) for e in t["test"]}
    for e in t["test"]:
        s, c = pair(e)
        assert labels[(c, s)] == e["output"]
    notes = domain.station_corpus(200)
    assert notes == domain.station_corpus(200)
    assert any("zarn" in d for d in notes)
    for d in notes:                       # the notes state only true urgencies
        for (c, s), u in labels.items():
            other = "routine" if u == "urgent" else "urgent"
            assert f"{s} in the {c} is {other} ." not in d


def test_python_reference_is_real_text_split_from_pretraining():
    docs = domain.python_corpus(50_000)
    assert any("def" in d for d in docs) and all(d.isascii() for d in docs)
    pre = set(corpus.pretraining_corpus(world.make_world(0), corpus.CorpusConfig(n_documents=2000)))
    assert not pre & set(domain.python_corpus())
