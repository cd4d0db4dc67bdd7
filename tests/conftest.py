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
