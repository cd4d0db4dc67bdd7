"""Group Relative Policy Optimisation: RL without a value network, advantages relative to a group of samples.

For each prompt x, sample a *group* of G completions y_1..y_G from the current policy and score each with
a reward function r_i (here a program that checks the answer, `fmlab.verifier`).  The advantage of a
completion is how much better it did than its group:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + 1e-4)

-- no value network is trained: the group *is* the baseline.  Every token of y_i shares A_i.  The loss is
PPO's clipped surrogate plus a KL penalty to the frozen reference, estimated per token with Schulman's
"k3" estimator (unbiased, always >= 0) and put in the *loss*, not in the reward as RLHF-PPO does:

    ratio_t = pi(y_t) / pi_old(y_t)
    kl_t    = pi_ref(y_t)/pi(y_t) - log(pi_ref(y_t)/pi(y_t)) - 1
    L       = mean_i  (1/|y_i|) sum_t [ -min(ratio_t A_i, clip(ratio_t, 1-eps, 1+eps) A_i) + beta kl_t ]

Paper: Shao et al. 2024 ("DeepSeekMath"), used for DeepSeek-R1 (2025).  TRL: ``GRPOTrainer`` with
``loss_type="grpo"`` (``tests/test_trl_crosscheck.py`` checks we agree on the same tensors).

Simplifications vs the paper / TRL (and why):
- one optimizer step per group of samples (TRL's default ``num_iterations=1``), so pi_old = pi and the
  ratio is exactly 1: the clip is written for fidelity but never acts (PPO in `fmlab.ppo` shows it act);
- the original GRPO loss: a per-sequence average, and the KL term as written above.  TRL 1.x defaults to
  ``loss_type="dapo"`` (average over all tokens of the batch, which removes a bias toward short correct and
  long wrong answers) and ``use_bias_correction_kl=True`` (the KL term times the ratio, DeepSeek-V3.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .gpt import MiniGPT
from .rollout import Scorer, check_rollout_settings, rollout_stats, sample_rollout, token_logprobs
from .tokenizer import Tokenizer

__all__ = ["GRPOConfig", "group_advantages", "k3_kl", "grpo_loss", "rollout_batches", "grpo_loss_fn"]


@dataclass(frozen=True)
class GRPOConfig:
    beta: float = 0.04           # KL coefficient (DeepSeekMath: 0.04; TRL's default 0.0 drops the reference)
    group: int = 8               # completions per prompt (TRL: num_generations); the group is the baseline
    max_new_tokens: int = 10     # completion length limit in tokens
    temperature: float = 1.0     # sampling temperature: the group needs variety to compare
    clip: float = 0.2            # eps of the clipped ratio (TRL: epsilon)

    def __post_init__(self):
        check_rollout_settings(self, min_group=2, why="advantages are relative to the group's mean and spread")
        if not 0 < self.clip < 1:
            raise ValueError(f"GRPOConfig: clip must be in (0, 1), got {self.clip}; the usual value is 0.2")


def group_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """(r - group mean) / (group std + 1e-4), rows in consecutive groups of `group` (unbiased std, as TRL)."""
    if group < 2 or rewards.numel() % group:
        raise ValueError(f"need >= 2 samples per prompt and a batch divisible by group={group}")
    r = rewards.float().view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate exp(ref - logp) - (ref - logp) - 1 (>= 0; zero where pi = pi_ref)."""
    return torch.exp(ref_logp - logp) - (ref_logp - logp) - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, beta: float, clip: float = 0.2) -> torch.Tensor:
    """The GRPO loss from per-token log-probs (B, T) and sequence advantages (B,); mask marks completion tokens."""
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a) + beta * k3_kl(logp, ref_logp)
    m = mask.float()
    return ((per_token * m).sum(1) / m.sum(1).clamp_min(1)).mean()


def rollout_batches(policy: MiniGPT, ref_model: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[dict],
                    score: Scorer | None, cfg: GRPOConfig = GRPOConfig(), true_score: Scorer | None = None, *,
                    reward_model: torch.nn.Module | None = None) -> Callable:
    """A batcher for `train`: batch_size // group prompts, `group` samples each, scored by score(prompt, text).

    GRPO is an optimizer, not a reward: with ``score=None, reward_model=rm`` the samples are scored by a learned
    reward model instead (as DeepSeekMath ran GRPO).
    true_score: an optional second checker that is logged but not trained on (e.g. the strict checker while
    training on the loose one), carried as ``batch["true_score"]`` (`fmlab.rollout`'s vocabulary).
    """
    if (reward_model is None) == (score is None):
        raise ValueError("give the policy one reward: score=checker, or score=None and reward_model=rm")

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        b, _ = sample_rollout(policy, ref_model, tokenizer, prompts, batch_size, generator, group=cfg.group,
                              max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, score=score,
                              reward_model=reward_model, true_score=true_score)
        return {**b, "advantages": group_advantages(b["score"], cfg.group)}
    return get_batch


def grpo_loss_fn(cfg: GRPOConfig, log: list | None = None) -> Callable[[MiniGPT, dict], torch.Tensor]:
    """loss_fn for `train` on batches from `rollout_batches`; appends `rollout.rollout_stats` (score,
    true_score, kl, length) to `log`."""

    def loss_fn(policy: MiniGPT, batch: dict) -> torch.Tensor:
        logp, mask = token_logprobs(policy, batch["tokens"], batch["prompt_len"], batch["length"])
        loss = grpo_loss(logp, logp.detach(), batch["ref_logp"], batch["advantages"], mask, cfg.beta, cfg.clip)
        if log is not None:
            log.append(rollout_stats(batch, logp, mask))
        return loss
    return loss_fn
