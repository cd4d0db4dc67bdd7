import math

import pytest
import torch

from fmlab import preference, reward
from fmlab.train import TrainConfig, train


def test_bradley_terry_loss_values_and_direction():
    r = torch.tensor([0.3, -1.0])
    assert reward.bradley_terry_loss(r, r).item() == pytest.approx(math.log(2))
    assert reward.bradley_terry_loss(r + 1, r) < reward.bradley_terry_loss(r, r) < reward.bradley_terry_loss(r, r + 1)
    c = torch.zeros(3, requires_grad=True)
    reward.bradley_terry_loss(c, torch.zeros(3)).backward()
    assert (c.grad < 0).all()                            # descending the loss raises the chosen reward


def test_reward_model_reads_last_real_token_and_copies_body(tiny_model):
    rm = reward.RewardModel(tiny_model)
    assert all(p.data_ptr() != q.data_ptr() for p in rm.parameters() for q in tiny_model.parameters())
    tokens = torch.tensor([[3, 4, 5, 0, 0], [3, 4, 5, 6, 7]])
    out = rm(tokens, torch.tensor([3, 3]))
    torch.testing.assert_close(out[0], out[1])          # what follows the last token does not matter
    with pytest.raises(ValueError, match="length"):
        rm(tokens, torch.tensor([0, 3]))


def test_reward_model_learns_a_preference(tiny_model, tiny_tok):
    # chosen completions contain "paris", rejected ones "mat": a separable preference
    chosen = [tiny_tok.encode("ada lives in paris .")] * 4
    rejected = [tiny_tok.encode("ada lives in mat .")] * 4
    pairs = {"chosen": chosen, "rejected": rejected, "prompt_len": [3] * 4}
    rm = reward.RewardModel(tiny_model)
    batch = preference.pair_batch(pairs, range(4), tiny_tok.pad_id)
    before = reward.reward_loss(rm, batch).item()
    assert before == pytest.approx(math.log(2), abs=0.05)      # small head init: no preference yet
    train(rm, preference.pair_batches(pairs, tiny_tok.pad_id),
          TrainConfig(steps=30, batch_size=4, lr=3e-3, warmup=2, progress=False), loss_fn=reward.reward_loss)
    assert reward.reward_loss(rm, batch).item() < 0.3 and reward.pairwise_accuracy(rm, batch) == 1.0
    assert reward.score(rm, batch).shape == (8,)
    rm.normalise_(batch)
    r = reward.score(rm, batch)
    assert abs(r.mean().item()) < 1e-5 and abs(r.std().item() - 1) < 1e-4
    assert reward.pairwise_accuracy(rm, batch) == 1.0          # normalising keeps the ranking
