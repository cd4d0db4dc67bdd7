import copy

import pytest
import torch

from fmlab import grpo, params, preference, reward, rlhf
from fmlab.train import TrainConfig, train


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
    ref = params.freeze(copy.deepcopy(tiny_model))
    rm = params.freeze(reward.RewardModel(tiny_model))
    policy = copy.deepcopy(tiny_model)
    prompts = [{"prompt": "ada lives in", "person": "ada"}]
    cfg, log = rlhf.RLConfig(beta=0.1, group=2, max_new_tokens=3), []
    batches = rlhf.rollout_batches(policy, ref, rm, tiny_tok, prompts, cfg, preference.rubric)
    hist = train(policy, batches, TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup=1, progress=False),
                 loss_fn=rlhf.policy_gradient_loss(cfg, log))
    assert len(hist) == 4 and len(log) == 3
    assert abs(log[0]["kl"]) < 1e-5                           # before the first update policy == reference
    assert set(log[0]) == {"score", "true_score", "kl", "length"}            # rollout.rollout_stats
    with pytest.raises(ValueError, match="multiple of group"):
        batches(3, torch.Generator())


def test_the_reward_is_a_choice_apart_from_the_optimizer(tiny_model, tiny_tok):
    """The policy gradient on a checker program, GRPO on a reward model: the same batches, another score."""
    ref, policy = params.freeze(copy.deepcopy(tiny_model)), copy.deepcopy(tiny_model)
    rm = params.freeze(reward.RewardModel(tiny_model))
    prompts = [{"prompt": "ada lives in", "answer": "paris", "person": "ada"}]
    says_paris = lambda p, text: float(p["answer"] in text.split())       # noqa: E731
    cfg = rlhf.RLConfig(beta=0.1, group=2, max_new_tokens=3)
    checked = rlhf.rollout_batches(policy, ref, None, tiny_tok, prompts, cfg, score=says_paris)(4, torch.Generator().manual_seed(0))
    scored = rlhf.rollout_batches(policy, ref, rm, tiny_tok, prompts, cfg)(4, torch.Generator().manual_seed(0))
    assert torch.equal(checked["tokens"], scored["tokens"])               # same samples ...
    assert set(checked["score"].tolist()) <= {0.0, 1.0}                   # ... the checker's verdicts
    torch.testing.assert_close(scored["score"], rm(scored["tokens"], scored["length"]))   # ... the reward model's
    gcfg = grpo.GRPOConfig(group=2, max_new_tokens=3)
    g = grpo.rollout_batches(policy, ref, tiny_tok, prompts, None, gcfg, reward_model=rm)(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(g["score"], rm(g["tokens"], g["length"]))
    torch.testing.assert_close(g["advantages"], grpo.group_advantages(g["score"], 2))
    for bad in (dict(reward_model=None), dict(reward_model=rm, score=says_paris)):
        with pytest.raises(ValueError, match="one reward"):
            rlhf.rollout_batches(policy, ref, bad["reward_model"], tiny_tok, prompts, cfg, score=bad.get("score"))
    with pytest.raises(ValueError, match="one reward"):
        grpo.rollout_batches(policy, ref, tiny_tok, prompts, None, gcfg)
