import copy

import pytest
import torch

from fmlab import params, ppo, preference, reward, rlhf
from fmlab.train import TrainConfig, train


def _gae_by_hand(rewards, values, gamma, lam):
    """The recursion of Schulman et al. 2016, one completion at a time, in plain Python."""
    adv, next_adv, next_value = [0.0] * len(rewards), 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_value - values[t]
        adv[t] = next_adv = delta + gamma * lam * next_adv
        next_value = values[t]
    return adv


def test_gae_matches_the_recursion_and_its_limits():
    mask = torch.tensor([[False, True, True, True, False], [False, False, True, True, False]])
    rewards = torch.tensor([[0.0, -0.1, 0.2, 1.0, 0.0], [0.0, 0.0, 0.3, -1.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.1, -0.2, 9.0], [9.0, 9.0, 0.4, 0.3, 9.0]])  # 9 = ignored (outside)
    adv, returns = ppo.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    for i in range(2):
        idx = mask[i].nonzero().squeeze(1).tolist()
        expected = _gae_by_hand(rewards[i, idx].tolist(), values[i, idx].tolist(), 0.9, 0.5)
        torch.testing.assert_close(adv[i, idx], torch.tensor(expected))
    assert (adv[~mask] == 0).all() and (returns[~mask] == 0).all()
    torch.testing.assert_close(returns[mask], (adv + values)[mask])
    # lambda = 1, gamma = 1: A_t = (sum of rewards from t on) - V_t  (Monte-Carlo)
    mc, _ = ppo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = (rewards * mask).flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(mc[mask], (to_go - values)[mask])
    # lambda = 0: one-step TD error r_t + V_{t+1} - V_t
    td, _ = ppo.gae(rewards, values, mask, gamma=1.0, lam=0.0)
    torch.testing.assert_close(td[0, 1], rewards[0, 1] + values[0, 2] - values[0, 1])


def test_per_token_rewards_put_the_score_on_the_last_token():
    mask = torch.tensor([[False, True, True, False], [True, True, True, True]])
    logp, ref = torch.tensor([[0.0, -1.0, -2.0, 0.0], [-1.0] * 4]), torch.tensor([[0.0, -1.5, -1.0, 0.0], [-1.0] * 4])
    r = ppo.per_token_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, beta=0.5)
    torch.testing.assert_close(r, torch.tensor([[0.0, -0.25, 2.0 + 0.5, 0.0], [0.0, 0.0, 0.0, -1.0]]))
    # summed over the completion: the score minus beta times the sequence's KL estimate
    torch.testing.assert_close(r.sum(1), torch.tensor([2.0 - 0.5 * (0.5 - 1.0), -1.0]))


def test_whiten_uses_only_completion_tokens():
    x = torch.tensor([[100.0, 1.0, 2.0, 3.0]])
    mask = torch.tensor([[False, True, True, True]])
    w = ppo.whiten(x, mask)
    assert w[0, 0] == 0
    torch.testing.assert_close(w[0, 1:], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4, rtol=0)   # std of 1,2,3 is 1
    with pytest.raises(ValueError, match="two"):
        ppo.whiten(x, torch.tensor([[False, True, False, False]]))


def test_clipped_policy_loss_value_gradient_and_clip_fraction():
    mask = torch.ones(1, 4, dtype=torch.bool)
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    ratio = torch.tensor([[1.5, 0.5, 1.5, 0.5]])          # beyond 1 + eps / below 1 - eps
    logp = ratio.log().requires_grad_(True)
    loss, frac = ppo.clipped_policy_loss(logp, old, adv, mask, clip=0.2)
    # by hand: token 0 clipped at 1.2 (A>0), token 1 unclipped 0.5 (pessimistic min), token 2 unclipped 1.5,
    # token 3 clipped at 0.8 (A<0)
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 1.5 - 0.8) / 4)
    assert frac.item() == 0.5
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 3] == 0          # clipped: no push further
    assert logp.grad[0, 1] < 0 and logp.grad[0, 2] > 0            # unclipped: descent raises A>0, lowers A<0
    same, frac0 = ppo.clipped_policy_loss(old, old, adv, mask, clip=0.2)
    assert same.item() == pytest.approx(0.0) and frac0.item() == 0.0


def test_clipped_value_loss_by_hand():
    mask = torch.ones(1, 2, dtype=torch.bool)
    v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    # token 0: V moved 1.0 but may move 0.2: max((1-2)^2, (0.2-2)^2) = 3.24; token 1: (0-1)^2 = 1
    assert ppo.clipped_value_loss(v, old, ret, mask, clip=0.2).item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)


def test_policy_with_value_keeps_the_policy_logits_and_starts_at_zero_value(tiny_model):
    agent = ppo.PolicyWithValue(tiny_model)
    tokens = torch.tensor([[3, 4, 5, 6]])
    logits, values = agent(tokens)
    torch.testing.assert_close(logits, tiny_model(tokens))
    assert values.shape == (1, 4) and (values == 0).all()


def test_ppo_replays_each_rollout_for_its_epochs_and_trains(tiny_model, tiny_tok):
    ref = params.freeze(copy.deepcopy(tiny_model))
    rm = params.freeze(reward.RewardModel(tiny_model))
    agent = ppo.PolicyWithValue(copy.deepcopy(tiny_model))
    prompts = [{"prompt": "ada lives in", "person": "ada"}, {"prompt": "the cat sat", "person": "ada"}]
    cfg, log = ppo.PPOConfig(beta=0.1, group=2, max_new_tokens=3, epochs=3), []
    batches = ppo.rollout_batches(agent, ref, rm, tiny_tok, prompts, cfg, preference.rubric)
    g = torch.Generator().manual_seed(0)
    first = [batches(4, g) for _ in range(3)]
    assert [int(b["epoch"]) for b in first] == [0, 1, 2]
    assert all(b["tokens"] is first[0]["tokens"] for b in first)       # the same stored rollout, replayed
    assert batches(4, g)["epoch"] == 0                                   # then a fresh one
    batches = ppo.rollout_batches(agent, ref, rm, tiny_tok, prompts, cfg, preference.rubric)
    hist = train(agent, batches, TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup=1, progress=False),
                 loss_fn=ppo.ppo_loss(cfg, log))
    assert len(hist) == 7 and [e["epoch"] for e in log] == [0, 1, 2, 0, 1, 2]
    assert abs(log[0]["kl"]) < 1e-5 and log[0]["clip_fraction"] == 0.0   # ratio 1 before the first update
    assert log[1]["approx_kl"] > 0                                        # the 2nd epoch sees a moved policy


def test_configs_refuse_settings_that_cannot_work():
    with pytest.raises(ValueError, match="group >= 2"):
        rlhf.RLConfig(group=1)
    with pytest.raises(ValueError, match="epochs"):
        ppo.PPOConfig(epochs=0)
    with pytest.raises(ValueError, match="clip"):
        ppo.PPOConfig(clip=1.5)
    with pytest.raises(ValueError, match="beta"):
        ppo.PPOConfig(beta=-0.1)
    with pytest.raises(ValueError, match="temperature"):
        rlhf.RLConfig(temperature=0.0)
    assert ppo.PPOConfig(group=1).group == 1                              # PPO needs no group baseline
