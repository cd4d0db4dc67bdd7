import pytest
import torch

from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.tokenizer import Tokenizer

TINY_TEXTS = ["the cat sat on the mat .", "ada lives in paris .", "answer : instruction input"] * 10


@pytest.fixture
def tiny_tok() -> Tokenizer:
    return Tokenizer.train(TINY_TEXTS, n_merges=30, min_count=5)


@pytest.fixture
def tiny_model(tiny_tok) -> MiniGPT:
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=len(tiny_tok), block_size=64, n_layer=2, n_head=2, n_embd=16))


@pytest.fixture
def tok() -> Tokenizer:
    """A tokenizer of a few prompt/answer words (the RL and preference tests)."""
    return Tokenizer.train(["tell me about ada . who is ben ? ada smiled . ben frowned . it was awful ."])


@pytest.fixture
def model(tok) -> MiniGPT:
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=len(tok), block_size=32, n_layer=1, n_head=2, n_embd=16))
