import copy
import math

import pytest
import torch

from fmlab import dpo, params, preference
from fmlab.train import TrainConfig, train


def test_dpo_loss_is_log2_at_the_reference_and_matches_the_formula():
    pc, pr, rc, rr = torch.randn(4, 5).unbind(0)
    assert dpo.dpo_loss(rc, rr, rc, rr, beta=0.1).item() == pytest.approx(math.log(2))
    manual = -torch.log(torch.sigmoid(0.5 * ((pc - rc) - (pr - rr)))).mean()
    torch.testing.assert_close(dpo.dpo_loss(pc, pr, rc, rr, 0.5), manual)
    torch.testing.assert_close(dpo.implied_rewards(pc, rc, 0.5), 0.5 * (pc - rc))
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_loss(pc, pr, rc, rr, 0.0)


def _pairs(tok):
    chosen = [tok.encode("ada lives in paris .")] * 4
    rejected = [tok.encode("ada lives in mat .")] * 4
    return {"chosen": chosen, "rejected": rejected, "prompt_len": [3] * 4}


def test_dpo_training_raises_the_chosen_margin(tiny_model, tiny_tok):
    ref = params.freeze(copy.deepcopy(tiny_model))
    pairs = _pairs(tiny_tok)
    batch = preference.pair_batch(pairs, range(4), tiny_tok.pad_id)
    loss_fn = dpo.dpo_loss_fn(ref, beta=0.1)
    assert loss_fn(tiny_model, batch).item() == pytest.approx(math.log(2), abs=1e-6)
    train(tiny_model, preference.pair_batches(pairs, tiny_tok.pad_id),
          TrainConfig(steps=10, batch_size=4, lr=3e-3, warmup=1, progress=False), loss_fn=loss_fn)
    assert loss_fn(tiny_model, batch).item() < math.log(2) - 0.05
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_loss_fn(ref, beta=-1)
