import pytest
import torch

from fmlab import memory
from fmlab.gpt import GPTConfig, MiniGPT


def _batch(cfg: GPTConfig, B: int, T: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    targets = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    targets[:, : T // 3] = -100          # prompt positions carry no loss, as in instruction tuning
    return {"tokens": tokens, "targets": targets}


CONFIGS = [(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8), 3, 16),
           (GPTConfig(vocab_size=37, block_size=16, n_layer=3, n_head=4, n_embd=16), 2, 9),
           (GPTConfig(vocab_size=29, block_size=8, n_layer=1, n_head=1, n_embd=12, bias=False), 5, 8)]


@pytest.mark.parametrize("cfg,B,T", CONFIGS)
def test_param_formula_matches_model(cfg, B, T):
    model = MiniGPT(cfg)
    assert memory.param_count(cfg) == model.num_params()
    assert memory.param_tensor_count(cfg) == len(list(model.parameters()))


@pytest.mark.parametrize("cfg,B,T", CONFIGS)
def test_formula_equals_actual_tensor_sizes_cpu(cfg, B, T):
    torch.manual_seed(0)
    model = MiniGPT(cfg)
    measured = memory.measure(model, _batch(cfg, B, T))
    est = memory.estimate(cfg, B, T, memory.FP32)
    assert measured.weights == est.weights
    assert measured.gradients == est.gradients
    assert measured.optimizer == est.optimizer
    assert measured.activations == est.activations


def test_measure_leaves_weights_unchanged(tiny_model):
    before = [p.detach().clone() for p in tiny_model.parameters()]
    memory.measure(tiny_model, _batch(tiny_model.cfg, 2, 8))
    for a, b in zip(before, tiny_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(p.grad is None for p in tiny_model.parameters())


def test_activations_grow_linearly_with_batch():
    cfg = CONFIGS[0][0]
    a1, a2 = (memory.activation_numbers(cfg, b, 16) for b in (1, 2))
    assert a2 == 2 * a1


def test_frozen_model_has_no_gradients_or_optimizer_state(tiny_model):
    for name, p in tiny_model.named_parameters():
        p.requires_grad_(name.startswith("blocks.1."))
    m = memory.measure(tiny_model, _batch(tiny_model.cfg, 2, 8))
    trainable = sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)
    assert m.gradients == 4 * trainable
    assert m.weights == 4 * tiny_model.num_params()
    n_tensors = sum(p.requires_grad for p in tiny_model.parameters())
    est = memory.estimate(tiny_model.cfg, 2, 8, trainable=trainable, trainable_tensors=n_tensors)
    assert (est.weights, est.gradients, est.optimizer) == (m.weights, m.gradients, m.optimizer)


def test_sixteen_bytes_per_parameter_rule():
    assert memory.FP32.per_param == 16 and memory.MIXED.per_param == 16
    cfg = memory.gpt_7b()
    P = memory.param_count(cfg)
    assert 6.4e9 < P < 7.0e9
    fp32, mixed = (memory.estimate(cfg, 1, 2048, p) for p in (memory.FP32, memory.MIXED))
    states = lambda m: m.weights + m.gradients + m.optimizer   # noqa: E731
    assert abs(states(fp32) / P - 16) < 0.01 and abs(states(mixed) / P - 16) < 0.01
    assert mixed.activations < 0.51 * fp32.activations


def test_bad_input_raises():
    cfg = CONFIGS[0][0]
    with pytest.raises(ValueError, match="context"):
        memory.activation_numbers(cfg, 1, 17)
    with pytest.raises(ValueError, match="batch_size"):
        memory.activation_numbers(cfg, 0, 4)
    model = MiniGPT(cfg).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        memory.measure(model, _batch(cfg, 1, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="peak allocated memory needs a CUDA GPU")
def test_cuda_peak_memory_bounds():
    cfg = GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=128)
    torch.manual_seed(0)
    model = MiniGPT(cfg).cuda()
    batch = _batch(cfg, 32, 64)
    measured = memory.measure(model, batch)
    est = memory.estimate(cfg, 32, 64)
    assert measured.weights == est.weights and measured.gradients == est.gradients
    assert measured.optimizer == est.optimizer
    # peak >= what must coexist at the optimizer step, <= everything at once plus the estimated temporaries x 2
    peak = measured.weights + measured.optimizer + max(measured.activations, measured.gradients) + measured.temporary
    assert peak >= est.weights + est.gradients + est.optimizer
    assert peak <= est.weights + est.gradients + est.optimizer + est.activations + 2 * est.temporary + 2**20
