"""fmlab.rollout: sampling, completion log-probs, the KL, the scored RL batch and its statistics."""
import copy

import pytest
import torch
import torch.nn.functional as F

from fmlab import params, reward, rollout


def test_completion_mask():
    tokens = torch.zeros(2, 6, dtype=torch.long)
    mask = rollout.completion_mask(tokens, torch.tensor([2, 3]), torch.tensor([5, 4]))
    assert mask.tolist() == [[False, True, True, True, False], [False, False, True, False, False]]


def test_sequence_logprobs_counts_completion_tokens_only(tiny_model):
    tokens = torch.tensor([[3, 4, 5, 6, 0, 0]])
    got = rollout.sequence_logprobs(tiny_model, tokens, torch.tensor([2]), torch.tensor([4]))
    logp = F.log_softmax(tiny_model(tokens[:, :-1]), -1)[0]
    torch.testing.assert_close(got[0], logp[1, 5] + logp[2, 6])
    padded = torch.tensor([[3, 4, 5, 6, 7, 8]])               # tokens after `length` are ignored
    torch.testing.assert_close(rollout.sequence_logprobs(tiny_model, padded, torch.tensor([2]), torch.tensor([4])), got)


def test_sample_shapes_prompts_and_eos(model, tok):
    prompts = [{"prompt": "tell me about ada .", "person": "ada"}, {"prompt": "who is ben ?", "person": "ben"}] * 3
    roll = rollout.sample(model, tok, prompts, max_new_tokens=5, generator=torch.Generator().manual_seed(0))
    assert roll.tokens.shape[0] == 6 and len(roll.texts) == 6
    for row, p, n, pr in zip(roll.tokens.tolist(), roll.prompt_len.tolist(), roll.length.tolist(), prompts):
        assert row[:p] == tok.encode(pr["prompt"])
        assert 1 <= n - p <= 5
        assert tok.eos_id not in row[p:n - 1]            # nothing after <eos>
        assert all(t == tok.pad_id for t in row[n:])
    with pytest.raises(ValueError, match="no prompts"):
        rollout.sample(model, tok, [])


def test_sample_leaves_the_mode_as_it_was(model, tok):
    prompts = [{"prompt": "who is ben ?", "person": "ben"}]
    model.train()
    rollout.sample(model, tok, prompts, 3, generator=torch.Generator().manual_seed(0))
    assert model.training
    model.eval()
    rollout.sample(model, tok, prompts, 3, generator=torch.Generator().manual_seed(0))
    assert not model.training


def test_kl_to_reference_is_zero_for_the_reference_itself(model, tok):
    roll = rollout.sample(model, tok, [{"prompt": "who is ben ?"}] * 4, 4, generator=torch.Generator().manual_seed(1))
    assert rollout.kl_to_reference(model, copy.deepcopy(model), roll.batch()) == pytest.approx(0.0, abs=1e-6)


def test_rollout_stats_by_hand():
    batch = {"score": torch.tensor([1.0, 3.0]), "true_score": torch.tensor([0.0, 1.0]),
             "ref_logp": torch.tensor([[0.0, -1.0, -2.0], [0.0, -1.0, 0.0]])}
    logp = torch.tensor([[0.0, -0.5, -1.0], [0.0, -1.0, 0.0]])
    mask = torch.tensor([[False, True, True], [False, True, False]])
    stats = rollout.rollout_stats(batch, logp, mask)
    assert stats == {"score": 2.0, "true_score": 0.5, "kl": 0.75, "length": 1.5}    # kl: (0.5 + 1.0 + 0) / 2


def test_sample_rollout_scores_on_the_policy_device(tiny_model, tiny_tok):
    ref = params.freeze(copy.deepcopy(tiny_model))
    rm = params.freeze(reward.RewardModel(tiny_model))
    prompts = [{"prompt": "ada lives in", "person": "ada"}, {"prompt": "the cat sat", "person": "ada"}]
    kw = dict(group=2, max_new_tokens=3, temperature=1.0)
    b, roll = rollout.sample_rollout(tiny_model, ref, tiny_tok, prompts, 4, torch.Generator().manual_seed(0), **kw,
                                     reward_model=rm, true_score=lambda prompt, text: float(len(text)))
    assert all(v.device == next(tiny_model.parameters()).device for v in b.values())
    assert [p["prompt"] for p in roll.prompts][0::2] == [p["prompt"] for p in roll.prompts][1::2]   # groups of 2
    torch.testing.assert_close(b["score"], reward.score(rm, b))
    assert b["true_score"].tolist() == [float(len(t)) for t in roll.texts]
    torch.testing.assert_close(b["ref_logp"], rollout.token_logprobs(ref, b["tokens"], b["prompt_len"], b["length"])[0])
    with pytest.raises(ValueError, match="multiple of group"):
        rollout.sample_rollout(tiny_model, ref, tiny_tok, prompts, 3, torch.Generator(), reward_model=rm, **kw)
    none = rollout.sample_rollout(tiny_model, ref, tiny_tok, prompts, 2, torch.Generator(), **kw)[0]
    assert (none["score"] == 0).all() and (none["true_score"] == 0).all()      # nothing to score with: zeros
    checked = rollout.sample_rollout(tiny_model, ref, tiny_tok, prompts, 2, torch.Generator(), **kw,
                                     score=lambda prompt, text: 2.0)[0]
    assert checked["score"].tolist() == [2.0, 2.0]                              # a program as the score (GRPO)
