import math
import dataclasses

import pytest
import torch

from fmlab.batches import lm_batches
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.train import TrainConfig, lr_at, train

CFG = TrainConfig(steps=15, batch_size=4, lr=1e-2, warmup=3, progress=False)


def _run(seed=0, **kw):
    torch.manual_seed(seed)
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    stream = torch.arange(400) % 20
    return model, train(model, lm_batches(stream, 8), dataclasses.replace(CFG, **kw))


def test_same_seed_same_loss_curve():
    _, h1 = _run()
    _, h2 = _run()
    assert h1["loss"].iloc[1:].tolist() == h2["loss"].iloc[1:].tolist()
    _, h3 = _run(seed=1)
    assert h1["loss"].iloc[1:].tolist() != h3["loss"].iloc[1:].tolist()


def test_loss_falls_and_history_has_columns():
    _, h = _run(steps=60)
    assert {"step", "loss", "lr", "seconds", "tokens_per_s"} <= set(h.columns)
    assert h["loss"].iloc[-5:].mean() < 0.5 * h["loss"].iloc[1:6].mean()


def test_schedule_warmup_then_cosine_to_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_only_trainable_parameters_move():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16))
    for p in model.parameters():
        p.requires_grad_(False)
    model.blocks[1].mlp.fc.weight.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, lm_batches(torch.arange(400) % 20, 8), CFG)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) == (k != "blocks.1.mlp.fc.weight"), k


def test_evals_and_custom_loss():
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        return model(batch["tokens"]).pow(2).mean()

    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    h = train(model, lm_batches(torch.arange(400) % 20, 8), dataclasses.replace(CFG, eval_at=(0, 5)),
              loss_fn=loss_fn, evals={"const": lambda m: 1.0})
    assert len(calls) == CFG.steps
    assert h.dropna(subset=["const"])["step"].tolist() == [0, 5, 15]


def test_clip_actually_clips(monkeypatch):
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, **kwargs):
        params = list(params)
        seen.append(len(params))
        return real(params, max_norm, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _run(steps=2, warmup=1)
    assert seen and all(n > 0 for n in seen)


def test_nothing_trainable_is_a_clear_error():
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(model, lm_batches(torch.arange(400) % 20, 8), CFG)


@pytest.mark.parametrize("bad, match", [({"grad_clip": -1}, "grad_clip"), ({"warmup": 20}, "warmup"),
                                        ({"lr": 0}, "lr"), ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"),
                                        ({"min_lr_ratio": 2}, "min_lr_ratio"), ({"betas": (0.9, 1.5)}, "betas"),
                                        ({"eval_at": (99,)}, "eval_at")])
def test_nonsensical_config_is_refused_with_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(CFG, **bad)


def test_a_nan_loss_is_caught_with_its_step(tiny_tok, tiny_model):
    """The loss is read on the host only every READ_LOSS_EVERY steps; a nan is still reported with its step."""
    from fmlab import train as train_mod
    from fmlab.batches import lm_batches
    stream = torch.tensor(tiny_tok.encode(" ".join(["the cat sat on the mat ."] * 40)))
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = train_mod.default_loss(model, batch)
        return loss * float("nan") if calls["n"] == 3 else loss

    cfg = TrainConfig(steps=8, batch_size=2, lr=1e-3, warmup=1, progress=False)
    with pytest.raises(FloatingPointError, match="at step 3"):
        train(tiny_model, lm_batches(stream, 16), cfg, loss_fn=loss_fn)


def test_losses_are_the_same_whenever_they_are_read(tiny_tok, tiny_model, monkeypatch):
    """Reading the loss every step or every 50 gives the same history (the read changes no number)."""
    import copy
    from fmlab import train as train_mod
    from fmlab.batches import lm_batches
    stream = torch.tensor(tiny_tok.encode(" ".join(["the cat sat on the mat ."] * 40)))
    cfg = TrainConfig(steps=6, batch_size=2, lr=1e-3, warmup=1, progress=False)
    a = train(copy.deepcopy(tiny_model), lm_batches(stream, 16), cfg)["loss"].tolist()
    monkeypatch.setattr(train_mod, "READ_LOSS_EVERY", 1)
    b = train(copy.deepcopy(tiny_model), lm_batches(stream, 16), cfg)["loss"].tolist()
    assert a[1:] == b[1:] and all(math.isfinite(x) for x in a[1:])


def test_early_stopping_stops_at_the_first_check_that_meets_the_target():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    stream = torch.arange(400) % 20
    seen = []

    def loss_now(m):
        seen.append(1)
        return float(len(seen))                     # 1, 2, 3, ... at steps 0, 5, 10, ...
    h = train(model, lm_batches(stream, 8), dataclasses.replace(CFG, steps=40, eval_every=5),
              evals={"check": loss_now}, until=lambda row: row["check"] >= 3)
    assert h["step"].iloc[-1] == 10 and len(h) == 11          # stopped after the third check, at step 10
    assert not h["loss"].iloc[1:].isna().any()                # every step's loss was read
    _, full = _run(steps=40)
    assert h["loss"].iloc[1:].tolist() == full["loss"].iloc[1:11].tolist()   # the same steps up to the stop
