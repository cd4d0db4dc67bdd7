"""Speculative decoding: the target's greedy output token for token, the target's distribution when sampling,
and the counted passes."""
import copy

import pytest
import torch

from fmlab import speculative
from fmlab.gpt import GPTConfig, MiniGPT


def _model(seed, vocab=12, layers=1, width=16):
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=layers, n_head=2, n_embd=width)).eval()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_greedy_output_is_the_targets_token_for_token(k):
    target, draft = _model(0), _model(1, width=8)
    for start in range(4):
        prompt = torch.tensor([[start, 3, 5]])
        want = target.generate(prompt, 20)                           # MiniGPT's own (cached) greedy decoding
        got, stats = speculative.speculative_generate(target, draft, prompt, 20, k)
        assert torch.equal(got, want)
        assert stats.generated == 20 == stats.accepted + stats.target_passes   # each pass adds one own token


def test_greedy_stops_after_the_stop_token_like_generate():
    target, draft = _model(0), _model(1)
    prompt = torch.tensor([[1, 2]])
    free = target.generate(prompt, 20)[0, 2:].tolist()
    stop = free[5]                                                   # a token the target emits at position 5
    want = target.generate(prompt, 20, stop_token=stop)
    got, _ = speculative.speculative_generate(target, draft, prompt, 20, 4, stop_token=stop)
    assert torch.equal(got, want) and got[0, -1].item() == stop


def test_counts_with_a_perfect_and_a_useless_draft():
    target = _model(0)
    prompt = torch.tensor([[1, 2, 3]])
    _, perfect = speculative.speculative_generate(target, target, prompt, 20, 4)
    assert (perfect.target_passes, perfect.draft_passes, perfect.accepted) == (4, 16, 16)   # 5 tokens per pass

    class Contrary(torch.nn.Module):                                 # always proposes what the target does not
        def forward(self, tokens):
            logits = target(tokens).clone()
            logits[..., logits[0, -1].argmax()] = -1e9
            return logits
    _, useless = speculative.speculative_generate(target, Contrary(), prompt, 20, 4)
    assert (useless.target_passes, useless.accepted, useless.generated) == (20, 0, 20)
    assert useless.rejected == 19 and useless.acceptance_rate == 0       # the last pass drafts nothing (k = 0)
    assert perfect.rejected == 0 and perfect.acceptance_rate == 1
    _, plain = speculative.autoregressive_generate(target, prompt, 20)
    assert plain.target_passes == 20


def test_accept_or_resample_gives_the_target_distribution():
    p = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.0])
    q = torch.tensor([0.1, 0.1, 0.3, 0.4, 0.1])                       # proposes tokens the target never would
    n, gen = 200_000, torch.Generator().manual_seed(0)
    x = torch.multinomial(q, n, replacement=True, generator=gen)
    accepted, tokens = speculative.accept_or_resample(p.expand(n, -1), q.expand(n, -1), x, gen)
    freq = torch.bincount(tokens, minlength=5).float() / n
    assert (freq - p).abs().max() < 0.005, freq                       # the std of one frequency is ~0.0011
    beta = torch.minimum(p, q).sum().item()                           # acceptance probability: sum min(p, q)
    assert accepted.float().mean().item() == pytest.approx(beta, abs=0.005)
    assert (torch.bincount(x, minlength=5).float() / n - p).abs().max() > 0.2   # the draft alone would be far off


class Bigram(torch.nn.Module):
    """A language model whose next-token logits depend only on the last token: cheap, and exactly computable."""

    def __init__(self, seed, vocab):
        super().__init__()
        self.table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * 1.5

    def forward(self, tokens):
        return self.table[tokens]                                    # (1, T, vocab)


def test_sampled_sequences_follow_the_targets_distribution():
    vocab, n = 4, 1500
    target, draft = Bigram(0, vocab), Bigram(5, vocab)
    prompt = torch.tensor([[1, 2]])
    p = torch.softmax(target.table, -1)                              # p(next | last)
    exact = (p[2][:, None] * p).flatten()                            # P(x1, x2) = p(x1 | 2) p(x2 | x1)
    q = torch.softmax(draft.table, -1)
    draft_alone = (q[2][:, None] * q).flatten()
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(vocab * vocab)
    for _ in range(n):
        out, _ = speculative.speculative_generate(target, draft, prompt, 2, k=2, temperature=1.0, generator=gen)
        counts[out[0, 2] * vocab + out[0, 3]] += 1
    chi2 = (((counts - n * exact) ** 2) / (n * exact)).sum().item()
    # 15 degrees of freedom: P(chi2 > 37.7) = 0.001 under the target's distribution
    assert chi2 < 37.7, chi2
    chi2_draft = (((counts - n * draft_alone) ** 2) / (n * draft_alone)).sum().item()
    assert chi2_draft > 37.7, chi2_draft                             # the test can tell the draft's distribution


def test_expected_tokens_per_pass():
    assert speculative.expected_tokens_per_pass(0.0, 4) == 1
    assert speculative.expected_tokens_per_pass(1.0, 4) == 5
    assert speculative.expected_tokens_per_pass(0.5, 2) == pytest.approx(1.75)      # 1 + 0.5 + 0.25
