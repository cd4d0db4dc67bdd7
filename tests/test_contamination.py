"""No held-out input of any task occurs in any corpus the models train on -- and the check can find one.

Contamination (test inputs inside training text) inflates every score measured on them.  The first station
notes held 3 of the 400 triage test logs (and 4 validation logs) verbatim; `domain.station_corpus` now draws
such notes again.  This test checks every task of data/tasks.json, every split but 'train', against every
shipped corpus (pre-training text, station notes, Python reference).
"""
import json

import pytest

from fmlab import domain, foundation


def held_out() -> dict[str, set[str]]:
    all_tasks = json.loads((foundation.data_dir() / "tasks.json").read_text())
    return {f"{task}/{split}": {e["input"] for e in examples}
            for task, splits in all_tasks.items() for split, examples in splits.items() if split != "train"}


HELD_OUT = held_out()


def test_every_task_has_held_out_splits():
    tasks = {key.split("/")[0] for key in HELD_OUT}
    assert {"sentiment", "translate", "summarize", "qa", "triage"} <= tasks, sorted(HELD_OUT)
    assert {"triage/val", "triage/test"} <= set(HELD_OUT)


@pytest.mark.parametrize("corpus", foundation.CORPORA)
def test_no_held_out_input_in_any_corpus(corpus):
    docs = foundation.load_corpus(corpus)
    every_input = set().union(*HELD_OUT.values())
    found = domain.verbatim_in(every_input, docs)
    where = {key: len(inputs & found) for key, inputs in HELD_OUT.items() if inputs & found}
    assert not found, f"{corpus}.txt contains {len(found)} held-out inputs verbatim {where}: {sorted(found)[:3]}"


def test_the_check_finds_a_planted_input():
    """Not vacuous: the same function finds test inputs planted in a corpus, mid-line or as a whole line."""
    docs = foundation.load_corpus("station")
    test_logs = sorted(HELD_OUT["triage/test"])
    qa = sorted(HELD_OUT["qa/test"])[0]
    planted = docs[:100] + [f"deck 3 notes : {test_logs[0]} it was urgent .", test_logs[1], f"so {qa} yes"] + docs[100:]
    assert domain.verbatim_in(test_logs + [qa], planted) == {test_logs[0], test_logs[1], qa}
    # ... and a near miss (another reading in zarn) is not reported
    near = test_logs[2].replace(" zarn .", " zarns .")
    assert domain.verbatim_in([test_logs[2]], docs[:100] + [near]) == set()


def test_station_corpus_is_decontaminated_and_has_an_ablation():
    with_reports = domain.station_corpus(n_documents=600)
    without = domain.station_corpus(n_documents=600, labelled_reports=False)
    assert not domain.verbatim_in(domain.held_out_inputs(), with_reports)
    reports = sum(" it was urgent ." in d or " it was routine ." in d for d in with_reports)
    assert reports > 200, reports                     # about half the notes hold a labelled incident report
    assert not any(" it was " in d or " logs " in d for d in without)
    # the same notes (same draws), minus the report that opens some of them
    assert all(a.endswith(b) for a, b in zip(with_reports, without))
    assert with_reports[:600] == foundation.load_corpus("station")[:600]      # the shipped file is this generator's
