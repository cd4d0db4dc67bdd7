"""Quantization: store a model's weights in 8, 4, 3 or 2 bits instead of 32, and what that costs in quality.

Absmax quantization to int8 (Dettmers et al. 2022, "LLM.int8()"): scale a group of weights w by its largest
magnitude s = max|w| and round,

    q = round(127 · w / s) ∈ [-127, 127],        ŵ = s · q / 127

once per tensor (one s for the whole matrix) or per output channel (one s per row: an outlier only spoils its
own row).

k-bit NormalFloat (QLoRA, Dettmers et al. 2023, arXiv:2305.14314): pre-trained weights are roughly normal, so
the 2^k code values are placed at quantiles of N(0, 1), rescaled to [-1, 1], with an exact zero.  NF4's
16 values (bitsandbytes' `create_normal_map(offset=0.9677, use_extra_value=True)`):

    8 positive values  Φ⁻¹(linspace(offset, 0.5, 9)[:-1]),  7 negative  -Φ⁻¹(linspace(offset, 0.5, 8)[:-1]),  0

divided by the largest.  The weights are cut into blocks of `block_size` (64 in QLoRA); each block is divided
by its own absmax s and every weight is replaced by the index of the nearest code value:

    idx = argmin_j |w / s - code_j|,        ŵ = s · code[idx]

With the evenly spaced code of `int_code` instead, the same block-wise scheme is absmax quantization per block
(int8 at 8 bits, int4 at 4 bits).

Storage: k bits per weight plus one scale per block, i.e. k + 32 / block_size bits per weight with fp32 scales
(4.5 bits for NF4 at block 64).  `QuantizedLinear` keeps only the packed indices and the scales and
dequantizes on the fly in `forward`; it is an `nn.Linear`, so `lora.apply` can put an adapter on it (QLoRA:
the frozen base is 4-bit, the adapter trains in full precision, gradients flow through the dequantized weight).

Simplifications vs the papers: the 3- and 2-bit codes follow NF4's construction with 2^k values (our
extension; the papers use NF4); no double quantization of the scales (QLoRA quantizes them to 8 bits, saving
~0.37 bits per weight) and no paged optimizers; LLM.int8()'s mixed-precision decomposition of outlier
features is left out; the compute dtype is fp32 (QLoRA computes in bf16); only the transformer blocks' linear
layers are quantized -- embeddings, LayerNorms and the tied output head stay fp32, as bitsandbytes leaves them.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["absmax_int8", "normal_float_code", "int_code", "CODES", "NF4_OFFSET", "quantize_blockwise", "dequantize_blockwise",
           "pack_bits", "unpack_bits", "QuantizedLinear", "quantize_model", "quantized_layers", "storage_bytes",
           "weight_bits_per_number"]

NF4_OFFSET = 0.9677083      # bitsandbytes: the mean of the two quantiles that keep ±1 finite for 16 values


def absmax_int8(w: torch.Tensor, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8, s): q = round(127 w / s), s = max|w| per tensor, or per row (output channel) if per_channel."""
    s = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().max()
    s = s.clamp(min=torch.finfo(w.dtype).tiny)          # an all-zero row keeps q = 0 instead of 0 / 0
    return torch.round(127 * w / s).to(torch.int8), s


def normal_float_code(bits: int = 4, offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 2^bits NormalFloat values in [-1, 1], ascending: 2^(bits-1) positive, 2^(bits-1) - 1 negative, 0."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    half = 2 ** (bits - 1)
    ndtri = torch.special.ndtri
    positive = ndtri(torch.linspace(offset, 0.5, half + 1, dtype=torch.float64)[:-1])
    negative = -ndtri(torch.linspace(offset, 0.5, half, dtype=torch.float64)[:-1])
    code = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    return (code / code.abs().max()).float()


def int_code(bits: int = 8) -> torch.Tensor:
    """The 2^bits − 1 evenly spaced absmax levels q / (2^(bits-1) − 1), q = −(2^(bits-1) − 1) .. 2^(bits-1) − 1:
    with this code, block-wise quantization is absmax quantization per block (int8: q / 127)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    top = 2 ** (bits - 1) - 1
    return torch.arange(-top, top + 1, dtype=torch.float32) / top


CODES = {"nf": normal_float_code, "int": int_code}


def quantize_blockwise(w: torch.Tensor, code: torch.Tensor, block_size: int = 64
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx uint8 (numel,), absmax (n_blocks,)): each block of `block_size` weights (row-major) divided by
    its absmax, each weight replaced by the index of the nearest value of `code`."""
    flat = w.detach().float().flatten()
    if flat.numel() % block_size:
        raise ValueError(f"{flat.numel()} weights do not split into blocks of {block_size}; pick a divisor")
    blocks = flat.view(-1, block_size)                                       # (n_blocks, block_size)
    absmax = blocks.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    normed = blocks / absmax[:, None]                                        # in [-1, 1]
    idx = (normed[..., None] - code.to(w.device)).abs().argmin(dim=-1)        # nearest code value
    return idx.flatten().to(torch.uint8), absmax


def dequantize_blockwise(idx: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor,
                         shape: torch.Size) -> torch.Tensor:
    """ŵ = absmax(block) · code[idx], reshaped to `shape`."""
    values = code.to(absmax.device)[idx.long()].view(absmax.numel(), -1)      # (n_blocks, block_size)
    return (values * absmax[:, None]).view(shape)


def pack_bits(idx: torch.Tensor, bits: int) -> torch.Tensor:
    """k-bit indices (uint8, each < 2^bits) packed into ceil(numel · bits / 8) bytes (bit i of index n is
    bit n·bits + i of the stream, little-endian within each byte)."""
    stream = ((idx.long()[:, None] >> torch.arange(bits, device=idx.device)) & 1).flatten()   # (numel·bits,)
    stream = F.pad(stream, (0, -stream.numel() % 8))
    return (stream.view(-1, 8) << torch.arange(8, device=idx.device)).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """The inverse of `pack_bits`: `numel` indices as uint8."""
    stream = ((packed.long()[:, None] >> torch.arange(8, device=packed.device)) & 1).flatten()
    per_index = stream[:numel * bits].view(numel, bits)
    return (per_index << torch.arange(bits, device=packed.device)).sum(dim=1).to(torch.uint8)


def weight_bits_per_number(bits: int, block_size: int, scale_bits: int = 32) -> float:
    """Bits of storage per quantized weight: the code plus its share of the block's scale."""
    return bits + scale_bits / block_size


class QuantizedLinear(nn.Linear):
    """y = x Ŵᵀ + b with Ŵ = dequantize(packed k-bit indices, block scales), rebuilt at every forward.

    Frozen: the indices and scales are buffers, the bias a parameter with requires_grad = False.  `weight`
    is the dequantized matrix (a new tensor at every access), so it can be read but not updated in place.
    """

    def __init__(self, linear: nn.Linear, bits: int = 4, block_size: int = 64, code: str = "nf"):
        nn.Module.__init__(self)                                  # not nn.Linear's: no fp32 weight is kept
        if code not in CODES:
            raise ValueError(f"code must be one of {sorted(CODES)} (NormalFloat or absmax integers), got {code!r}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits, self.block_size, self.shape, self.kind = bits, block_size, linear.weight.shape, code
        code = CODES[code](bits).to(linear.weight.device)
        idx, absmax = quantize_blockwise(linear.weight, code, block_size)
        self.register_buffer("code", code)                                     # 2^bits floats
        self.register_buffer("packed", pack_bits(idx, bits))                   # numel · bits / 8 bytes
        self.register_buffer("absmax", absmax)                                 # one fp32 per block
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    @property
    def weight(self) -> torch.Tensor:
        idx = unpack_bits(self.packed, self.bits, math.prod(self.shape))
        return dequantize_blockwise(idx, self.absmax, self.code, self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, code={self.kind}{self.bits}, "
                f"block_size={self.block_size}")


def quantize_model(model: nn.Module, bits: int = 4, block_size: int = 64, code: str = "nf",
                   skip: tuple[str, ...] = ("head",)) -> nn.Module:
    """A frozen copy of `model` whose nn.Linear layers (except those named in `skip`: the tied output head)
    are `QuantizedLinear` with `bits`-bit `code` ("nf": NormalFloat, "int": absmax); `model` is unchanged."""
    model = copy.deepcopy(model).requires_grad_(False)
    targets = [name for name, m in model.named_modules()
               if type(m) is nn.Linear and name.rsplit(".", 1)[-1] not in skip]
    for name in targets:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, QuantizedLinear(getattr(owner, child), bits, block_size, code))
    return model


def quantized_layers(model: nn.Module) -> dict[str, QuantizedLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def storage_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer as stored (each tensor once; the NF code books are included)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    return sum(t.numel() * t.element_size() for t in tensors)
