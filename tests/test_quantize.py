"""Quantizers against hand-computed values, the published NF4 code book, and bitsandbytes where it installs."""
import math

import pytest
import torch
import torch.nn as nn

from fmlab import lora, quantize

# The 16 NF4 values as published: QLoRA (Dettmers et al. 2023), Appendix E, and bitsandbytes' functional.py
# (`get_4bit_type("nf4")`).
NF4_PUBLISHED = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]


def test_nf4_code_book_equals_the_published_values():
    torch.testing.assert_close(quantize.normal_float_code(4), torch.tensor(NF4_PUBLISHED), atol=1e-6, rtol=0)


def test_normal_float_codes_have_an_exact_zero_and_span_minus_one_to_one():
    for bits in (2, 3, 4, 8):
        code = quantize.normal_float_code(bits)
        assert code.numel() == 2 ** bits and (code == 0).sum() == 1
        assert code.min() == -1 and code.max() == 1 and bool((code.diff() > 0).all())


def test_absmax_int8_hand_computed():
    w = torch.tensor([[1.0, -2.0, 0.5], [0.1, 0.2, -0.4]])
    q, s = quantize.absmax_int8(w)                      # s = 2: q = round(127 w / 2), halves to even
    assert s.item() == 2.0
    assert q.tolist() == [[64, -127, 32], [6, 13, -25]]
    q, s = quantize.absmax_int8(w, per_channel=True)    # row 1 gets its own s = 0.4
    assert s.flatten().tolist() == pytest.approx([2.0, 0.4])
    assert q.tolist() == [[64, -127, 32], [32, 64, -127]]


def test_blockwise_round_trip_hand_computed():
    code = quantize.normal_float_code(2)                # [-1, 0, 0.3379, 1]
    w = torch.tensor([0.5, -1.0, 0.25, 0.0, 2.0, 1.0, -0.5, 0.0])
    idx, absmax = quantize.quantize_blockwise(w, code, block_size=4)
    assert absmax.tolist() == [1.0, 2.0]
    assert idx.tolist() == [2, 0, 2, 1, 3, 2, 1, 1]    # 0.5/2 = 0.25 -> 0.3379 (index 2); -0.25 -> 0 (index 1)
    back = quantize.dequantize_blockwise(idx, absmax, code, w.shape)
    c = code[2].item()
    torch.testing.assert_close(back, torch.tensor([c, -1.0, c, 0.0, 2.0, 2 * c, 0.0, 0.0]))


def test_round_trip_error_is_at_most_half_the_widest_gap():
    torch.manual_seed(0)
    w = torch.randn(64, 32)
    for bits in (2, 3, 4):
        code = quantize.normal_float_code(bits)
        idx, absmax = quantize.quantize_blockwise(w, code, 64)
        back = quantize.dequantize_blockwise(idx, absmax, code, w.shape)
        bound = absmax.repeat_interleave(64).view(w.shape) * code.diff().max() / 2
        assert bool(((back - w).abs() <= bound + 1e-6).all())


def test_pack_bits_hand_computed_and_round_trip():
    assert quantize.pack_bits(torch.tensor([1, 2, 3, 0], dtype=torch.uint8), 2).tolist() == [57]   # 1+8+16+32
    torch.manual_seed(0)
    for bits in range(2, 9):
        idx = torch.randint(0, 2 ** bits, (1001,), dtype=torch.uint8)
        packed = quantize.pack_bits(idx, bits)
        assert packed.numel() == math.ceil(1001 * bits / 8)
        assert torch.equal(quantize.unpack_bits(packed, bits, 1001), idx)


def test_quantized_linear_forward_and_bytes():
    torch.manual_seed(0)
    linear = nn.Linear(32, 16)
    q = quantize.QuantizedLinear(linear, bits=4, block_size=64)
    x = torch.randn(3, 32)
    torch.testing.assert_close(q(x), x @ q.weight.T + linear.bias)
    assert (q.weight - linear.weight).abs().max() < 0.5 * linear.weight.abs().max()
    # 512 weights at 4 bits = 256 bytes, 8 fp32 scales, a 16-value fp32 code book, 16 fp32 biases
    assert quantize.storage_bytes(q) == 256 + 8 * 4 + 16 * 4 + 16 * 4
    assert not any(p.requires_grad for p in q.parameters())


def test_quantize_model_leaves_the_original_and_the_head_alone(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    q = quantize.quantize_model(tiny_model, bits=4, block_size=16)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert len(quantize.quantized_layers(q)) == 4 * tiny_model.cfg.n_layer
    assert type(q.head) is nn.Linear and q.head.weight is q.tok_emb.weight
    assert quantize.storage_bytes(q) < quantize.storage_bytes(tiny_model)


def test_more_bits_means_less_error(tiny_model):
    tokens = torch.randint(0, tiny_model.cfg.vocab_size, (2, 12))
    with torch.no_grad():
        ref = tiny_model(tokens)
        err = {b: (quantize.quantize_model(tiny_model, b, 16)(tokens) - ref).abs().mean().item() for b in (2, 4, 8)}
    assert err[8] < err[4] < err[2], err


def test_qlora_trains_only_the_adapter_on_a_4bit_base(tiny_model):
    q = quantize.quantize_model(tiny_model, bits=4, block_size=16)
    tokens = torch.randint(0, tiny_model.cfg.vocab_size, (2, 12))
    with torch.no_grad():
        frozen = q(tokens)
    lora.apply(q, lora.LoraConfig(rank=2, alpha=4, targets=lora.ALL_LINEAR))
    trainable = {n for n, p in q.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    with torch.no_grad():
        torch.testing.assert_close(q(tokens), frozen)          # B = 0: exactly the quantized model
    q(tokens).sum().backward()
    assert all(p.grad is not None for n, p in q.named_parameters() if n.endswith(".B"))
    packed = [b.clone() for b in q.buffers()]
    torch.optim.SGD([p for p in q.parameters() if p.requires_grad], lr=0.1).step()
    assert all(torch.equal(a, b) for a, b in zip(packed, q.buffers()))   # the 4-bit base did not move


def test_nf4_matches_bitsandbytes():
    F = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(0)
    w = torch.randn(128, 64) * 0.05
    try:
        packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4")
        theirs = F.dequantize_4bit(packed, state)
    except (RuntimeError, NotImplementedError) as err:          # an install without a CPU backend
        pytest.skip(f"bitsandbytes cannot quantize on this machine: {err}")
    torch.testing.assert_close(quantize.normal_float_code(4), F.get_4bit_type("nf4", device="cpu").float())
    code = quantize.normal_float_code(4)
    idx, absmax = quantize.quantize_blockwise(w, code, 64)
    torch.testing.assert_close(absmax, state.absmax.float())
    torch.testing.assert_close(quantize.dequantize_blockwise(idx, absmax, code, w.shape), theirs.float())
    assert packed.numel() * packed.element_size() == quantize.pack_bits(idx, 4).numel()    # 2 weights per byte


def test_int_code_blockwise_is_absmax_int8_per_block():
    torch.manual_seed(0)
    w = torch.randn(4, 64)
    idx, absmax = quantize.quantize_blockwise(w, quantize.int_code(8), block_size=64)    # one block per row
    q, s = quantize.absmax_int8(w, per_channel=True)
    assert torch.equal(idx.long().view(4, 64) - 127, q.long())
    torch.testing.assert_close(absmax, s.flatten())
