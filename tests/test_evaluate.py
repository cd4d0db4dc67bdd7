import math

import pytest
import torch

from fmlab.evaluate import accuracy, answer, complete, encode_prompt, fact_recall, greedy_match, perplexity


def test_teacher_forced_match_equals_generation(tiny_model, tiny_tok):
    """greedy_match is True exactly when generating greedily reproduces the answer."""
    torch.manual_seed(0)
    rows = []
    for _ in range(30):
        prompt = torch.randint(3, len(tiny_tok), (int(torch.randint(2, 6, ())),)).tolist()
        gen = tiny_model.generate(torch.tensor([prompt]), 3)[0, len(prompt):].tolist()
        wrong = [(gen[0] + 1) % len(tiny_tok)] + gen[1:]
        rows += [(prompt, gen), (prompt, wrong), (prompt, gen[:1] + wrong[1:2])]
    ok = greedy_match(tiny_model, rows, tiny_tok.pad_id, batch_size=7)
    truth = []
    for p, a in rows:
        out = tiny_model.generate(torch.tensor([p]), len(a))[0, len(p):].tolist()
        truth.append(out == a)
    assert ok.tolist() == truth
    assert any(truth) and not all(truth)


def test_perplexity_of_uniform_model_is_vocab_size(tiny_model):
    for p in tiny_model.parameters():
        torch.nn.init.zeros_(p)
    ppl = perplexity(tiny_model, torch.randint(0, tiny_model.cfg.vocab_size, (200,)))
    assert ppl == pytest.approx(tiny_model.cfg.vocab_size, rel=1e-4)


def test_accuracy_and_recall_in_unit_interval(tiny_model, tiny_tok):
    ex = [{"instruction": "the", "input": "cat", "output": "sat"}] * 3
    assert 0.0 <= accuracy(tiny_model, tiny_tok, ex) <= 1.0
    assert 0.0 <= fact_recall(tiny_model, tiny_tok, [{"prompt": "ada lives in", "answer": "paris"}]) <= 1.0
    assert isinstance(answer(tiny_model, tiny_tok, ex[0], 2), str)


def test_prompt_errors_name_the_fix(tiny_model, tiny_tok):
    with pytest.raises(ValueError, match="empty"):
        complete(tiny_model, tiny_tok, "   ")
    with pytest.raises(ValueError, match="shorten it"):
        encode_prompt(tiny_model, tiny_tok, "cat " * 40)
    with pytest.raises(ValueError, match="no examples"):
        accuracy(tiny_model, tiny_tok, [])
    assert isinstance(complete(tiny_model, tiny_tok, "Ünï ☃ cat", 3, temperature=1.0, seed=1), str)
