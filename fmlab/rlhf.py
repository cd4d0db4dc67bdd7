"""Reinforcement learning from human feedback: improve a policy against a learned reward, on a KL leash.

The real pipeline (InstructGPT, Ouyang et al. 2022) has three steps: (1) supervised fine-tuning on
demonstrations people wrote, (2) a reward model trained on people's comparisons (`fmlab.reward`), (3) RL
against that reward model with PPO.  Step 3 maximises, over prompts x and the policy's own samples
y ~ pi(.|x),

    J(pi) = E[ r(x, y) ] - beta * KL( pi(.|x) || pi_ref(.|x) )

where pi_ref is the frozen starting policy.  The KL term keeps the policy near text the reward model was
trained on; without it (beta = 0) the policy drifts to outputs that score high under the *learned*
reward for the wrong reasons -- reward hacking.  As in TRL's PPO recipe the KL enters as a per-token
penalty added to the reward: token t of a completion earns -beta * (log pi(y_t) - log pi_ref(y_t)), and
the last token also earns r(x, y).  The return from token t on is

    G_t = r(x, y) - beta * sum_{s >= t} (log pi(y_s) - log pi_ref(y_s))

and this module's policy-gradient loss is  -sum_t (G_t - b) * log pi(y_t),  b a baseline (Williams 1992).

This module is the *simple* policy gradient; `fmlab.ppo` is PPO proper, `fmlab.grpo` GRPO.  What every RL
method shares (sampling a scored rollout, log-probs of completions, the KL) is `fmlab.rollout`.

Simplifications of the simple policy gradient vs PPO (and why):
- one gradient step per batch of samples, so there is no probability ratio to clip (PPO's several epochs
  over each batch get more out of every sample; `fmlab.ppo` shows the difference);
- no value network: the baseline b is the mean return of the *other* samples of the same prompt
  (leave-one-out, as in RLOO, Ahmadian et al. 2024), which needs no extra model to train;
- no GAE (gamma = lambda = 1), no reward whitening, no entropy bonus.
And vs InstructGPT's pipeline: no SFT step (the starting policy is the pre-trained base model, which already
answers our short prompts in the world's language), and a simulated labeller (`fmlab.preference`).
The training loop is the course's one loop (`fmlab.train.train`): the batcher *samples from the current
policy* and scores the samples (`rollout.sample_rollout`); the loss is the KL-penalised policy gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable, Sequence

import torch

from . import preference
from .gpt import MiniGPT
from .params import device_of
from .reward import RewardModel
from .rollout import (Scorer, check_rollout_settings, rollout_stats, sample, sample_rollout, sequence_logprobs,
                      token_logprobs)
from .tokenizer import Tokenizer

__all__ = ["kl_penalised_returns", "leave_one_out_baseline", "RLConfig", "rollout_batches", "policy_gradient_loss",
           "optimal_policy_weights", "policy_report"]


def kl_penalised_returns(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    """G_t = score - beta * sum_{s >= t} (logp_s - ref_logp_s) over completion tokens; (B, T-1), 0 elsewhere."""
    kl = (logp - ref_logp) * mask                                           # per-token KL estimate
    kl_to_go = kl.flip(1).cumsum(1).flip(1)                                 # sum over s >= t
    return (score[:, None] - beta * kl_to_go) * mask


def leave_one_out_baseline(returns: torch.Tensor, group: int) -> torch.Tensor:
    """Per sample: the mean return of the other samples of its prompt (rows come in groups of `group`)."""
    if group < 2 or returns.numel() % group:
        raise ValueError(f"need >= 2 samples per prompt and a batch divisible by group={group}")
    r = returns.view(-1, group)
    return ((r.sum(1, keepdim=True) - r) / (group - 1)).view(-1)


@dataclass(frozen=True)
class RLConfig:
    beta: float = 0.1            # KL coefficient: reward given up per nat of KL to the reference
    group: int = 4               # samples per prompt (the leave-one-out baseline needs >= 2)
    max_new_tokens: int = 10     # completion length limit in tokens
    temperature: float = 1.0     # sampling temperature during RL (1 = the policy's own distribution)

    def __post_init__(self):
        check_rollout_settings(self, min_group=2, why="the leave-one-out baseline compares each sample with the "
                               "others of its prompt")


def _by_person(true_score: Callable[[str, str], float] | None):
    """A (person, text) judge such as `preference.rubric` as a `rollout.Scorer` of (prompt dict, text)."""
    return (lambda prompt, text: true_score(prompt["person"], text)) if true_score else None


def rollout_batches(policy: MiniGPT, ref_model: MiniGPT, reward_model: RewardModel | None, tokenizer: Tokenizer,
                    prompts: Sequence[dict], cfg: RLConfig = RLConfig(),
                    true_score: Callable[[str, str], float] | None = None, *,
                    score: Scorer | None = None) -> Callable:
    """A batcher for `train`: sample `batch_size` completions from the *current* policy and score them.

    Each batch carries the ``score`` it is trained on -- the reward model's, or, with ``reward_model=None``,
    ``score(prompt, text)`` (a checker program: the same optimizer on a verifiable reward) -- the reference
    log-probs and, if ``true_score(person, text)`` is given (e.g. `preference.rubric`), the ``true_score`` of every
    sample (logged).
    """
    if not prompts:
        raise ValueError("no prompts for RL")
    if (reward_model is None) == (score is None):
        raise ValueError("give the policy one reward: a reward_model, or reward_model=None and score=checker")
    by_person = _by_person(true_score)

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        return sample_rollout(policy, ref_model, tokenizer, prompts, batch_size, generator, group=cfg.group,
                              max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              reward_model=reward_model, score=score, true_score=by_person)[0]
    return get_batch


def policy_gradient_loss(cfg: RLConfig, log: list | None = None) -> Callable[[MiniGPT, dict], torch.Tensor]:
    """loss_fn for `train`: -sum_t (G_t - b) log pi(y_t), averaged over samples; appends
    `rollout.rollout_stats` (score, true_score, kl, length) to `log`."""

    def loss_fn(policy: MiniGPT, batch: dict) -> torch.Tensor:
        logp, mask = token_logprobs(policy, batch["tokens"], batch["prompt_len"], batch["length"])
        returns = kl_penalised_returns(batch["score"], logp.detach(), batch["ref_logp"], mask, cfg.beta)
        baseline = leave_one_out_baseline(_first(returns, mask), cfg.group)
        advantage = (returns - baseline[:, None]) * mask
        loss = -(advantage * logp).sum(1).mean()
        if log is not None:
            log.append(rollout_stats(batch, logp, mask))
        return loss
    return loss_fn


def _first(returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The return from the first completion token: the whole sequence's KL-penalised reward (B,)."""
    first = mask.float().argmax(1)
    return returns[torch.arange(returns.size(0), device=returns.device), first]


def optimal_policy_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The KL-regularised optimum pi* = pi_ref exp(r / beta) / Z, on K samples per prompt from pi_ref.

    rewards: (P, K), K samples of each of P prompts drawn from the reference policy.  Returns the weights
    (P, K) that pi* puts on each sample (rows sum to 1): uniform at beta -> inf, the best sample at beta -> 0.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return torch.softmax(rewards / beta, dim=-1)


@torch.no_grad()
def policy_report(policy: MiniGPT, ref_model: MiniGPT, reward_model: RewardModel, tokenizer: Tokenizer,
                  prompts: Sequence[dict], true_score: Callable[[str, str], float], cfg: RLConfig = RLConfig(),
                  seed: int = 0) -> dict:
    """Sample once per prompt and measure: the reward model's reward (mean, and per sample), the true score
    (mean, and per sample), KL to the reference, distinct-2, and the reference model's perplexity on the
    samples (how fluent they look to the starting policy)."""
    roll = sample(policy, tokenizer, prompts, cfg.max_new_tokens, cfg.temperature,
                  torch.Generator().manual_seed(seed))
    b = roll.batch(device_of(policy))
    ref_tok, mask = token_logprobs(ref_model, b["tokens"], b["prompt_len"], b["length"])
    pol_seq = sequence_logprobs(policy, b["tokens"], b["prompt_len"], b["length"])
    truth = [true_score(p["person"], t) for p, t in zip(prompts, roll.texts)]
    rewards = reward_model(b["tokens"], roll.length)                   # lengths checked on the host
    return {"reward": rewards.mean().item(), "rewards": rewards.tolist(),
            "true_score": sum(truth) / len(truth), "scores": truth, "texts": roll.texts,
            "kl": (pol_seq - ref_tok.sum(1)).mean().item(),
            "distinct_2": preference.distinct_n(roll.texts, 2),
            "ref_perplexity": math.exp(-ref_tok.sum().item() / mask.sum().item())}
