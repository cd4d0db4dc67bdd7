"""The same small runs on every device this machine has: CPU always; CUDA (bf16, and fp16 + grad scaler -- the
T4 path) and Apple MPS where present.  On a CPU-only machine the GPU cases are skipped; `bench/gpu.sh` runs the
whole suite with FMLAB_DEVICE=cuda in both precisions."""
import copy

import pytest
import torch

from fmlab import batches, checkpoint, device, evaluate, lora, memory, probe, reft, reward
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.train import TrainConfig, train

CASES = [("cpu", None), ("cuda", "bf16"), ("cuda", "fp16"), ("mps", None)]


def _available(kind: str) -> bool:
    return kind == "cpu" or (kind == "cuda" and torch.cuda.is_available()) or (
        kind == "mps" and torch.backends.mps.is_available())


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1] or 'default'}")
def dev(request, monkeypatch):
    kind, precision = request.param
    if not _available(kind):
        pytest.skip(f"no {kind} device here")
    if precision:
        monkeypatch.setenv("FMLAB_PRECISION", precision)
    return torch.device(kind)


def _model(dev, vocab=40):
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=2, n_head=2, n_embd=32)).to(dev)


def _stream():
    return torch.arange(600) % 37 + 3


def test_training_step_and_precision(dev):
    model = _model(dev)
    h = train(model, batches.lm_batches(_stream(), 16), TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup=3,
                                                                   progress=False))
    assert h["loss"].iloc[-5:].mean() < h["loss"].iloc[1:6].mean()
    assert all(p.device.type == dev.type for p in model.parameters())
    scaler_expected = dev.type == "cuda" and device.autocast_dtype(dev) == torch.float16
    assert device.needs_grad_scaler(dev) == scaler_expected


def test_generation_with_a_cpu_generator_on_any_device(dev):
    model = _model(dev).eval()
    prompt = torch.tensor([[3, 4, 5]], device=dev)
    a = model.generate(prompt, 6, temperature=1.0, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 6, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.device.type == dev.type


def test_lora_reft_probe_reward_on_device(dev):
    base = _model(dev)
    x = torch.randint(3, 40, (4, 10), device=dev)
    targets = torch.full_like(x, -100)
    targets[:, -2:] = x[:, -2:]
    adapted = lora.apply(copy.deepcopy(base), lora.LoraConfig(rank=2, alpha=4))
    assert torch.allclose(adapted(x), base(x), atol=1e-5)
    rm = reft.apply(copy.deepcopy(base), reft.ReftConfig(layers=(0, 1), rank=2))
    assert reft.reft_loss(rm, {"tokens": x, "targets": targets}).isfinite()
    states = probe.states_at(base, x, torch.full((4,), 9, device=dev))
    acc = probe.probe_accuracy(states[1], torch.tensor([0, 1, 0, 1], device=dev), states[1],
                               torch.tensor([0, 1, 0, 1], device=dev), steps=5)
    assert 0.0 <= acc <= 1.0
    rmodel = reward.RewardModel(base)
    r = rmodel(x, torch.full((4,), 10, device=dev))
    assert r.dtype == torch.float32 and r.device.type == dev.type
    assert reward.bradley_terry_loss(r[:2], r[2:]).dtype == torch.float32


def test_checkpoint_round_trip_to_device(dev, tiny_tok, tmp_path):
    model = MiniGPT(GPTConfig(vocab_size=len(tiny_tok), block_size=16, n_layer=1, n_head=2, n_embd=16))
    checkpoint.save(model, tiny_tok, tmp_path / "m")
    loaded, tok, _ = checkpoint.load(tmp_path / "m", device=dev)
    x = torch.tensor([tiny_tok.encode("the cat")])
    assert torch.allclose(loaded(x.to(dev)).cpu(), model(x), atol=1e-5)
    assert evaluate.perplexity(loaded, torch.tensor(tiny_tok.encode("the cat sat on the mat . " * 6))) > 1


def test_memory_measure_on_device(dev):
    model = _model(dev)
    batch = batches.lm_batches(_stream(), 16)(4, torch.Generator().manual_seed(0))
    m = memory.measure(model, batch)
    assert m.weights == sum(p.numel() * p.element_size() for p in model.parameters())
    assert m.optimizer == 2 * m.weights + 4 * len(list(model.parameters()))
