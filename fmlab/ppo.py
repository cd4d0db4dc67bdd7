"""Proximal Policy Optimisation for RLHF: a value head, GAE, a clipped probability ratio, several epochs.

The objective is RLHF's (`fmlab.rlhf`): reward-model score minus beta * KL to the frozen reference, the KL
paid per token.  PPO (Schulman et al. 2017) as used by InstructGPT (Ouyang et al. 2022) and TRL's
``PPOTrainer`` optimises it in rounds.  Each round:

1. **Roll out** -- sample completions y ~ pi_old(.|x) from the current policy and record, per completion
   token t: log pi_old(y_t), log pi_ref(y_t), the value V_old(s_t) of the state before y_t, and the reward

       r_t = -beta * (log pi_old(y_t) - log pi_ref(y_t))   (+ the reward model's score r(x, y) at the last token)

2. **Advantages by GAE** (generalised advantage estimation, Schulman et al. 2016):

       delta_t = r_t + gamma * V_old(s_{t+1}) - V_old(s_t)          (V = 0 after the last token)
       A_t     = delta_t + gamma * lambda * A_{t+1}
       R_t     = A_t + V_old(s_t)                                   (the value head's target)

   and whiten A over the batch (mean 0, std 1).
3. **Several epochs** over the stored rollout, each an optimizer step on

       ratio_t = pi(y_t) / pi_old(y_t)
       L_policy = mean_t max( -A_t * ratio_t,  -A_t * clip(ratio_t, 1 - eps, 1 + eps) )
       L_value  = 0.5 * mean_t max( (V(s_t) - R_t)^2,  (clip(V(s_t), V_old - eps_v, V_old + eps_v) - R_t)^2 )
       L        = L_policy + vf_coef * L_value

   The ratio is 1 in the first epoch; later epochs move the policy away from pi_old, and the clip removes
   the incentive to move a token's probability more than a factor 1 +- eps in the direction its advantage
   favours (the *clip fraction* is the share of tokens where that happened).

How this fits the course's one training loop (`fmlab.train.train`): `rollout_batches` is a batcher that
samples a fresh rollout, computes everything in steps 1-2 without gradients, and then *replays that same
stored rollout* for `epochs` consecutive calls before sampling again.  So ``TrainConfig(steps=n * epochs)``
runs n PPO rounds of `epochs` optimizer steps each, and `ppo_loss` is an ordinary ``loss_fn(model, batch)``.

Paper: Schulman et al. 2017 ("Proximal Policy Optimization Algorithms"); InstructGPT: Ouyang et al. 2022;
TRL's ``PPOTrainer`` (defaults: 4 epochs, eps = eps_v = 0.2, vf_coef 0.1, gamma 1, lambda 0.95).
``tests/test_trl_crosscheck.py`` checks the clipped policy loss against TRL's clipped-ratio code.

Simplifications vs InstructGPT / TRL (and why):
- the value head is a linear layer on the policy's own last hidden state (one network, as in TRL's classic
  ``AutoModelForCausalLMWithValueHead``); InstructGPT trains a separate value network initialised from the
  reward model -- a fourth model in memory, which would double the cost of every step here;
- one minibatch per epoch (the whole rollout; TRL's default ``num_mini_batches=1``), no reward whitening,
  no entropy bonus, and no pre-training-gradient mix (InstructGPT's "PPO-ptx").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .gpt import MiniGPT
from .params import device_of, evaluating
from .reward import RewardModel
from .rollout import check_rollout_settings, logprobs_from_logits, rollout_stats, sample_rollout
from .tokenizer import Tokenizer

__all__ = ["PPOConfig", "PolicyWithValue", "per_token_rewards", "gae", "whiten", "clipped_policy_loss",
           "clipped_value_loss", "rollout_batches", "ppo_loss"]


@dataclass(frozen=True)
class PPOConfig:
    beta: float = 0.1            # KL coefficient: reward given up per nat of KL to the reference (TRL: kl_coef)
    group: int = 4               # samples per drawn prompt in a rollout: PPO's value head needs no group (1
                                 # works); 4 draws rollouts shaped like RLConfig's, so the two methods compare
    max_new_tokens: int = 10     # completion length limit in tokens
    temperature: float = 1.0     # sampling temperature of the rollouts
    epochs: int = 4              # optimizer steps on each stored rollout (TRL: num_ppo_epochs)
    clip: float = 0.2            # eps: the ratio pi / pi_old is clipped to [1 - eps, 1 + eps] (TRL: cliprange)
    value_clip: float = 0.2      # eps_v: the new value may move this far from V_old (TRL: cliprange_value)
    vf_coef: float = 0.1         # weight of the value loss in the total loss (TRL: vf_coef)
    gamma: float = 1.0           # discount per token; 1 = the final score counts fully for every token
    lam: float = 0.95            # GAE lambda: 1 = Monte-Carlo returns (high variance), 0 = one-step TD

    def __post_init__(self):
        check_rollout_settings(self, min_group=1, why="each prompt needs at least one sample")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"PPOConfig: epochs must be a positive integer, got {self.epochs!r}; TRL uses 4")
        if not 0 < self.clip < 1 or not 0 < self.value_clip:
            raise ValueError(f"PPOConfig: clip must be in (0, 1) and value_clip > 0, got {self.clip}, "
                             f"{self.value_clip}; PPO's usual value is 0.2")
        if self.vf_coef < 0 or not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"PPOConfig: need vf_coef >= 0 and gamma, lam in [0, 1], got {self.vf_coef}, "
                             f"{self.gamma}, {self.lam}")


class PolicyWithValue(nn.Module):
    """The policy and a value head on its last hidden state: forward(tokens) -> (logits (B,T,V), values (B,T)).

    The value head starts at zero (V = 0 everywhere), like a LoRA B matrix: it learns from the first rollouts.
    `policy` stays a plain MiniGPT, so it samples, evaluates and saves like any other model.
    """

    def __init__(self, policy: MiniGPT):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(policy.cfg.n_embd, 1, device=device_of(policy))
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.policy.ln_f(self.policy.residual_stream(tokens)[-1])    # (B, T, C), one pass
        return self.policy.head(hidden), self.value_head(hidden).squeeze(-1).float()


def per_token_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                      mask: torch.Tensor, beta: float) -> torch.Tensor:
    """r_t = -beta (log pi_old - log pi_ref) on completion tokens, plus the score on the last one; (B, T-1)."""
    rewards = -beta * (logp - ref_logp) * mask
    last = mask.size(1) - 1 - mask.flip(1).float().argmax(1)                 # index of the last completion token
    rewards[torch.arange(mask.size(0), device=mask.device), last] += score
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages A_t and value targets R_t = A_t + V_t (B, T-1), zero outside the completion."""
    rewards, values, m = rewards * mask, values * mask, mask.float()
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.size(1))):          # V = 0 and A = 0 after the last completion token
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv) * m[:, t]
        next_adv, next_value = adv[:, t], values[:, t]
    return adv, (adv + values) * m


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the masked entries (unbiased std, as TRL's masked_whiten); zero elsewhere."""
    m = mask.float()
    n = m.sum()
    if n < 2:
        raise ValueError("whiten needs at least two completion tokens")
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / (n - 1)
    return (x - mean) * torch.rsqrt(var + 1e-8) * m


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1)


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, averaged over completion tokens; and the clip fraction (share of tokens clipped)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    return _masked_mean(torch.max(unclipped, clipped), mask), _masked_mean((clipped > unclipped).float(), mask)


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, clip: float) -> torch.Tensor:
    """0.5 * mean_t max((V - R)^2, (V_clipped - R)^2), V_clipped = V_old + clip(V - V_old, -clip, clip)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * _masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def rollout_batches(agent: PolicyWithValue, ref_model: MiniGPT, reward_model: RewardModel, tokenizer: Tokenizer,
                    prompts: Sequence[dict], cfg: PPOConfig = PPOConfig(),
                    true_score: Callable[[str, str], float] | None = None) -> Callable:
    """A batcher for `train` that samples a rollout, computes its advantages, and replays it `cfg.epochs` times.

    Batches use `fmlab.rollout`'s vocabulary: ``score`` from the reward model (trained on), ``true_score`` from
    ``true_score(person, text)`` if given (e.g. `preference.rubric`; logged only).

    Calls 1..epochs return the same stored rollout (with ``epoch`` = 0..epochs-1); the next call samples
    a fresh one from the policy as it is then.  Use ``TrainConfig(steps=rounds * cfg.epochs)``.
    """
    state = {"batch": None, "calls": 0}

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        epoch = state["calls"] % cfg.epochs
        if epoch == 0:
            state["batch"] = _rollout(agent, ref_model, reward_model, tokenizer, prompts, cfg, batch_size,
                                      generator, true_score)
        state["calls"] += 1
        return {**state["batch"], "epoch": epoch}          # an int: stays on the host
    return get_batch


@torch.no_grad()
def _rollout(agent, ref_model, reward_model, tokenizer, prompts, cfg, batch_size, generator, true_score) -> dict:
    by_person = (lambda prompt, text: true_score(prompt["person"], text)) if true_score else None
    with evaluating(agent):
        b, _ = sample_rollout(agent.policy, ref_model, tokenizer, prompts, batch_size, generator, group=cfg.group,
                              max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              reward_model=reward_model, true_score=by_person)
        logits, values = agent(b["tokens"][:, :-1])
        old_logp, mask = logprobs_from_logits(logits, b["tokens"], b["prompt_len"], b["length"])
    rewards = per_token_rewards(b["score"], old_logp, b["ref_logp"], mask, cfg.beta)
    adv, returns = gae(rewards, values * mask, mask, cfg.gamma, cfg.lam)
    return {**b, "old_logp": old_logp, "old_values": values * mask, "advantages": whiten(adv, mask),
            "returns": returns}


def ppo_loss(cfg: PPOConfig, log: list | None = None) -> Callable[[PolicyWithValue, dict], torch.Tensor]:
    """loss_fn for `train` on batches from `rollout_batches`: L_policy + vf_coef * L_value; `log` gets
    `rollout.rollout_stats` and epoch, clip_fraction, value_loss, approx_kl."""

    def loss_fn(agent: PolicyWithValue, batch: dict) -> torch.Tensor:
        logits, values = agent(batch["tokens"][:, :-1])
        logp, mask = logprobs_from_logits(logits, batch["tokens"], batch["prompt_len"], batch["length"])
        policy_loss, clip_frac = clipped_policy_loss(logp, batch["old_logp"], batch["advantages"], mask, cfg.clip)
        value_loss = clipped_value_loss(values * mask, batch["old_values"], batch["returns"], mask, cfg.value_clip)
        if log is not None:                                          # the KL is the rollout's policy's
            approx_kl = 0.5 * _masked_mean((logp.detach() - batch["old_logp"]) ** 2, mask)
            stats = rollout_stats(batch, batch["old_logp"], mask, clip_fraction=clip_frac, value_loss=value_loss,
                                  approx_kl=approx_kl)
            ppo_only = {k: stats.pop(k) for k in ("clip_fraction", "value_loss", "approx_kl")}
            log.append({**stats, "epoch": batch["epoch"], **ppo_only})
        return policy_loss + cfg.vf_coef * value_loss
    return loss_fn
