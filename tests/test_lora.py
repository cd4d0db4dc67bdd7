"""LoRA invariants on a tiny MiniGPT, and agreement with Hugging Face peft given identical A and B.

peft is a test dependency (requirements-test.txt); this file imports it unconditionally so that CI fails
rather than skips when it is missing.  The device tests run on the CPU and on CUDA / MPS where present.
"""
import copy

import peft
import pytest
import torch
import torch.nn as nn

from fmlab import lora, params
from fmlab.train import TrainConfig, lm_loss, train

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])


def _tokens(model, B=3, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.vocab_size, (B, T), generator=g)


def _randomise_B(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.B.copy_(torch.randn(layer.B.shape, generator=g) * 0.1)


def test_zero_B_is_the_base_model(tiny_model):
    x = _tokens(tiny_model)
    before = tiny_model(x)
    lora.apply(tiny_model, lora.LoraConfig(rank=2, alpha=4, targets=lora.ALL_LINEAR))
    torch.testing.assert_close(tiny_model(x), before, rtol=0, atol=0)


def test_only_adapters_train_and_count(tiny_model):
    total = tiny_model.num_params()
    lora.apply(tiny_model, lora.LoraConfig(rank=2, targets=lora.ATTENTION))
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    d, L = tiny_model.cfg.n_embd, tiny_model.cfg.n_layer
    expected = L * 2 * ((d + 3 * d) + (d + d))          # r (d_in + d_out) for qkv and proj, r = 2
    assert params.count(tiny_model) == {"trainable": expected, "total": total + expected}


def test_layer_equation_and_init(tiny_model):
    base = nn.Linear(16, 24)
    layer = lora.LoRALinear(base, rank=4, alpha=8, generator=torch.Generator().manual_seed(0))
    assert torch.all(layer.B == 0) and layer.A.abs().max() <= 1 / 16 ** 0.5
    assert not base.weight.requires_grad and layer.A.requires_grad
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(5, 16)
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.A.T @ layer.B.T)
    torch.testing.assert_close(layer(x), expected)


def test_merge_equals_unmerged_and_unmerge_restores(tiny_model):
    w0 = tiny_model.blocks[0].attn.qkv.weight.detach().clone()
    lora.apply(tiny_model, lora.LoraConfig(rank=4, targets=lora.ALL_LINEAR))
    _randomise_B(tiny_model)
    x = _tokens(tiny_model)
    live = tiny_model(x)
    lora.merge(tiny_model)
    assert not torch.equal(tiny_model.blocks[0].attn.qkv.base.weight, w0)
    torch.testing.assert_close(tiny_model(x), live, rtol=1e-5, atol=1e-5)
    lora.unmerge(tiny_model)
    torch.testing.assert_close(tiny_model.blocks[0].attn.qkv.base.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(tiny_model(x), live, rtol=1e-5, atol=1e-5)


def test_training_leaves_base_weights_bit_exact(tiny_model):
    base = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    lora.apply(tiny_model, lora.LoraConfig(rank=2))
    x = _tokens(tiny_model, B=4, T=8)

    def batches(n, g):
        return {"tokens": x, "targets": x.roll(-1, dims=1)}
    h = train(tiny_model, batches, TrainConfig(steps=5, warmup=1, progress=False))
    assert h.loss.iloc[-1] < h.loss.iloc[1]
    lora.remove(tiny_model)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, base[k]), k


def test_apply_twice_is_an_error_and_remove_restores(tiny_model):
    x = _tokens(tiny_model)
    before = tiny_model(x)
    lora.apply(tiny_model, lora.LoraConfig(rank=2))
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.apply(tiny_model, lora.LoraConfig(rank=2))
    _randomise_B(tiny_model)
    lora.remove(tiny_model)
    assert not lora.lora_layers(tiny_model)
    assert isinstance(tiny_model.blocks[0].attn.qkv, nn.Linear)
    torch.testing.assert_close(tiny_model(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank must be a positive.*rank=8"), ({"rank": -3}, "rank must be a positive"),
    ({"rank": 2.5}, "rank must be a positive"), ({"rank": True}, "rank must be a positive"),
    ({"alpha": 0}, "alpha.*2 \\* rank"), ({"alpha": float("nan")}, "alpha"), ({"dropout": 1.0}, "dropout"),
    ({"targets": "attn.qkv"}, "tuple.*lora.ATTENTION"), ({"targets": ()}, "non-empty"),
    ({"targets": ("attn.qkv", "")}, "module names"), ({"targets": ["attn.qkv"]}, "tuple"),
])
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lora.LoraConfig(**kwargs)


def test_bad_targets_and_rank_too_large(tiny_model):
    with pytest.raises(ValueError, match=r"match no nn.Linear.*attn\.qkv"):
        lora.apply(tiny_model, lora.LoraConfig(targets=("attn.query",)))
    with pytest.raises(ValueError, match=r"\['mlp.up'\] match no nn.Linear"):          # one typo among good names
        lora.apply(tiny_model, lora.LoraConfig(targets=("attn.qkv", "mlp.up")))
    assert not lora.lora_layers(tiny_model) and all(p.requires_grad for p in tiny_model.parameters())
    with pytest.raises(ValueError, match="rank must be in"):
        lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(rank=17))       # n_embd = 16
    with pytest.raises(ValueError, match="tied"):
        lora.apply(tiny_model, lora.LoraConfig(targets=("head",)))
    with pytest.raises(ValueError, match="no LoRA adapters"):
        lora.merge(tiny_model)


def test_same_seed_same_adapter(tiny_model):
    a = lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(seed=3, rank=2))
    b = lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(seed=3, rank=2))
    c = lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(seed=4, rank=2))
    sa, sb, sc = lora.adapter_state(a), lora.adapter_state(b), lora.adapter_state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_dropout_only_on_the_adapter_path(tiny_model):
    lora.apply(tiny_model, lora.LoraConfig(rank=2, dropout=0.5))
    x = _tokens(tiny_model)
    base_out = tiny_model(x)                       # B = 0: dropout cannot matter
    tiny_model.train()
    torch.testing.assert_close(tiny_model(x), base_out)
    _randomise_B(tiny_model)
    assert not torch.allclose(tiny_model(x), tiny_model(x))    # training: stochastic adapter
    tiny_model.eval()
    torch.testing.assert_close(tiny_model(x), tiny_model(x))


def test_save_load_swaps_adapters(tiny_model, tmp_path):
    base_copy = copy.deepcopy(tiny_model)
    x = _tokens(tiny_model)
    lora.apply(tiny_model, lora.LoraConfig(rank=2, targets=lora.ATTENTION))
    _randomise_B(tiny_model, seed=1)
    out_a = tiny_model(x)
    lora.save(tiny_model, tmp_path / "a")
    lora.remove(tiny_model)
    lora.apply(tiny_model, lora.LoraConfig(rank=4, targets=lora.ALL_LINEAR))
    _randomise_B(tiny_model, seed=2)
    out_b = tiny_model(x)
    lora.save(tiny_model, tmp_path / "b")
    lora.load(base_copy, tmp_path / "a")                  # a different copy of the same base model
    torch.testing.assert_close(base_copy(x), out_a)
    lora.load(base_copy, tmp_path / "b")                  # swap: no stacking
    torch.testing.assert_close(base_copy(x), out_b)
    assert base_copy.lora_config.rank == 4 and len(lora.lora_layers(base_copy)) == 4 * tiny_model.cfg.n_layer
    assert set(lora.adapter_state(base_copy)) == {f"{n}.{p}" for n in lora.lora_layers(base_copy) for p in "AB"}


def test_save_refuses_merged_and_load_checks_shapes(tiny_model, tmp_path):
    lora.apply(tiny_model, lora.LoraConfig(rank=2))
    lora.merge(tiny_model)
    with pytest.raises(ValueError, match="unmerge"):
        lora.save(tiny_model, tmp_path / "m")
    lora.unmerge(tiny_model)
    lora.save(tiny_model, tmp_path / "m")
    from fmlab.gpt import GPTConfig, MiniGPT
    other = MiniGPT(GPTConfig(vocab_size=tiny_model.cfg.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match="do not fit"):
        lora.load(other, tmp_path / "m")
    assert not lora.lora_layers(other)


def test_matches_peft_with_identical_weights(tiny_model):
    """peft's LoRA on the same MiniGPT, same targets, A and B copied from fmlab's: same logits."""
    cfg = lora.LoraConfig(rank=4, alpha=8, targets=lora.ALL_LINEAR, seed=0)
    ours = lora.apply(copy.deepcopy(tiny_model), cfg)
    _randomise_B(ours)
    theirs = peft.inject_adapter_in_model(
        peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=list(cfg.targets)),
        copy.deepcopy(tiny_model))
    n_peft = 0
    for name, layer in lora.lora_layers(ours).items():
        target = theirs.get_submodule(name)
        with torch.no_grad():
            target.lora_A["default"].weight.copy_(layer.A)
            target.lora_B["default"].weight.copy_(layer.B)
        n_peft += 1
    assert n_peft == len([m for m in theirs.modules() if isinstance(m, peft.tuners.lora.LoraLayer)])
    trainable = {n for n, p in theirs.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{x}.default.weight" for n in lora.lora_layers(ours) for x in "AB"}
    x = _tokens(tiny_model)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours(x), tiny_model(x), atol=1e-3)          # the adapters do something
    y = x.roll(-1, dims=1)
    loss_ours, loss_theirs = lm_loss(ours(x), y), lm_loss(theirs(x), y)
    loss_ours.backward()
    loss_theirs.backward()
    name = "blocks.0.attn.qkv"
    torch.testing.assert_close(ours.get_submodule(name).A.grad,
                               theirs.get_submodule(name).lora_A["default"].weight.grad, rtol=1e-4, atol=1e-6)


def test_disabled_is_exactly_the_base_model(tiny_model):
    x = _tokens(tiny_model)
    before = tiny_model(x)
    lora.apply(tiny_model, lora.LoraConfig(rank=2, targets=lora.ALL_LINEAR))
    _randomise_B(tiny_model)
    live = tiny_model(x)
    assert not torch.allclose(live, before, atol=1e-3)
    with lora.disabled(tiny_model) as m:
        assert torch.equal(m(x), before)                     # bit-exact: the adapter path is skipped
    torch.testing.assert_close(tiny_model(x), live, rtol=0, atol=0)   # back on after the block
    lora.merge(tiny_model)
    with pytest.raises(ValueError, match="unmerge"):
        with lora.disabled(tiny_model):
            pass


@pytest.mark.parametrize("dev", DEVICES)
def test_adapter_lives_on_the_model_device_and_is_device_independent(tiny_model, dev):
    """A and B are created on the layer's device; A is drawn on the CPU so every device gets the same A."""
    on_cpu = lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(rank=2, seed=5))
    on_dev = lora.apply(copy.deepcopy(tiny_model).to(dev), lora.LoraConfig(rank=2, seed=5))
    for (name, a), (_, b) in zip(lora.adapter_state(on_cpu).items(), lora.adapter_state(on_dev).items()):
        assert b.device.type == dev, name
        assert torch.equal(a, b.cpu()), name
    _randomise_B(on_dev)
    x = _tokens(tiny_model).to(dev)
    loss = lm_loss(on_dev(x), x.roll(-1, dims=1))
    loss.backward()
    assert all(l.A.grad is not None and l.A.grad.device.type == dev for l in lora.lora_layers(on_dev).values())
    live = on_dev(x)
    lora.merge(on_dev)
    torch.testing.assert_close(on_dev(x), live, rtol=1e-4, atol=1e-4)


def test_the_notebooks_peft_snippet_runs_on_minigpt(tiny_model, tmp_path):
    """Notebook 04's peft code, as printed: get_peft_model -> PeftModel with save_pretrained / merge_and_unload."""
    cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["attn.qkv", "attn.proj"])
    model = peft.get_peft_model(copy.deepcopy(tiny_model), cfg)
    assert isinstance(model, peft.PeftModel)
    ours = lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(rank=8, alpha=16, targets=lora.ATTENTION))
    n_peft = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_peft == params.count(ours)["trainable"]
    with torch.no_grad():                                 # give the adapter something to merge
        for name, layer in model.named_modules():
            if hasattr(layer, "lora_B") and "default" in getattr(layer, "lora_B", {}):
                layer.lora_B["default"].weight.normal_()
    x = _tokens(tiny_model)
    adapted = model(x)
    with model.disable_adapter():                         # peft's switch, like lora.disabled
        torch.testing.assert_close(model(x), tiny_model(x), rtol=0, atol=0)
    model.save_pretrained(str(tmp_path / "adapter"))
    saved = tmp_path / "adapter" / "adapter_model.safetensors"
    assert saved.exists() and saved.stat().st_size < 4 * n_peft + 20_000     # the adapter alone, not the model
    merged = model.merge_and_unload()
    assert type(merged) is type(tiny_model) and not lora.lora_layers(merged)
    torch.testing.assert_close(merged(x), adapted, rtol=1e-5, atol=1e-5)
