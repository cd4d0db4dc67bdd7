"""fmlab.params: the one parameter counter, freeze, and the evaluation-mode context manager."""
import torch
import torch.nn as nn

from fmlab import lora, params
from fmlab.gpt import GPTConfig, MiniGPT


def test_count_by_hand_with_a_tied_weight():
    cfg = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = MiniGPT(cfg)
    C, V, T = 8, 50, 8
    by_hand = V * C + T * C + (12 * C * C + 13 * C) + 2 * C        # tied head counted once
    assert params.count(model) == {"trainable": by_hand, "total": by_hand} and model.num_params() == by_hand
    lora.apply(model, lora.LoraConfig(rank=2))
    adapter = 2 * (C + 3 * C) + 2 * (C + C)                         # r (in + out): qkv (C -> 3C) and proj
    assert params.count(model) == {"trainable": adapter, "total": by_hand + adapter}
    assert params.summary(model).startswith(f"trainable params: {adapter:,} / {by_hand + adapter:,}")


def test_freeze_and_evaluating_restore_nothing_they_should_not():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    assert params.freeze(model) is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    with params.evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
    assert model.training                                           # the mode it had comes back
    assert params.nbytes(model) == 6 * 4 and params.device_of(model) == torch.device("cpu")
