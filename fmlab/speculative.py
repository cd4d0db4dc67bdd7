"""Speculative decoding: a small *draft* model guesses k tokens, the large *target* model checks them all in one pass.

Leviathan, Kalman & Matias 2023, "Fast Inference from Transformers via Speculative Decoding" (arXiv:2211.17192).
Generating a token with a large model is bound by reading its weights once per forward pass; a forward pass
over k + 1 positions reads them once too.  So per iteration:

1. the draft proposes x_1..x_k, sampling each from its own distribution q_i (k cheap passes);
2. the target runs once on prefix + x_1..x_k, giving its distributions p_1..p_{k+1};
3. for i = 1..k: accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection, draw the
   token instead from the residual  p'(x) = max(0, p_i(x) − q_i(x)) / Σ_x max(0, p_i(x) − q_i(x))  and stop;
4. if all k were accepted, draw one more token from p_{k+1} (the pass computed it anyway).

Every iteration yields between 1 and k + 1 tokens for one target pass, and the tokens are distributed exactly as
if sampled from the target alone (Leviathan et al., Appendix A.1): P(x) = q(x)·min(1, p(x)/q(x)) + (1 − β)·p'(x)
= min(q, p) + max(0, p − q) = p(x), with β the acceptance probability.  With greedy decoding (temperature 0)
p and q are one-hot, the rule reduces to "accept while the draft's token is the target's arg-max", and the
output is the target's greedy output token for token.  If each token is accepted with probability α
(independently), an iteration yields (1 − α^(k+1)) / (1 − α) tokens on average (their equation 1).

Simplifications vs the paper: one sequence at a time (batch 1); no key/value cache (each pass reads the whole
prefix, so FLOPs are not the quantity saved here -- target passes are); the draft length k is fixed; the
sequence (prompt + new tokens) must fit in both models' context.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Stats", "probabilities", "accept_or_resample", "speculative_generate", "autoregressive_generate",
           "expected_tokens_per_pass"]

Model = Callable[[torch.Tensor], torch.Tensor]       # tokens (1, T) -> logits (1, T, vocab)


@dataclass
class Stats:
    target_passes: int = 0      # forward passes of the target model
    draft_passes: int = 0       # forward passes of the draft model
    drafted: int = 0            # tokens the draft proposed
    accepted: int = 0           # of those, accepted by the target
    rejected: int = 0           # drafted tokens checked and rejected (at most one per target pass)
    generated: int = 0          # tokens appended to the output

    @property
    def acceptance_rate(self) -> float:
        """α: the share of *checked* drafted tokens that were accepted (tokens after a rejection are never checked)."""
        return self.accepted / max(self.accepted + self.rejected, 1)

    @property
    def target_passes_per_token(self) -> float:
        return self.target_passes / max(self.generated, 1)

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T), or the one-hot arg-max when T = 0 (greedy)."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    return torch.softmax(logits / temperature, dim=-1)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(probs.device)


def accept_or_resample(p: torch.Tensor, q: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One verification step for a batch of independent proposals: p, q (N, V) target / draft probabilities,
    x (N,) the draft's tokens.  Returns (accepted (N,) bool, token (N,)): x where accepted, else a draw from
    the residual max(0, p − q), normalised."""
    rows = torch.arange(x.numel(), device=x.device)
    u = torch.rand(x.numel(), generator=generator).to(p.device)
    accepted = u * q[rows, x] < p[rows, x]                  # u < p/q without dividing by a tiny q
    residual = (p - q).clamp(min=0)
    empty = residual.sum(-1, keepdim=True) == 0             # p == q: every proposal is accepted anyway
    residual = torch.where(empty, p, residual)
    resampled = _draw(residual / residual.sum(-1, keepdim=True), generator)
    return accepted, torch.where(accepted, x, resampled)


@torch.no_grad()
def speculative_generate(target: Model, draft: Model, tokens: torch.Tensor, max_new_tokens: int, k: int,
                         temperature: float = 0.0, stop_token: int | None = None,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, Stats]:
    """Continue `tokens` (1, T) by up to `max_new_tokens`; returns (tokens (1, T + n), counts).

    Stops after `stop_token` (included) like `MiniGPT.generate`.  generator: seeds every random draw (CPU).
    """
    if tokens.dim() != 2 or tokens.size(0) != 1:
        raise ValueError(f"speculative_generate decodes one sequence: tokens must be (1, T), got {tuple(tokens.shape)}")
    if k < 1:
        raise ValueError(f"draft length k must be >= 1, got {k}")
    stats, start = Stats(), tokens.size(1)
    while tokens.size(1) - start < max_new_tokens:
        room = max_new_tokens - (tokens.size(1) - start)
        kk = min(k, room - 1)                                         # the last token comes from the target
        drafted, qs = tokens, []
        for _ in range(kk):                                           # 1. the draft proposes kk tokens
            q = probabilities(draft(drafted)[:, -1], temperature)     # (1, V)
            x = q.argmax(-1) if temperature == 0 else _draw(q, generator)
            drafted, qs = torch.cat([drafted, x[:, None]], dim=1), qs + [q]
        stats.draft_passes, stats.drafted = stats.draft_passes + kk, stats.drafted + kk
        n = tokens.size(1)
        p_all = probabilities(target(drafted)[0, n - 1:], temperature)   # (kk + 1, V): p_1 .. p_{kk+1}
        stats.target_passes += 1                                      # 2. one target pass checks them all
        new = []
        for i in range(kk):                                           # 3. accept, or resample and stop
            x = drafted[:, n + i]
            if temperature == 0:
                ok, token = bool(p_all[i, x] == 1), p_all[i].argmax()[None]
            else:
                ok_t, token = accept_or_resample(p_all[i:i + 1], qs[i], x, generator)
                ok = bool(ok_t)
            new.append(int(token))
            if not ok:
                stats.rejected += 1
                break
            stats.accepted += 1
        else:                                                         # 4. all accepted: the bonus token
            bonus = p_all[kk].argmax() if temperature == 0 else _draw(p_all[kk:kk + 1], generator)[0]
            new.append(int(bonus))
        if stop_token is not None and stop_token in new:
            new = new[:new.index(stop_token) + 1]
        tokens = torch.cat([tokens, torch.tensor([new], device=tokens.device)], dim=1)
        stats.generated += len(new)
        if stop_token is not None and new[-1] == stop_token:
            break
    return tokens, stats


@torch.no_grad()
def autoregressive_generate(model: Model, tokens: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                            stop_token: int | None = None, generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, Stats]:
    """The baseline, counted the same way: one target pass per generated token (no cache, as above)."""
    stats, start = Stats(), tokens.size(1)
    while tokens.size(1) - start < max_new_tokens:
        p = probabilities(model(tokens)[:, -1], temperature)
        x = p.argmax(-1) if temperature == 0 else _draw(p, generator)
        tokens = torch.cat([tokens, x[:, None]], dim=1)
        stats.target_passes, stats.generated = stats.target_passes + 1, stats.generated + 1
        if stop_token is not None and int(x) == stop_token:
            break
    return tokens, stats


def expected_tokens_per_pass(alpha: float, k: int) -> float:
    """Leviathan et al. eq. 1: (1 − α^(k+1)) / (1 − α) tokens per target pass at acceptance rate α."""
    return k + 1.0 if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
