import copy

import pytest
import torch
import torch.nn.functional as F

from fmlab import preference, reward, rlhf
from fmlab.train import TrainConfig, train


def test_completion_mask():
    tokens = torch.zeros(2, 6, dtype=torch.long)
    mask = rlhf.completion_mask(tokens, torch.tensor([2, 3]), torch.tensor([5, 4]))
    assert mask.tolist() == [[False, True, True, True, False], [False, False, True, False, False]]


def test_sequence_logprobs_counts_completion_tokens_only(tiny_model):
    tokens = torch.tensor([[3, 4, 5, 6, 0, 0]])
    got = rlhf.sequence_logprobs(tiny_model, tokens, torch.tensor([2]), torch.tensor([4]))
    logp = F.log_softmax(tiny_model(tokens[:, :-1]), -1)[0]
    torch.testing.assert_close(got[0], logp[1, 5] + logp[2, 6])
    padded = torch.tensor([[3, 4, 5, 6, 7, 8]])               # tokens after `length` are ignored
    torch.testing.assert_close(rlhf.sequence_logprobs(tiny_model, padded, torch.tensor([2]), torch.tensor([4])), got)


def test_kl_penalised_returns_by_hand():
    mask = torch.tensor([[False, True, True]])
    logp, ref = torch.tensor([[9.0, -1.0, -2.0]]), torch.tensor([[0.0, -1.5, -1.0]])
    g = rlhf.kl_penalised_returns(torch.tensor([2.0]), logp, ref, mask, beta=0.5)
    # kl per token: 0.5 (t=1), -1.0 (t=2); to-go: -0.5, -1.0
    torch.testing.assert_close(g, torch.tensor([[0.0, 2.25, 2.5]]))
    same = rlhf.kl_penalised_returns(torch.tensor([2.0]), logp, logp, mask, beta=3.0)
    torch.testing.assert_close(same, torch.tensor([[0.0, 2.0, 2.0]]))


def test_leave_one_out_baseline():
    b = rlhf.leave_one_out_baseline(torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0]), group=3)
    torch.testing.assert_close(b, torch.tensor([2.5, 2.0, 1.5, 25.0, 20.0, 15.0]))
    with pytest.raises(ValueError):
        rlhf.leave_one_out_baseline(torch.ones(5), group=2)


def test_optimal_policy_weights_interpolate_between_reference_and_argmax():
    r = torch.tensor([[0.0, 1.0, 3.0]])
    torch.testing.assert_close(rlhf.optimal_policy_weights(r, 1e3), torch.full((1, 3), 1 / 3), atol=1e-3, rtol=0)
    assert rlhf.optimal_policy_weights(r, 0.01)[0, 2] > 0.999
    with pytest.raises(ValueError):
        rlhf.optimal_policy_weights(r, 0.0)


def test_rl_step_runs_in_the_training_loop_and_starts_at_zero_kl(tiny_model, tiny_tok):
    ref = rlhf.freeze(copy.deepcopy(tiny_model))
    rm = rlhf.freeze(reward.RewardModel(tiny_model))
    policy = copy.deepcopy(tiny_model)
    prompts = [{"prompt": "ada lives in", "person": "ada"}]
    cfg, log = rlhf.RLConfig(beta=0.1, group=2, max_new_tokens=3), []
    batches = rlhf.rollout_batches(policy, ref, rm, tiny_tok, prompts, cfg, preference.rubric)
    hist = train(policy, batches, TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup=1, progress=False),
                 loss_fn=rlhf.policy_gradient_loss(cfg, log))
    assert len(hist) == 4 and len(log) == 3
    assert abs(log[0]["kl"]) < 1e-5                           # before the first update policy == reference
    assert set(log[0]) == {"reward", "kl", "true_score", "length"}
    with pytest.raises(ValueError, match="multiple of group"):
        batches(3, torch.Generator())


def test_sample_rollout_scores_on_the_policy_device(tiny_model, tiny_tok):
    ref = rlhf.freeze(copy.deepcopy(tiny_model))
    rm = rlhf.freeze(reward.RewardModel(tiny_model))
    prompts = [{"prompt": "ada lives in", "person": "ada"}, {"prompt": "the cat sat", "person": "ada"}]
    cfg = rlhf.RLConfig(group=2, max_new_tokens=3)
    b, roll = rlhf.sample_rollout(tiny_model, ref, rm, tiny_tok, prompts, cfg, 4, torch.Generator().manual_seed(0),
                                  true_score=lambda person, text: float(len(text)))
    assert all(v.device == next(tiny_model.parameters()).device for v in b.values())
    assert [p["prompt"] for p in roll.prompts][0::2] == [p["prompt"] for p in roll.prompts][1::2]   # groups of 2
    torch.testing.assert_close(b["score"], reward.score(rm, b))
    assert b["true_score"].tolist() == [float(len(t)) for t in roll.texts]
    torch.testing.assert_close(b["ref_logp"], rlhf.token_logprobs(ref, b["tokens"], b["prompt_len"], b["length"])[0])
    with pytest.raises(ValueError, match="multiple of group"):
        rlhf.sample_rollout(tiny_model, ref, rm, tiny_tok, prompts, cfg, 3, torch.Generator())
    none = rlhf.sample_rollout(tiny_model, ref, None, tiny_tok, prompts, cfg, 2, torch.Generator())[0]
    assert (none["score"] == 0).all()                         # no reward model: GRPO scores the samples itself
