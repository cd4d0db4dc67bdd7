"""Direct Preference Optimisation: learn from preference pairs with no reward model and no sampling.

The KL-regularised RLHF objective  max E[r(x, y)] - beta KL(pi || pi_ref)  has a closed-form optimum,
pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x).  Solving it for r shows that a policy *implies* a
reward, r(x, y) = beta log(pi(y|x) / pi_ref(y|x)) + beta log Z(x).  Put that into the Bradley-Terry loss
of the reward model and Z cancels between the two completions of a pair:

    L_DPO = -log sigmoid( beta * [ (log pi(y_c|x) - log pi_ref(y_c|x)) - (log pi(y_r|x) - log pi_ref(y_r|x)) ] )

So the policy is trained directly on (x, y_chosen, y_rejected), like a classifier, with the frozen
reference policy's log-probabilities as the only extra cost.  When pi = pi_ref the loss is log 2.

Paper: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model".  TRL: ``DPOTrainer`` with ``loss_type="sigmoid"`` (``tests/test_dpo.py`` checks we agree).

Simplifications vs the paper: none in the loss; the reference log-probs are recomputed each step instead
of cached, and there is no SFT-on-chosen step before DPO (our starting policy generated the pairs).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .gpt import MiniGPT
from .rollout import sequence_logprobs

__all__ = ["dpo_loss", "implied_rewards", "dpo_loss_fn"]


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean DPO loss from sequence log-probs (B,) of the chosen/rejected completions under pi and pi_ref."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * logits).mean()


def implied_rewards(policy_logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """The reward a DPO policy implies, beta * log(pi / pi_ref) (up to a per-prompt constant)."""
    return beta * (policy_logp - ref_logp)


def dpo_loss_fn(ref_model: MiniGPT, beta: float) -> Callable[[MiniGPT, dict], torch.Tensor]:
    """loss_fn for `fmlab.train.train` on batches from `preference.pair_batches` (chosen rows first)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")

    def loss_fn(policy: MiniGPT, batch: dict) -> torch.Tensor:
        args = batch["tokens"], batch["prompt_len"], batch["length"]
        logp = sequence_logprobs(policy, *args)
        with torch.no_grad():
            ref = sequence_logprobs(ref_model, *args)
        half = logp.size(0) // 2
        return dpo_loss(logp[:half], logp[half:], ref[:half], ref[half:], beta)
    return loss_fn
