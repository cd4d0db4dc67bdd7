"""fmlab.reft: the LoReFT edit, positions, frozen base model, save/load, and equality with pyreft.

The device tests run on the CPU and on CUDA / MPS where present (pyreft is installed with --no-deps)."""
import pytest
import torch

from fmlab import batches, reft
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.train import TrainConfig, train

CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])


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


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank must be a positive.*4"), ({"rank": 1.5}, "rank must be"),
    ({"first": 0, "last": 0}, "at least one position.*f1\\+l1"), ({"first": -1}, "integers >= 0"),
    ({"layers": ()}, "empty"), ({"layers": 2}, r"tuple of block indices.*layers=\(2,\)"),
    ({"layers": [0, 1]}, "tuple"), ({"layers": (1, 1)}, "duplicates"), ({"layers": (-1,)}, ">= 0"),
])
def test_nonsensical_config_values_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reft.ReftConfig(**kwargs)


def test_bad_config_and_layers_raise_clear_errors():
    with pytest.raises(ValueError, match=r"rank must be in \[1, 16\]"):
        reft.apply(tiny_model(), reft.ReftConfig(layers=(0,), rank=17))
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


def test_answer_is_greedy_generation_with_the_prompt_edit():
    """At initialisation the edit is the identity: reft.answer is the base model's greedy answer; with a
    non-trivial edit it follows the edited logits token by token."""
    from fmlab.tokenizer import Tokenizer
    tok = Tokenizer.train(["instruction : say it input : a b answer : yes"] * 20, n_merges=10, min_count=2)
    torch.manual_seed(0)
    base = MiniGPT(GPTConfig(vocab_size=len(tok), block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    ex = {"instruction": "say it", "input": "a b", "output": "yes"}
    model = reft.apply(base, reft.ReftConfig(layers=(0, 1), rank=2))
    prompt = tok.encode("instruction : say it input : a b answer :")
    expected = base.generate(torch.tensor([prompt]), 5, stop_token=tok.eos_id)[0, len(prompt):].tolist()
    expected = expected[:expected.index(tok.eos_id)] if tok.eos_id in expected else expected
    assert reft.answer(model, tok, ex, max_new_tokens=5) == tok.decode(expected)
    with torch.no_grad():
        model.interventions["1"].proj.bias.fill_(5.0)
    pos = reft.prompt_positions(torch.tensor([len(prompt)]), 1, 1)
    tokens, new = torch.tensor([prompt]), []
    for _ in range(5):
        nxt = int(model(tokens, pos)[0, -1].argmax())
        if nxt == tok.eos_id:
            break
        new.append(nxt)
        tokens = torch.cat([tokens, torch.tensor([[nxt]])], 1)
    assert reft.answer(model, tok, ex, max_new_tokens=5) == tok.decode(new)


def test_init_does_not_touch_the_global_random_stream():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    reft.LoReFT(16, 4, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)


def test_qr_runs_on_cpu_for_mps_and_in_place_elsewhere():
    assert reft._qr_device(torch.device("mps")) == torch.device("cpu")
    assert reft._qr_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert reft._qr_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("dev", DEVICES)
def test_runs_and_trains_on_each_device_with_the_same_init(dev):
    """Interventions, positions and the QR (on CPU for MPS) work where the model is; same seed, same R."""
    cfg = reft.ReftConfig(layers=(0, 1), rank=2, first=1, last=1, seed=3)
    on_cpu = reft.apply(tiny_model(), cfg)
    model = reft.apply(tiny_model().to(dev), cfg)
    for key, iv in model.interventions.items():
        assert iv.rotate.device.type == dev and iv.proj.weight.device.type == dev
        torch.testing.assert_close(iv.R.cpu(), on_cpu.interventions[key].R, atol=1e-5, rtol=0)
        torch.testing.assert_close(iv.R @ iv.R.T, torch.eye(2, device=dev), atol=1e-5, rtol=0)
    batch = {k: v.to(dev) for k, v in toy_batch(8).items()}
    pos = reft.positions_from_targets(batch["targets"], cfg.first, cfg.last)
    assert pos.device.type == dev
    loss = reft.reft_loss(model, batch)
    loss.backward()
    assert all(p.grad is not None and p.grad.device.type == dev for p in model.interventions.parameters())
    torch.testing.assert_close(loss.cpu(), reft.reft_loss(on_cpu, toy_batch(8)), atol=1e-4, rtol=1e-4)


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


def test_deployed_model_edits_the_prompt_it_reads():
    """reft.deploy: forward(tokens) edits the first/last of all tokens; forward(tokens, targets) the prompt's."""
    from fmlab.batches import IGNORE
    base = tiny_model()
    model = reft.apply(base, reft.ReftConfig(layers=(0,), seed=1))
    with torch.no_grad():
        for p in model.interventions.parameters():
            p.add_(0.3)
    deployed = reft.deploy(model)
    tokens = torch.tensor([[3, 4, 5, 6, 7]])
    targets = torch.tensor([[IGNORE, IGNORE, 6, 7, 2]])                 # the prompt is tokens 0..2
    torch.testing.assert_close(deployed(tokens), model(tokens, torch.tensor([[0, 4]])))
    torch.testing.assert_close(deployed(tokens, targets), model(tokens, torch.tensor([[0, 2]])))
    assert deployed.cfg is base.cfg
