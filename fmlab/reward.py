"""A reward model: a language model body with a scalar head, trained on human preference pairs.

The reward model r(x, y) reads a prompt and completion and returns one number.  It is trained so that the
completion people chose scores higher than the one they rejected, with the Bradley-Terry loss

    L_RM = -log sigmoid( r(x, y_chosen) - r(x, y_rejected) )

(Bradley & Terry 1952; Christiano et al. 2017; Ouyang et al. 2022).  Only differences of rewards are
learned, so the scale's zero point is arbitrary.

Architecture (as in InstructGPT and TRL's ``AutoModelForSequenceClassification``): the transformer body of
the policy (here a copy of MiniGPT, so it starts with everything pre-training taught it), the language
model head replaced by a linear layer to one number, read at the last token of the completion.

Before RL, `normalise_` shifts and scales the reward so the starting policy's answers score mean 0, std 1
(InstructGPT shifts its reward model so labeller demonstrations score 0 on average; the scale is ours), so
a KL coefficient beta reads as "reward standard deviations per nat".

Simplifications vs the paper: a 0.9 M-parameter body instead of 6 B; one pair per comparison instead of
all K-choose-2 pairs of a ranking of 4-9 answers; a few dozen steps on pairs drawn with replacement
(InstructGPT: one epoch over all comparisons).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gpt import MiniGPT
from .params import device_of, evaluating

__all__ = ["RewardModel", "bradley_terry_loss", "reward_loss", "pairwise_accuracy", "score"]


class RewardModel(nn.Module):
    """MiniGPT body + a scalar head; forward(tokens, length) -> rewards (B,) read at token length-1.

    After training, `normalise_` shifts and scales the output so the starting policy's answers score mean 0,
    std 1 (as InstructGPT normalises its reward model before RL): the KL coefficient beta is then in units of
    "reward standard deviations per nat".
    """

    def __init__(self, base_model: MiniGPT):
        super().__init__()
        self.body = copy.deepcopy(base_model)                  # never shares weights with the policy
        self.body.head = nn.Identity()                         # drop the LM head: we want hidden states
        device = device_of(base_model)                         # every part on the base model's device
        self.score_head = nn.Linear(base_model.cfg.n_embd, 1, device=device)
        nn.init.normal_(self.score_head.weight, std=0.02)
        nn.init.zeros_(self.score_head.bias)
        self.register_buffer("offset", torch.zeros((), device=device))   # subtracted from the raw reward
        self.register_buffer("scale", torch.ones((), device=device))     # then divided by this

    def forward(self, tokens: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        device = self.offset.device                             # inputs follow the model, wherever they come from
        if bool(((length < 1) | (length > tokens.size(1))).any()):   # one read (free where length is on the host)
            raise ValueError("each length must lie in [1, tokens.size(1)]: it marks the last real token")
        tokens, length = tokens.to(device), length.to(device)
        hidden = self.body(tokens)                             # (B, T, C): body.head is the identity
        last = hidden[torch.arange(tokens.size(0), device=tokens.device), length - 1]   # (B, C)
        return (self.score_head(last).squeeze(-1).float() - self.offset) / self.scale   # (B,), fp32

    @torch.no_grad()
    def normalise_(self, batch: dict) -> "RewardModel":
        """Set offset and scale so the rewards of `batch` (e.g. the starting policy's samples) have mean 0, std 1."""
        self.offset.zero_()
        self.scale.fill_(1.0)
        r = score(self, batch)
        if r.numel() < 2:
            raise ValueError("normalise_ needs at least two sequences")
        self.offset.fill_(r.mean())
        self.scale.fill_(r.std().clamp_min(1e-6))
        return self


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected), in fp32 (a reward difference in fp16 loses precision)."""
    return -F.logsigmoid(r_chosen.float() - r_rejected.float()).mean()


def _split(model: RewardModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = model(batch["tokens"], batch["length"])
    half = rewards.size(0) // 2
    return rewards[:half], rewards[half:]                      # chosen rows come first (preference.pair_batch)


def reward_loss(model: RewardModel, batch: dict) -> torch.Tensor:
    """loss_fn for `fmlab.train.train` on a batch from `preference.pair_batches`."""
    return bradley_terry_loss(*_split(model, batch))


def pairwise_accuracy(model: RewardModel, batch: dict) -> float:
    """Share of pairs where the chosen completion gets the higher reward."""
    with evaluating(model):
        chosen, rejected = _split(model, batch)
    return (chosen > rejected).float().mean().item()


def score(model: RewardModel, batch: dict) -> torch.Tensor:
    """Rewards (N,) of a batch of sequences {'tokens', 'length'} (e.g. `rollout.Rollout.batch()`)."""
    with evaluating(model):
        return model(batch["tokens"], batch["length"])
