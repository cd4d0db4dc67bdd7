"""Where the memory of a training step goes: weights, gradients, optimizer state, activations, temporaries.

Full fine-tuning keeps, for every trainable parameter, the weight, its gradient and AdamW's two moving
averages (m and v).  For a model with P parameters stored in b_w bytes each:

    weights     = P * b_w                      (+ P * 4 for an fp32 "master" copy in mixed precision)
    gradients   = P * b_g
    optimizer   = P * 8  + 4 * n_tensors       (AdamW: m and v in fp32, plus one step counter per tensor)
    activations = what the forward pass saves for the backward pass; for MiniGPT, per token position:
                  (16 C + 4 + h) numbers per block  +  (2 C + 2 + V) at the end, plus the integer ids
    temporary   = short-lived buffers ("temporal memory"): here estimated as the gradient of the logits
                  and of the log-softmax, 2 * B * T * V numbers, the largest transient of a step

fp32:  4 + 4 + 8          = 16 bytes per parameter.
mixed: 2 + 4 + 2 + 8      = 16 bytes per parameter (bf16 weights + fp32 master, bf16 grads, fp32 Adam):
mixed precision does not shrink the per-parameter states; it halves the activations and speeds up the
matrix multiplies.  Hence the rule of thumb "~16 bytes per parameter to train with Adam" (Rajbhandari et
al. 2020, ZeRO, section 3.1), plus activations that grow with batch x sequence length.

Measured, not only computed: `measure` runs one real AdamW step and sums the bytes of the tensors held --
parameters, their ``.grad``, the optimizer's state tensors, and every tensor autograd saves for the
backward pass (caught with ``torch.autograd.graph.saved_tensors_hooks``, counted once per storage,
parameters excluded).  On CUDA it also reports ``torch.cuda.max_memory_allocated`` for the step; on CPU
the temporaries are not measured (that number stays an estimate).

Simplifications vs a real 7B run: the activation formula is MiniGPT's (GPT-2 blocks with a 4x MLP and
fused attention that saves no T x T matrix), counted as if every saved number had the activation dtype;
real mixed precision keeps some (LayerNorm statistics, the loss) in fp32; no activation checkpointing,
ZeRO sharding or CPU offload.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch

from .gpt import GPTConfig
from .train import default_loss

__all__ = ["Precision", "FP32", "MIXED", "Memory", "param_count", "param_tensor_count", "activation_numbers",
           "estimate", "measure", "saved_tensor_bytes", "gpt_7b", "GIB"]

GIB = 2**30
_INT = 8    # bytes of an int64 token id


@dataclass(frozen=True)
class Precision:
    weights: int          # bytes per parameter of the weights the forward pass reads
    master: int           # bytes per parameter of an fp32 master copy (mixed precision), else 0
    gradients: int        # bytes per parameter of the gradient
    optimizer: int        # bytes per parameter of optimizer state (AdamW: m and v in fp32 = 8)
    activations: int      # bytes per saved activation number
    name: str = ""        # label for tables and plots

    @property
    def per_param(self) -> int:
        """Bytes per trainable parameter, before activations: the '16 bytes' rule."""
        return self.weights + self.master + self.gradients + self.optimizer


FP32 = Precision(weights=4, master=0, gradients=4, optimizer=8, activations=4, name="fp32")
MIXED = Precision(weights=2, master=4, gradients=2, optimizer=8, activations=2, name="mixed (bf16 + fp32 master)")


@dataclass(frozen=True)
class Memory:
    weights: int          # bytes of parameters (and master copy)
    gradients: int        # bytes of .grad tensors
    optimizer: int        # bytes of optimizer state tensors
    activations: int      # bytes autograd saves between forward and backward
    temporary: int        # bytes of short-lived buffers (estimate on CPU; peak minus the rest on CUDA)

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self, unit: int = 1) -> dict[str, float]:
        """The five parts in bytes (or in `unit`s, e.g. GIB or 2**20)."""
        return {k: v / unit for k, v in asdict(self).items()}


# --- formulas -----------------------------------------------------------------------------------------
def param_count(cfg: GPTConfig) -> int:
    """MiniGPT's parameters: V*C (tied embedding/head) + T*C + L*(12 C^2 + 13 C) + 2 C (final LayerNorm)."""
    C = cfg.n_embd
    per_block = 12 * C * C + (13 * C if cfg.bias else 2 * C)   # qkv 3C^2, proj C^2, MLP 8C^2, LNs, biases
    return cfg.vocab_size * C + cfg.block_size * C + cfg.n_layer * per_block + (2 * C if cfg.bias else C)


def param_tensor_count(cfg: GPTConfig) -> int:
    """Number of parameter tensors (AdamW keeps one step counter per tensor)."""
    return 2 + cfg.n_layer * (12 if cfg.bias else 6) + (2 if cfg.bias else 1)


def activation_numbers(cfg: GPTConfig, batch_size: int, seq_len: int) -> int:
    """Floating-point numbers autograd saves in one MiniGPT forward + loss (no T x T attention matrix).

    Per position and block: LN1 input C, its mean and 1/std 2, LN1 output C, q|k|v 3C, attention output C and
    its log-sum-exp h, LN2 input C, mean and 1/std 2, LN2 output C, MLP hidden before and after GELU 4C + 4C
    = 16 C + 4 + h.  At the end: final LN input C, mean and 1/std 2, output C, log-softmax of the logits V.
    """
    C, h, V = cfg.n_embd, cfg.n_head, cfg.vocab_size
    if not 0 < seq_len <= cfg.block_size:
        raise ValueError(f"seq_len must be in 1..{cfg.block_size} (the model's context), got {seq_len}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    N = batch_size * seq_len
    return N * (cfg.n_layer * (16 * C + 4 + h) + 2 * C + 2 + V)


def estimate(cfg: GPTConfig, batch_size: int, seq_len: int, precision: Precision = FP32,
             trainable: int | None = None, trainable_tensors: int | None = None) -> Memory:
    """Bytes of one full fine-tuning step with AdamW, from the model config and batch shape alone.

    trainable: number of trainable parameters (default: all) -- PEFT trains few, but still stores all weights.
    trainable_tensors: how many tensors they form (AdamW's step counters); default all, or 0 with `trainable`.
    """
    P = param_count(cfg)
    Pt = P if trainable is None else trainable
    if trainable_tensors is None:
        trainable_tensors = param_tensor_count(cfg) if trainable is None else 0
    n_tensors = trainable_tensors
    N = batch_size * seq_len
    ids = 2 * N * _INT + seq_len * _INT + 4      # tokens, targets, position ids, the loss's token count
    return Memory(weights=P * precision.weights + Pt * precision.master,
                  gradients=Pt * precision.gradients,
                  optimizer=Pt * precision.optimizer + 4 * n_tensors,
                  activations=activation_numbers(cfg, batch_size, seq_len) * precision.activations + ids,
                  temporary=2 * N * cfg.vocab_size * 4)   # logits and log-softmax gradients, fp32


def gpt_7b() -> GPTConfig:
    """A 7B-class GPT (Llama-2-7B's depth, width and heads with GPT-2 blocks): 32 x 4096, 32 heads, 32k vocab."""
    return GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_embd=4096)


# --- measurement --------------------------------------------------------------------------------------
def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def saved_tensor_bytes(model: torch.nn.Module, batch: dict,
                       loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] = default_loss
                       ) -> tuple[torch.Tensor, int]:
    """(loss, bytes autograd saved for backward) -- each storage once, the model's parameters excluded."""
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_storages:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model, batch)
    return loss, sum(storages.values())


def measure(model: torch.nn.Module, batch: dict, optimizer: torch.optim.Optimizer | None = None,
            loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor] = default_loss) -> Memory:
    """Run one real training step and sum the bytes of the tensors it holds.

    The model's weights do not change: the default optimizer is AdamW with lr 0 (pass your own to measure it).
    The step runs twice so the optimizer state exists before the measured step, as in real training.
    temporary: on CUDA, peak allocated during the step minus weights, optimizer state and the larger of
    activations and gradients (they are not all alive at once); on CPU, 0 (not measurable this way).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: nothing to measure for training")
    opt = optimizer or torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)
    device = params[0].device
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}   # ints (PPO epoch) stay
    cuda = device.type == "cuda"
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        if cuda and step == 1:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        loss, activations = saved_tensor_bytes(model, batch, loss_fn)
        loss.backward()
        grads = sum(_nbytes(p.grad) for p in params if p.grad is not None)
        opt.step()
    weights = sum(_nbytes(p) for p in model.parameters())
    state = sum(_nbytes(t) for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    temporary = 0
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - _nbytes_batch(batch)
        temporary = max(0, peak - weights - state - max(activations, grads))
    opt.zero_grad(set_to_none=True)
    return Memory(weights=weights, gradients=grads, optimizer=state, activations=activations, temporary=temporary)


def _nbytes_batch(batch: dict) -> int:
    return sum(_nbytes(v) for v in batch.values() if torch.is_tensor(v))
