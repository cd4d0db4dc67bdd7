"""fmlab.reft: the LoReFT edit, positions, frozen base model, save/load, and equality with pyreft."""
import pytest
import torch

from fmlab import batches, reft
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.train import TrainConfig, train

CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)


def tiny_model(seed: int = 0) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(CFG).eval()


def toy_batch(n: int = 6, seed: int = 0) -> dict:
    """Prompts of different lengths, answer = [5, eos=2]; right-padded."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        prompt = torch.randint(3, 11, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g).tolist()
        answer = [5, 2]
        seq = prompt + answer
        rows.append((seq[:-1], [batches.IGNORE] * (len(prompt) - 1) + answer))
    return batches.pad_batch(rows, pad_id=0)


def test_lo_reft_starts_as_identity_and_matches_equation():
    iv = reft.LoReFT(16, 3, torch.Generator().manual_seed(0))
    h = torch.randn(5, 16)
    torch.testing.assert_close(iv(h), h)                             # W = R, b = 0 at init
    with torch.no_grad():
        iv.proj.weight.normal_()
        iv.proj.bias.normal_()
    R, W, b = iv.R, iv.W, iv.b
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-5, rtol=0)
    expected = h + (h @ W.T + b - h @ R.T) @ R                       # h + Rᵀ(W h + b − R h)
    torch.testing.assert_close(iv(h), expected, atol=1e-5, rtol=1e-5)


def test_edit_leaves_orthogonal_complement_untouched():
    iv = reft.LoReFT(16, 2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        iv.proj.bias.fill_(3.0)
    h = torch.randn(4, 16)
    R = iv.R
    P_perp = torch.eye(16) - R.T @ R
    torch.testing.assert_close((iv(h) - h) @ P_perp, torch.zeros(4, 16), atol=1e-5, rtol=0)


def test_prompt_positions_and_from_targets():
    pos = reft.prompt_positions(torch.tensor([5, 2]), first=2, last=2)
    assert pos.tolist() == [[0, 1, 3, 4], [0, 1, 0, 1]]
    t = torch.tensor([[-100, -100, 5, 2, -100, -100], [-100, -100, -100, 5, 6, 2]])
    assert reft.positions_from_targets(t, 1, 1).tolist() == [[0, 2], [0, 3]]
    with pytest.raises(ValueError, match="no answer tokens"):
        reft.positions_from_targets(torch.full((1, 4), -100), 1, 1)


def test_bad_config_and_layers_raise_clear_errors():
    with pytest.raises(ValueError, match="rank"):
        reft.ReftConfig(rank=0)
    with pytest.raises(ValueError, match="at least one position"):
        reft.ReftConfig(first=0, last=0)
    with pytest.raises(ValueError, match=r"do not exist.*0\.\.1"):
        reft.apply(tiny_model(), reft.ReftConfig(layers=(5,)))
    model = reft.apply(tiny_model(), reft.ReftConfig(layers=(0,)))
    with pytest.raises(ValueError, match="positions must lie"):
        model(torch.ones(1, 4, dtype=torch.long), torch.tensor([[7]]))


def test_no_positions_is_exactly_the_base_model_and_remove_restores_it():
    base = tiny_model()
    tokens = torch.randint(0, 11, (3, 8))
    before = base(tokens)
    model = reft.apply(base, reft.ReftConfig(layers=(0, 1), rank=2))
    with torch.no_grad():
        for iv in model.interventions.values():
            iv.proj.bias.fill_(1.0)
    assert torch.equal(model(tokens, None), before)
    assert torch.equal(base(tokens), before)
    assert not torch.allclose(model(tokens, torch.zeros(3, 1, dtype=torch.long)), before)
    assert torch.equal(model.remove()(tokens), before)


def test_training_changes_only_interventions_keeps_r_orthonormal_and_learns():
    base = tiny_model()
    with torch.no_grad():      # a random init's tied head is too small to say anything with confidence
        base.tok_emb.weight.mul_(50)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    batch = toy_batch(32)
    cfg = reft.ReftConfig(layers=(0, 1), rank=2, first=1, last=1)
    model = reft.apply(base, cfg)
    assert all(not p.requires_grad for p in base.parameters())
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"interventions"}
    before = reft.reft_loss(model, batch).item()
    train(model, lambda bs, g: batch, TrainConfig(steps=100, lr=5e-2, warmup=5, progress=False), loss_fn=reft.reft_loss)
    assert reft.reft_loss(model, batch).item() < 0.5 * before
    for k, v in base.state_dict().items():
        assert torch.equal(v, frozen[k]), f"base weight {k} changed"
    for iv in model.interventions.values():
        torch.testing.assert_close(iv.R @ iv.R.T, torch.eye(2), atol=1e-5, rtol=0)


def test_save_load_roundtrip(tmp_path):
    model = reft.apply(tiny_model(), reft.ReftConfig(layers=(1,), rank=2, first=0, last=2))
    with torch.no_grad():
        model.interventions["1"].proj.bias.normal_()
    reft.save(model, str(tmp_path / "iv"))
    loaded = reft.load(tiny_model(), str(tmp_path / "iv"))
    assert loaded.cfg == model.cfg
    b = toy_batch(seed=3)
    pos = reft.positions_from_targets(b["targets"], 0, 2)
    assert torch.equal(loaded(b["tokens"], pos), model(b["tokens"], pos))


# --- the reference: pyreft (install: pip install --no-deps pyreft pyvene) ----------------------------
def test_matches_pyreft_loreft_with_identical_weights():
    from pyreft import LoreftIntervention      # noqa: the reference implementation
    torch.manual_seed(0)
    ref = LoreftIntervention(embed_dim=16, low_rank_dimension=4, dtype=torch.float32)
    with torch.no_grad():
        ref.learned_source.weight.normal_()
        ref.learned_source.bias.normal_()
    R_ref = ref.rotate_layer.weight.detach().T          # pyreft's effective R: parametrizations.orthogonal, (d, r)ᵀ
    ours = reft.LoReFT(16, 4)
    with torch.no_grad():
        ours.rotate.copy_(R_ref)                        # QR of an orthonormal matrix gives it back
        ours.proj.weight.copy_(ref.learned_source.weight)
        ours.proj.bias.copy_(ref.learned_source.bias)
    torch.testing.assert_close(ours.R, R_ref, atol=1e-5, rtol=0)
    h = torch.randn(2, 7, 16)
    torch.testing.assert_close(ours(h), ref(h), atol=1e-5, rtol=1e-5)
