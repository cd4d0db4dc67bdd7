import pytest
import torch

from fmlab.batches import IGNORE, encode_example, instruction_batches, lm_batches, mix
from fmlab.train import lm_loss

EX = {"task": "t", "instruction": "the cat", "input": "sat", "output": "on the mat"}


def test_lm_batches_shift_by_one():
    stream = torch.arange(100)
    b = lm_batches(stream, 8)(4, torch.Generator().manual_seed(0))
    assert b["tokens"].shape == (4, 8)
    assert torch.equal(b["targets"], b["tokens"] + 1)


def test_instruction_targets_mask_the_prompt(tiny_tok):
    prompt, answer = encode_example(tiny_tok, EX)
    b = instruction_batches(tiny_tok, [EX], 32)(2, torch.Generator().manual_seed(0))
    y = b["targets"][0]
    assert (y[: len(prompt) - 1] == IGNORE).all()
    assert y[len(prompt) - 1:].tolist() == answer
    assert answer[-1] == tiny_tok.eos_id


def test_answer_only_loss_ignores_prompt_tokens(tiny_tok):
    """Changing the logits at prompt positions never changes the answer-only loss."""
    b = instruction_batches(tiny_tok, [EX], 32)(1, torch.Generator().manual_seed(0))
    logits = torch.randn(1, b["tokens"].size(1), len(tiny_tok))
    masked = b["targets"] == IGNORE
    other = logits.clone()
    other[masked] = torch.randn_like(other[masked]) * 10
    torch.testing.assert_close(lm_loss(logits, b["targets"]), lm_loss(other, b["targets"]))
    assert masked.any() and (~masked).any()


def test_mix_draws_from_every_source_by_weight(tiny_tok):
    a = lm_batches(torch.zeros(200, dtype=torch.long), 8)
    b = lm_batches(torch.ones(200, dtype=torch.long), 8)
    batch = mix([a, b], [0.25, 0.75])(400, torch.Generator().manual_seed(0))
    share_b = (batch["tokens"][:, 0] == 1).float().mean().item()
    assert 0.65 < share_b < 0.85
    with pytest.raises(ValueError):
        mix([a, b], [0, 0])


def test_too_long_example_is_a_clear_error(tiny_tok):
    long = dict(EX, input="cat " * 40)
    with pytest.raises(ValueError, match="longer than the context"):
        instruction_batches(tiny_tok, [long], 16)
