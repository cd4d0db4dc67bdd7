"""Rollouts: sample completions from a policy and score their log-probabilities -- what every RL method shares.

RLHF with the simple policy gradient (`fmlab.rlhf`), PPO (`fmlab.ppo`), GRPO (`fmlab.grpo`), DPO (`fmlab.dpo`,
log-probs only), the verifier's report (`fmlab.verifier`) and the preference data (`fmlab.preference`) all
need the same few things, and take them from here:

- `sample`: one completion per prompt from a policy, cut after <eos>, as right-padded token rows (`Rollout`);
- `completion_mask`, `token_logprobs`, `sequence_logprobs`: log pi(y_t | x, y_<t) for the completion tokens
  only (position t of a (B, T) row predicts token t+1; the prompt and the padding are masked out);
- `kl_to_reference`: the Monte-Carlo estimate KL(pi || pi_ref) = E_{y ~ pi}[log pi(y|x) - log pi_ref(y|x)];
- `sample_rollout`: a scored batch for RL -- `group` samples of each drawn prompt, the reference log-probs
  per token and two scores, with one vocabulary for every method:

      score       what the policy is trained on (a reward model's output, or a checker program's verdict)
      true_score  a held-out judge that is logged, never trained on (the labeller's rubric, a stricter checker)

- `rollout_stats`: the numbers every RL loss logs per step (score, true_score, KL, completion length);
- `check_rollout_settings`: the settings every RL config validates the same way.

Simplifications vs TRL: sampling runs the policy's own `generate` with its KV cache, one batch per prompt
length (MiniGPT has no padding mask), and no top-k / top-p: RL samples the policy's own distribution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .batches import pad_sequences
from .gpt import MiniGPT, ids_to, ids_to_device
from .params import device_of, evaluating
from .tokenizer import Tokenizer

__all__ = ["Rollout", "sample", "completion_texts", "completion_mask", "token_logprobs", "logprobs_from_logits",
           "sequence_logprobs", "kl_to_reference", "check_rollout_settings", "sample_rollout", "rollout_stats",
           "Scorer"]

Scorer = Callable[[dict, str], float]       # (prompt dict, completion text) -> a number, e.g. a checker's verdict


# --- sampling -----------------------------------------------------------------------------------------
@dataclass
class Rollout:
    """Prompts with one sampled completion each, as right-padded token rows."""
    tokens: torch.Tensor       # (N, T) prompt + completion (+ <eos> if it stopped), then <pad>
    prompt_len: torch.Tensor   # (N,) tokens of the prompt
    length: torch.Tensor       # (N,) tokens of prompt + completion (the rest is padding)
    prompts: list[dict]        # the N prompt dicts
    texts: list[str]           # the N completions as text
    vocab_size: int | None = None   # the policy's vocabulary: the ids are checked on the host before a move

    def batch(self, device: torch.device | str = "cpu") -> dict:
        """{'tokens', 'prompt_len', 'length'} on `device`."""
        tokens = self.tokens.to(device) if self.vocab_size is None else ids_to(self.tokens, self.vocab_size, device)
        return {"tokens": tokens, "prompt_len": self.prompt_len.to(device), "length": self.length.to(device)}


def sample(policy: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[dict], max_new_tokens: int = 10,
           temperature: float = 1.0, generator: torch.Generator | None = None) -> Rollout:
    """One completion per prompt dict {'prompt', ...} (repeat a prompt in the list to get several), cut after
    <eos>.  The policy's train/eval mode is left as it was."""
    if not prompts:
        raise ValueError("no prompts to sample from")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    encoded = [tokenizer.encode(p["prompt"]) for p in prompts]
    rows: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):              # MiniGPT has no padding mask: batch equal-length prompts
        by_len.setdefault(len(ids), []).append(i)
    eos = tokenizer.eos_id
    with evaluating(policy):
        for n, idx in by_len.items():
            x = ids_to_device(torch.tensor([encoded[i] for i in idx]), policy)
            out = policy.generate(x, max_new_tokens, temperature, None, eos, generator).cpu()
            for j, i in enumerate(idx):
                new = out[j, n:].tolist()
                rows[i] = encoded[i] + (new[:new.index(eos) + 1] if eos in new else new)
    b = pad_sequences(rows, [len(e) for e in encoded], tokenizer.pad_id)
    texts = completion_texts(tokenizer, b["tokens"], b["prompt_len"], b["length"])
    return Rollout(b["tokens"], b["prompt_len"], b["length"], list(prompts), texts, policy.cfg.vocab_size)


def completion_texts(tokenizer: Tokenizer, tokens: torch.Tensor, prompt_len: torch.Tensor,
                     length: torch.Tensor) -> list[str]:
    """The completions as text; one that stopped with <eos> ends in ' <eos>' so a rubric can see it."""
    texts = []
    for row, p, n in zip(tokens.tolist(), prompt_len.tolist(), length.tolist()):
        new = row[p:n]
        text = tokenizer.decode(new)
        texts.append(text + " <eos>" if new and new[-1] == tokenizer.eos_id else text)
    return texts


# --- log-probabilities of completions -----------------------------------------------------------------
def completion_mask(tokens: torch.Tensor, prompt_len: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """(B, T-1) bool: position t predicts tokens[:, t+1]; True where that token belongs to the completion."""
    t = torch.arange(tokens.size(1) - 1, device=tokens.device)[None]       # (1, T-1)
    return (t >= prompt_len[:, None] - 1) & (t < length[:, None] - 1)


def token_logprobs(model: MiniGPT, tokens: torch.Tensor, prompt_len: torch.Tensor,
                   length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(token | prefix) for every next token (B, T-1), zero outside the completion; and the mask.

    The tensors must be on the model's device (`Rollout.batch(device)` puts them there)."""
    return logprobs_from_logits(model(tokens[:, :-1]), tokens, prompt_len, length)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, prompt_len: torch.Tensor,
                         length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_logprobs` from logits (B, T-1, V) already computed on tokens[:, :-1] (e.g. by a policy with a
    value head); the log-softmax runs in fp32."""
    logp = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, tokens[:, 1:, None]).squeeze(-1)
    mask = completion_mask(tokens, prompt_len, length)
    return logp * mask, mask


def sequence_logprobs(model: MiniGPT, tokens: torch.Tensor, prompt_len: torch.Tensor,
                      length: torch.Tensor) -> torch.Tensor:
    """log pi(completion | prompt) (B,): the sum over completion tokens only."""
    return token_logprobs(model, tokens, prompt_len, length)[0].sum(dim=1)


@torch.no_grad()
def kl_to_reference(policy: MiniGPT, ref_model: MiniGPT, batch: dict) -> float:
    """Monte-Carlo KL(pi || pi_ref) in nats per completion, on samples `batch` drawn from `policy`."""
    args = batch["tokens"], batch["prompt_len"], batch["length"]
    return (sequence_logprobs(policy, *args) - sequence_logprobs(ref_model, *args)).mean().item()


# --- a scored batch for RL ----------------------------------------------------------------------------
def check_rollout_settings(cfg, min_group: int, why: str) -> None:
    """Refuse RL settings that cannot work, naming the fix (RLConfig, PPOConfig and GRPOConfig call it with
    their beta, group, max_new_tokens and temperature)."""
    name = type(cfg).__name__
    if not math.isfinite(cfg.beta) or cfg.beta < 0:
        raise ValueError(f"{name}: beta must be >= 0 (0 = no KL penalty), got {cfg.beta}")
    if not isinstance(cfg.group, int) or cfg.group < min_group:
        raise ValueError(f"{name}: group={cfg.group!r} samples per prompt is too few; use group >= {min_group} "
                         f"({why}), e.g. group=4")
    if not isinstance(cfg.max_new_tokens, int) or cfg.max_new_tokens < 1:
        raise ValueError(f"{name}: max_new_tokens must be a positive integer, got {cfg.max_new_tokens!r}")
    if not cfg.temperature > 0:
        raise ValueError(f"{name}: temperature must be > 0 (RL needs samples, not greedy answers), "
                         f"got {cfg.temperature}; use 1.0 for the policy's own distribution")


@torch.no_grad()
def sample_rollout(policy: MiniGPT, ref_model: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[dict],
                   batch_size: int, generator: torch.Generator, *, group: int, max_new_tokens: int,
                   temperature: float, reward_model: torch.nn.Module | None = None, score: Scorer | None = None,
                   true_score: Scorer | None = None) -> tuple[dict, Rollout]:
    """`batch_size` completions from the *current* policy: batch_size // group prompts, each `group` times.

    The batch (every tensor on the policy's device): tokens, prompt_len, length; ``score`` -- what the policy
    is trained on: ``reward_model(tokens, length)`` if a reward model is given, else ``score(prompt, text)``,
    else zeros; ``true_score`` -- ``true_score(prompt, text)``, logged only (zeros without it); ``ref_logp``
    -- the reference policy's log-probs per token (B, T-1).  Also returns the Rollout (texts, prompts).
    """
    if not prompts:
        raise ValueError("no prompts for RL")
    if batch_size % group:
        raise ValueError(f"batch_size {batch_size} must be a multiple of group={group}")
    idx = torch.randint(0, len(prompts), (batch_size // group,), generator=generator).tolist()
    chosen = [prompts[i] for i in idx for _ in range(group)]
    roll = sample(policy, tokenizer, chosen, max_new_tokens, temperature, generator)
    device = device_of(policy)
    b = roll.batch(device)
    if reward_model is not None:
        b["score"] = reward_model(b["tokens"], roll.length).float()     # lengths checked on the host
    else:
        b["score"] = _scores(score, roll, device)
    b["ref_logp"] = token_logprobs(ref_model, b["tokens"], b["prompt_len"], b["length"])[0]
    b["true_score"] = _scores(true_score, roll, device)
    return b, roll


def _scores(fn: Scorer | None, roll: Rollout, device: torch.device) -> torch.Tensor:
    values = [fn(p, t) for p, t in zip(roll.prompts, roll.texts)] if fn else [0.0] * len(roll.texts)
    return torch.tensor(values, device=device)


def rollout_stats(batch: dict, logp: torch.Tensor, mask: torch.Tensor, **extra: torch.Tensor) -> dict[str, float]:
    """What an RL loss logs per step: mean score and true_score, KL to the reference (nats per completion,
    from the log-probs `logp` of the policy that sampled the batch) and completion length (tokens), then any
    `extra` scalar tensors (PPO's clip fraction, ...) -- all read on the host at once (each read waits for a GPU)."""
    kl = ((logp.detach() - batch["ref_logp"]) * mask).sum(1)
    named = {"score": batch["score"].mean(), "true_score": batch["true_score"].mean(), "kl": kl.mean(),
             "length": mask.sum(1).float().mean(), **extra}
    values = torch.stack([v.detach().double() for v in named.values()]).tolist()
    return dict(zip(named, values))
