import copy
import math
import statistics

import pytest
import torch

from fmlab import grpo, params
from fmlab.train import TrainConfig, train


def test_group_advantages_by_hand():
    r = [1.0, 0.0, 0.0, 1.0, 3.0, 3.0]
    adv = grpo.group_advantages(torch.tensor(r), group=3)
    for g in range(2):
        group = r[3 * g: 3 * g + 3]
        mean, std = statistics.mean(group), statistics.stdev(group)
        expected = [(x - mean) / (std + 1e-4) for x in group]
        torch.testing.assert_close(adv[3 * g: 3 * g + 3], torch.tensor(expected))
    same = grpo.group_advantages(torch.tensor([2.0, 2.0, 5.0, 5.0]), group=2)
    assert (same == 0).all()                                     # a group that agrees teaches nothing
    with pytest.raises(ValueError):
        grpo.group_advantages(torch.ones(5), group=2)


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.0, -1.0, -1.5])
    k3 = grpo.k3_kl(logp, ref)
    assert k3[0] == 0 and (k3[1:] > 0).all()
    ratio = math.exp(-1.0 - -2.0)                                # pi_ref / pi at token 1
    assert k3[1].item() == pytest.approx(ratio - math.log(ratio) - 1)


def test_grpo_loss_on_policy_is_the_advantage_weighted_log_likelihood():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -3.0]], requires_grad=True)
    adv = torch.tensor([1.0, -2.0])
    loss = grpo.grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, beta=0.3)
    assert loss.item() == pytest.approx(-adv.mean().item())      # ratio 1, KL 0
    loss.backward()
    # d loss / d logp_t = -A_i / |y_i| / B on completion tokens (the KL term has zero gradient at pi = pi_ref)
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.25, -0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


def test_grpo_trains_in_the_loop_with_a_program_as_reward(tiny_model, tiny_tok):
    ref = params.freeze(copy.deepcopy(tiny_model))
    policy = copy.deepcopy(tiny_model)
    prompts = [{"prompt": "ada lives in", "answer": "paris", "person": "ada"}]
    says_paris = lambda p, text: float(p["answer"] in text.split())       # noqa: E731
    cfg, log = grpo.GRPOConfig(beta=0.04, group=4, max_new_tokens=3), []
    batches = grpo.rollout_batches(policy, ref, tiny_tok, prompts, says_paris, cfg, true_score=lambda p, t: 1.0)
    b = batches(8, torch.Generator().manual_seed(0))
    assert b["score"].shape == (8,) and b["true_score"].eq(1).all()
    torch.testing.assert_close(b["advantages"], grpo.group_advantages(b["score"], 4))
    hist = train(policy, batches, TrainConfig(steps=3, batch_size=8, lr=1e-3, warmup=1, progress=False),
                 loss_fn=grpo.grpo_loss_fn(cfg, log))
    assert len(hist) == 4 and len(log) == 3 and abs(log[0]["kl"]) < 1e-5
    with pytest.raises(ValueError, match="group >= 2"):
        grpo.GRPOConfig(group=1)
