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

This module holds what every RL method of the course shares (log-probs of completions, sampling a scored
rollout, the KL) and the *simple* policy gradient.  `fmlab.ppo` is PPO proper, `fmlab.grpo` GRPO.

Simplifications of the simple policy gradient vs PPO (and why):
- one gradient step per batch of samples, so there is no probability ratio to clip (PPO's several epochs
  over each batch get more out of every sample; `fmlab.ppo` shows the difference);
- no value network: the baseline b is the mean return of the *other* samples of the same prompt
  (leave-one-out, as in RLOO, Ahmadian et al. 2024), which needs no extra model to train;
- no GAE (gamma = lambda = 1), no reward whitening, no entropy bonus.
And vs InstructGPT's pipeline: no SFT step (the starting policy is the pre-trained base model, which already
answers our short prompts in the world's language), and a simulated labeller (`fmlab.preference`).
The training loop is the course's one loop (`fmlab.train.train`): the batcher *samples from the current
policy* and scores the samples; the loss is the KL-penalised policy gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import preference
from .gpt import MiniGPT
from .reward import RewardModel
from .tokenizer import Tokenizer

__all__ = ["completion_mask", "token_logprobs", "logprobs_from_logits", "sequence_logprobs", "kl_penalised_returns",
           "leave_one_out_baseline", "RLConfig", "check_rollout_settings", "sample_rollout", "rollout_batches",
           "policy_gradient_loss", "freeze",
           "kl_to_reference", "optimal_policy_weights", "policy_report"]


def completion_mask(tokens: torch.Tensor, prompt_len: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """(B, T-1) bool: position t predicts tokens[:, t+1]; True where that token belongs to the completion."""
    t = torch.arange(tokens.size(1) - 1, device=tokens.device)[None]       # (1, T-1)
    return (t >= prompt_len[:, None] - 1) & (t < length[:, None] - 1)


def token_logprobs(model: MiniGPT, tokens: torch.Tensor, prompt_len: torch.Tensor,
                   length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(token | prefix) for every next token (B, T-1), zero outside the completion; and the mask.

    The inputs move to the model's device, so a CPU batch works with a GPU model."""
    device = _device(model)
    tokens, prompt_len, length = tokens.to(device), prompt_len.to(device), length.to(device)
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


def check_rollout_settings(cfg, min_group: int, why: str) -> None:
    """Refuse RL settings that cannot work, naming the fix (shared by RLConfig, PPOConfig, GRPOConfig)."""
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


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Evaluation mode and no gradients: for the reference policy and the trained reward model."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sample_rollout(policy: MiniGPT, ref_model: MiniGPT, reward_model: RewardModel | None, tok: Tokenizer,
                   prompts: Sequence[dict], cfg, batch_size: int, generator: torch.Generator,
                   true_score: Callable[[str, str], float] | None = None) -> tuple[dict, preference.Rollout]:
    """`batch_size` completions from the *current* policy: batch_size // cfg.group prompts, each cfg.group times.

    Returns the batch (every tensor on the policy's device): tokens, prompt_len, length, the reward model's
    score (zeros without one), the reference log-probs per token, and the true score of each sample (if
    `true_score(person, text)` is given); and the Rollout (texts, prompts).
    """
    if not prompts:
        raise ValueError("no prompts for RL")
    if batch_size % cfg.group:
        raise ValueError(f"batch_size {batch_size} must be a multiple of group={cfg.group}")
    idx = torch.randint(0, len(prompts), (batch_size // cfg.group,), generator=generator).tolist()
    chosen = [prompts[i] for i in idx for _ in range(cfg.group)]
    roll = preference.sample(policy, tok, chosen, cfg.max_new_tokens, cfg.temperature, generator)
    device = _device(policy)
    b = {k: v.to(device) for k, v in roll.batch().items()}
    b["score"] = (reward_model(b["tokens"], b["length"]).float() if reward_model is not None
                  else torch.zeros(batch_size, device=device))
    b["ref_logp"] = token_logprobs(ref_model, b["tokens"], b["prompt_len"], b["length"])[0]
    truth = [true_score(p["person"], t) for p, t in zip(chosen, roll.texts)] if true_score else [0.0] * len(chosen)
    b["true_score"] = torch.tensor(truth, device=device)
    return b, roll


def rollout_batches(policy: MiniGPT, ref_model: MiniGPT, reward_model: RewardModel, tok: Tokenizer,
                    prompts: Sequence[dict], cfg: RLConfig = RLConfig(),
                    true_score: Callable[[str, str], float] | None = None) -> Callable:
    """A batcher for `train`: sample `batch_size` completions from the *current* policy and score them.

    Each batch carries the reward-model score, the reference log-probs and, if given, the true
    (labeller's) score of every sample, for the loss and for logging.
    """
    if not prompts:
        raise ValueError("no prompts for RL")

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        return sample_rollout(policy, ref_model, reward_model, tok, prompts, cfg, batch_size, generator, true_score)[0]
    return get_batch


def policy_gradient_loss(cfg: RLConfig, log: list | None = None) -> Callable[[MiniGPT, dict], torch.Tensor]:
    """loss_fn for `train`: -sum_t (G_t - b) log pi(y_t), averaged over samples; appends stats to `log`."""

    def loss_fn(policy: MiniGPT, batch: dict) -> torch.Tensor:
        logp, mask = token_logprobs(policy, batch["tokens"], batch["prompt_len"], batch["length"])
        returns = kl_penalised_returns(batch["score"], logp.detach(), batch["ref_logp"], mask, cfg.beta)
        baseline = leave_one_out_baseline(_first(returns, mask), cfg.group)
        advantage = (returns - baseline[:, None]) * mask
        loss = -(advantage * logp).sum(1).mean()
        if log is not None:
            kl = ((logp.detach() - batch["ref_logp"]) * mask).sum(1)
            log.append({"reward": batch["score"].mean().item(), "kl": kl.mean().item(),
                        "true_score": batch["true_score"].mean().item(),
                        "length": mask.sum(1).float().mean().item()})
        return loss
    return loss_fn


def _first(returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The return from the first completion token: the whole sequence's KL-penalised reward (B,)."""
    first = mask.float().argmax(1)
    return returns[torch.arange(returns.size(0), device=returns.device), first]


@torch.no_grad()
def kl_to_reference(policy: MiniGPT, ref_model: MiniGPT, batch: dict) -> float:
    """Monte-Carlo KL(pi || pi_ref) in nats per completion, on samples `batch` drawn from `policy`."""
    args = batch["tokens"], batch["prompt_len"], batch["length"]
    return (sequence_logprobs(policy, *args) - sequence_logprobs(ref_model, *args)).mean().item()


def optimal_policy_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The KL-regularised optimum pi* = pi_ref exp(r / beta) / Z, on K samples per prompt from pi_ref.

    rewards: (P, K), K samples of each of P prompts drawn from the reference policy.  Returns the weights
    (P, K) that pi* puts on each sample (rows sum to 1): uniform at beta -> inf, the best sample at beta -> 0.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return torch.softmax(rewards / beta, dim=-1)


@torch.no_grad()
def policy_report(policy: MiniGPT, ref_model: MiniGPT, reward_model: RewardModel, tok: Tokenizer,
                  prompts: Sequence[dict], true_score: Callable[[str, str], float], cfg: RLConfig = RLConfig(),
                  seed: int = 0) -> dict:
    """Sample once per prompt and measure: learned reward (mean, and per sample), true score (mean, and per
    sample), KL to the reference, distinct-2, and the reference model's perplexity on the samples (how
    fluent they look to the starting policy)."""
    roll = preference.sample(policy, tok, prompts, cfg.max_new_tokens, cfg.temperature,
                             torch.Generator().manual_seed(seed))
    device = next(policy.parameters()).device
    b = {k: v.to(device) for k, v in roll.batch().items()}
    ref_tok, mask = token_logprobs(ref_model, b["tokens"], b["prompt_len"], b["length"])
    pol_seq = sequence_logprobs(policy, b["tokens"], b["prompt_len"], b["length"])
    truth = [true_score(p["person"], t) for p, t in zip(prompts, roll.texts)]
    rewards = reward_model(b["tokens"], b["length"])
    return {"reward": rewards.mean().item(), "rewards": rewards.tolist(),
            "true_score": sum(truth) / len(truth), "scores": truth, "texts": roll.texts,
            "kl": (pol_seq - ref_tok.sum(1)).mean().item(),
            "distinct_2": preference.distinct_n(roll.texts, 2),
            "ref_perplexity": math.exp(-ref_tok.sum().item() / mask.sum().item())}
