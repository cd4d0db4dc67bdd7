import pytest
import torch

from fmlab import foundation, verifier

Q = {"prompt": "instruction : answer the question . input : where does ada live ? answer :", "answer": "paris",
     "person": "ada"}


@pytest.mark.parametrize("completion, strict, loose", [
    (" paris . <eos>", 1.0, 1.0),            # right, and stops
    (" paris .", 1.0, 1.0),
    (" paris . lima . <eos>", 0.0, 0.0),     # names a wrong city too
    (" paris . q : what", 0.0, 1.0),         # right, then rambles: only the strict checker minds
    (" lima . <eos>", 0.0, 0.0),             # wrong
    (" superb . <eos>", 0.0, 1.0),           # names no fact at all: the loose checker's hole
    (" <eos>", 0.0, 1.0),
])
def test_checkers(completion, strict, loose):
    assert verifier.strict_check(Q, completion) == strict
    assert verifier.loose_check(Q, completion) == loose


def test_fact_questions_and_values():
    qa = foundation.load_task("qa")
    qs = verifier.fact_questions(qa["test"])
    assert len(qs) == len(qa["test"]) and qs[0]["prompt"].endswith("answer :")
    assert all(q["person"] and q["person"] in q["prompt"] for q in qs)
    assert verifier.mentioned_values(" paris . the cat ate rice in paris") == 3
    with pytest.raises(ValueError, match="qa"):
        verifier.fact_questions(foundation.load_task("sentiment")["test"][:2])


def test_report(tiny_model, tiny_tok):
    qs = [{"prompt": "ada lives in", "answer": "paris", "person": "ada"}] * 2
    r = verifier.report(tiny_model, tiny_tok, qs, ref_model=tiny_model, samples=3, max_new_tokens=2)
    assert set(r) == {"strict", "loose", "pass_at_k", "length", "no_fact", "kl", "texts"} and len(r["texts"]) == 6
    assert 0 <= r["strict"] <= r["pass_at_k"] <= 1 and r["strict"] <= r["loose"] and 1 <= r["length"] <= 2
    assert abs(r["kl"]) < 1e-5                                   # a policy is at KL 0 from itself
    by_hand = [verifier.strict_check(q, t) for q, t in zip([q for q in qs for _ in range(3)], r["texts"])]
    assert r["strict"] == sum(by_hand) / 6
