"""fmlab.probe: probes read a planted direction (and not noise), difference of means, steering hooks, errors."""
import pytest
import torch

from fmlab import probe
from fmlab.gpt import GPTConfig, MiniGPT

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])


def _planted(n=400, d=16, seed=0, signal=3.0):
    """States with a class direction u planted in Gaussian noise; labels 0/1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    u = torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g) + signal * (2 * y[:, None] - 1) * u / u.norm()
    return x, y, u


@pytest.mark.parametrize("dev", DEVICES)
def test_probe_reads_a_planted_direction_but_not_noise(dev):
    x, y, _ = _planted()
    x, y = x.to(dev), y.to(dev)
    assert probe.probe_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.95
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1)).to(dev)]
    assert probe.probe_accuracy(x[:300], shuffled[:300], x[300:], shuffled[300:]) < 0.7


def test_diff_of_means_matches_a_hand_computation_and_finds_the_direction():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([1, 1, 0, 0])
    assert torch.equal(probe.diff_of_means(x, y), torch.tensor([2.0 - 0.0, 1.0 - 2.0]))
    x, y, u = _planted(n=2000, signal=2.0)
    d = probe.diff_of_means(x, y)
    assert torch.nn.functional.cosine_similarity(d, u, dim=0) > 0.95
    with pytest.raises(ValueError, match="both classes"):
        probe.diff_of_means(x, torch.zeros_like(y))


@pytest.mark.parametrize("dev", DEVICES)
def test_steer_adds_the_vector_to_one_block_output_and_then_stops(dev):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16)).to(dev).eval()
    tokens = torch.randint(0, 20, (2, 6), device=dev)
    before = model.residual_stream(tokens)
    v = torch.randn(16, device=dev)
    with probe.steer(model, 0, v):
        during = model.residual_stream(tokens)
    torch.testing.assert_close(during[1], before[1] + v)            # block 0's output, every position
    assert not torch.allclose(during[2], before[2])                   # and later blocks read it
    torch.testing.assert_close(model.residual_stream(tokens)[2], before[2], rtol=0, atol=0)   # hook removed
    states = probe.states_at(model, tokens, torch.tensor([5, 2], device=dev))
    torch.testing.assert_close(states[1], before[1][[0, 1], [5, 2]])


def test_clear_errors():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16)).eval()
    tokens = torch.randint(0, 20, (2, 6))
    with pytest.raises(ValueError, match=r"blocks 0\.\.1"):
        with probe.steer(model, 2, torch.zeros(16)):
            pass
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        with probe.steer(model, 0, torch.zeros(8)):
            pass
    with pytest.raises(ValueError, match="one index per row"):
        probe.states_at(model, tokens, torch.tensor([1]))
    with pytest.raises(ValueError, match=r"lie in \[0, 6\)"):
        probe.states_at(model, tokens, torch.tensor([1, 6]))
    x, y, _ = _planted(n=20)
    with pytest.raises(ValueError, match="both classes"):
        probe.probe_accuracy(x, torch.zeros_like(y), x, y)
    with pytest.raises(ValueError, match="steps must be"):
        probe.probe_accuracy(x, y, x, y, steps=0)
