"""MiniGPT: a decoder-only transformer small enough to pre-train on a laptop CPU in about a minute.

The architecture is GPT-2's (Radford et al. 2019), as in nanoGPT: token + position embeddings, a stack
of pre-LayerNorm blocks (causal self-attention, then an MLP, each added to the *residual stream*), a final
LayerNorm, and an output layer that shares its weight with the token embedding (tied embeddings).

Simplifications vs GPT-2: no dropout by default, and no special weight initialisation beyond a scaled init
of the residual projections.  `generate` keeps a key/value cache (each new token costs one position, not the
whole prefix), as real inference servers do.

The residual stream -- the vector each position carries from block to block -- is where ReFT and the
probes of notebook 05 work: `residual_stream()` reads it after every block, and a forward hook on
``model.blocks[i]`` can edit it (returning a new output edits what later blocks see).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import params

__all__ = ["GPTConfig", "MiniGPT", "check_ids", "ids_to", "ids_to_device"]


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int               # tokens in the tokenizer's vocabulary
    block_size: int = 64          # longest context in tokens; prompts longer than this are an error
    n_layer: int = 4              # transformer blocks
    n_head: int = 4               # attention heads per block; n_embd must divide by it
    n_embd: int = 128             # width of the residual stream
    dropout: float = 0.0          # off: our models are small and data is plentiful
    bias: bool = True             # biases in Linear and LayerNorm, as in GPT-2

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}; e.g. n_head=4")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)   # query, key, value at once
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)      # back into the residual stream
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, h, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.n_embd, bias=cfg.bias), CausalSelfAttention(cfg)
        self.ln2, self.mlp = nn.LayerNorm(cfg.n_embd, bias=cfg.bias), MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))   # pre-LN: normalise, transform, add back to the residual stream
        return x + self.mlp(self.ln2(x))


class MiniGPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight    # tied embeddings: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():   # GPT-2: scale residual projections by 1/sqrt(2 n_layer)
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _check(self, tokens: torch.Tensor):
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int, torch.int16,
                                                                          torch.uint8, torch.int8):
            raise TypeError("tokens must be an integer tensor of token ids (torch.long), e.g. "
                            "torch.tensor([tokenizer.encode(text)]); got "
                            f"{tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__}")
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, time), got shape {tuple(tokens.shape)}")
        if tokens.size(1) > self.cfg.block_size:
            raise ValueError(f"sequence of {tokens.size(1)} tokens is longer than the model's context "
                             f"({self.cfg.block_size}); shorten the prompt")
        if not _checked(tokens, self.cfg.vocab_size):   # see `ids_to`: checked on the host, not here
            check_ids(tokens, self.cfg.vocab_size)
            _mark_checked(tokens, self.cfg.vocab_size)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        self._check(tokens)
        pos = torch.arange(tokens.size(1), device=tokens.device)
        return self.tok_emb(tokens) + self.pos_emb(pos)          # (B, T, C): the residual stream at layer 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for next-token prediction at every position."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def residual_stream(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states [(B, T, C)] * (n_layer + 1): after the embedding (0) and after each block (1..L)."""
        states = [self.embed(tokens)]
        for block in self.blocks:
            states.append(block(states[-1]))
        return states

    def num_params(self, trainable_only: bool = False) -> int:
        """`params.count` of this model: all parameters (or the trainable ones), the tied head counted once."""
        return params.count(self)["trainable" if trainable_only else "total"]

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, stop_token: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `tokens` (B, T).  temperature 0 = greedy; stops early once every row emitted stop_token.

        generator: seeds the sampling; it may live on the CPU whatever the model's device (the draw is then
        made on the CPU, so the same seed gives the same tokens on every device up to rounding).
        """
        self._check(tokens)
        if tokens.size(1) == 0:
            raise ValueError("empty prompt: give the model at least one token to continue")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if stop_token is not None and not 0 <= stop_token < self.cfg.vocab_size:
            raise ValueError(f"stop_token {stop_token} is not in the vocabulary [0, {self.cfg.vocab_size}); "
                             "pass the tokenizer's eos_id")
        hooked = any(b._forward_hooks or b._forward_pre_hooks for b in self.blocks)
        if type(self) is MiniGPT and not hooked and tokens.size(1) + max_new_tokens <= self.cfg.block_size:
            return self._generate_cached(tokens, max_new_tokens, temperature, top_k, stop_token, generator)
        done = None                            # (B,) rows that stopped, made by _append
        for _ in range(max_new_tokens):       # the plain way: the whole (last block_size) prefix every step
            logits = self(tokens[:, -self.cfg.block_size:])[:, -1, :].float()   # (B, vocab)
            tokens, done = _append(tokens, _sample(logits, temperature, top_k, generator), stop_token, done)
            _mark_checked(tokens, self.cfg.vocab_size)      # sampled ids index the vocabulary by construction
            if stop_token is not None and bool(done.all()):
                break
        return tokens

    def _generate_cached(self, tokens, max_new_tokens, temperature, top_k, stop_token, generator):
        """`generate` with a key/value cache: the same tokens, each new one costs a single position."""
        x, cache = self.embed(tokens), []
        for block in self.blocks:
            x, kv = _block_with_cache(block, x, None)
            cache.append(kv)
        done = None                            # (B,) rows that stopped, made by _append
        for step in range(max_new_tokens):
            logits = self.head(self.ln_f(x[:, -1])).float()                     # (B, vocab)
            tokens, done = _append(tokens, _sample(logits, temperature, top_k, generator), stop_token, done)
            if (stop_token is not None and bool(done.all())) or step == max_new_tokens - 1:
                break
            x = self.tok_emb(tokens[:, -1:]) + self.pos_emb.weight[tokens.size(1) - 1]   # (B, 1, C)
            for i, block in enumerate(self.blocks):
                x, cache[i] = _block_with_cache(block, x, cache[i])
        return _mark_checked(tokens, self.cfg.vocab_size)   # sampled ids index the vocabulary by construction


def check_ids(tokens: torch.Tensor, vocab_size: int) -> None:
    """Token ids must index the embedding: a clear error instead of an index error deep inside torch."""
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); was the text encoded "
                         "with this model's tokenizer?")


def ids_to(tokens: torch.Tensor, vocab_size: int, device: torch.device | str) -> torch.Tensor:
    """`tokens` checked against a vocabulary of `vocab_size` where they are (on the host: free), then moved to
    `device`; a model skips its own check for the tensor this returns and for slices of it.

    The check reads the ids' minimum and maximum; on a GPU, reading a device tensor makes the CPU wait for the
    device, so checking at every forward pass would stall it.  The mark lasts until the ids are changed in place.
    """
    if not _checked(tokens, vocab_size):
        check_ids(tokens, vocab_size)
    return _mark_checked(tokens.to(device), vocab_size)


def ids_to_device(tokens: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """`ids_to` the device of `model`, checked against its vocabulary (e.g. a prompt encoded on the host)."""
    core = next((m for m in model.modules() if isinstance(m, MiniGPT)), None)
    if core is None:
        return tokens.to(params.device_of(model))
    return ids_to(tokens, core.cfg.vocab_size, params.device_of(model))


def _version(tokens: torch.Tensor) -> int | None:
    try:
        return tokens._version            # shared with views; an in-place change bumps it
    except RuntimeError:                  # inference-mode tensors keep no version: never trusted
        return None


def _mark_checked(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    if _version(tokens) is not None:
        tokens._checked_for_vocab = (vocab_size, _version(tokens))
    return tokens


def _checked(tokens: torch.Tensor, vocab_size: int) -> bool:
    """Were these ids (or the tensor they are a view of) checked for `vocab_size` and not changed since?"""
    return any(t is not None and _version(t) is not None
               and getattr(t, "_checked_for_vocab", None) == (vocab_size, _version(t))
               for t in (tokens, tokens._base))


def _append(tokens: torch.Tensor, nxt: torch.Tensor, stop_token: int | None, done: torch.Tensor | None):
    """tokens + the new ids nxt (B,); `done` (B,) marks rows that emitted stop_token and lives where nxt was
    drawn, so a draw made on the host (a CPU generator) is checked for the stop without reading the device."""
    if done is None:
        done = torch.zeros(nxt.size(0), dtype=torch.bool, device=nxt.device)
    if stop_token is not None:                      # rows that already stopped keep emitting the stop token
        nxt = torch.where(done, torch.full_like(nxt, stop_token), nxt)
        done = done | (nxt == stop_token)
    return torch.cat([tokens, nxt.to(tokens.device)[:, None]], dim=1), done


def _block_with_cache(block: Block, x: torch.Tensor, cache: tuple | None) -> tuple:
    """One pre-LN block on new positions x (B, T, C), given the cached keys/values of earlier positions."""
    attn, (B, T, C) = block.attn, x.shape
    q, k, v = attn.qkv(block.ln1(x)).split(C, dim=2)
    q, k, v = (t.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))
    if cache is not None:                  # one new position sees every cached one: no mask needed (T = 1)
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
    x = x + attn.proj(y.transpose(1, 2).reshape(B, T, C))
    return x + block.mlp(block.ln2(x)), (k, v)


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None,
            generator: torch.Generator | None) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if generator is not None and generator.device.type != probs.device.type:   # drawn (and left) on the host
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
