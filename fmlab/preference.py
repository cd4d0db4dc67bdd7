"""Human feedback as data: prompts, a simulated labeller, and which of two completions a person prefers.

RLHF (Ouyang et al. 2022, "Training language models to follow instructions with human feedback") starts
from a policy that already writes plausible text.  For each prompt x it samples two completions y_a, y_b,
and a person says which is better.  The resulting pairs (x, y_chosen, y_rejected) are the whole signal:
no one writes the ideal answer, people only *compare*.

Our setting: the prompts ask about one of the world's 20 people ("tell me about ada ."), and the policy
answers in at most a dozen tokens.  A *simulated labeller* stands in for people when nobody is clicking.
Its rubric, the kind a labelling guideline states:

- **on-topic**   -- the answer talks about the person asked about (share of its sentences that name that
  person and no one else; a toki dictionary line is off-topic);
- **polite**     -- friendly words (smiled, happy, delicious ...) are better than unfriendly ones
  (awful, frowned, sad ...);
- **concise**    -- the answer ends cleanly instead of trailing off mid-sentence at the length limit;
- **fluent**     -- its sentences read like the language (`corpus.grammatical_share`).

Like people, it is noisy: it prefers y_a with probability sigmoid((score_a - score_b) / noise), so close
calls are often decided either way (Bradley-Terry choice model).

Simplifications vs real RLHF data: one labeller with a fixed rubric (real data has many labellers who
disagree), pairs instead of rankings of 4-9 completions, and tiny prompts and answers so that sampling,
reward modelling and RL all fit in a couple of CPU minutes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .batches import pad_sequences
from .corpus import grammatical_share
from .gpt import MiniGPT
from .rollout import Rollout, sample
from .tokenizer import Tokenizer
from .world import NAMES, NEGATIVE, POSITIVE

__all__ = ["PROMPT_TEMPLATES", "make_prompts", "LabellerConfig", "rubric", "rubric_parts", "label_pairs", "ties",
           "make_pairs", "sample_pairs", "pair_batch", "pair_batches", "distinct_n", "win_rate", "win_rate_vs_start"]

PROMPT_TEMPLATES = ("tell me about {p} .", "who is {p} ?", "what do you know about {p} ?")
FRIENDLY = set(POSITIVE) | {"smiled", "happy", "more", "good", "lovely"}
UNFRIENDLY = set(NEGATIVE) | {"frowned", "sad", "rest"}


def make_prompts(people: Sequence[str], templates: Sequence[str] = PROMPT_TEMPLATES) -> list[dict]:
    """One prompt dict {'prompt', 'person'} per (person, template)."""
    unknown = [p for p in people if p not in NAMES]
    if unknown:
        raise ValueError(f"unknown people {unknown}; choose from world.NAMES")
    return [{"prompt": t.format(p=p), "person": p} for p in people for t in templates]


# --- the simulated labeller ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LabellerConfig:
    on_topic: float = 1.0      # weight of "talks about the person asked about" (share of sentences, 0..1)
    polite: float = 0.5        # weight of (friendly - unfriendly words), clipped to [-1, 1]
    concise: float = 0.5       # weight of "ends cleanly" (0/1): a sentence end or <eos>, not cut off
    fluent: float = 0.5        # weight of the share of grammatical sentences (0..1)
    noise: float = 0.25        # Bradley-Terry temperature of the choice; 0 = always follows the rubric
    seed: int = 0              # seeds the noisy choices


_SENT = re.compile(r"[^.?]+[.?]")


def rubric_parts(person: str, text: str) -> dict[str, float]:
    """The four rubric criteria of one completion (see the module docstring)."""
    body = text.replace("<eos>", "").strip()
    sentences = [s.strip() for s in _SENT.findall(body)]
    names = [set(re.findall(r"\w+", s)) & set(NAMES) for s in sentences]
    about = [n == {person} and "toki" not in s for n, s in zip(names, sentences)]
    words = re.findall(r"\w+", body)
    return {"on_topic": sum(about) / len(sentences) if sentences else 0.0,
            "polite": max(-1.0, min(1.0, float(sum(w in FRIENDLY for w in words) - sum(w in UNFRIENDLY for w in words)))),
            "concise": float(bool(sentences) and (text.endswith("<eos>") or body.endswith((".", "?")))),
            "fluent": grammatical_share(body) if sentences else 0.0}


def rubric(person: str, text: str, cfg: LabellerConfig = LabellerConfig()) -> float:
    """The labeller's score of one completion: the weighted sum of its rubric criteria."""
    parts = rubric_parts(person, text)
    return sum(getattr(cfg, k) * v for k, v in parts.items())


def label_pairs(persons: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str],
                cfg: LabellerConfig = LabellerConfig()) -> torch.Tensor:
    """Noisy choices (N,) bool: True where the labeller prefers a over b."""
    gen = torch.Generator().manual_seed(cfg.seed)
    diff = torch.tensor([rubric(p, a, cfg) - rubric(p, b, cfg) for p, a, b in zip(persons, texts_a, texts_b)])
    p_a = torch.sigmoid(diff / cfg.noise) if cfg.noise > 0 else (diff > 0).float() + 0.5 * (diff == 0).float()
    return torch.rand(len(diff), generator=gen) < p_a


def ties(persons: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str],
         cfg: LabellerConfig = LabellerConfig()) -> torch.Tensor:
    """(N,) bool: pairs the rubric scores equally -- the labeller would tick "about the same"."""
    return torch.tensor([rubric(p, a, cfg) == rubric(p, b, cfg) for p, a, b in zip(persons, texts_a, texts_b)])


def make_pairs(ra: Rollout, rb: Rollout, prefers_a: torch.Tensor, keep: torch.Tensor | None = None) -> dict:
    """Preference pairs from two rollouts of the same prompts: {'chosen', 'rejected'} row batches, prompts.

    keep: optional (N,) bool, e.g. False where the labeller said "about the same" (see `ties`).
    """
    if ra.prompts != rb.prompts or len(prefers_a) != len(ra.prompts):
        raise ValueError("make_pairs needs two rollouts of the same prompts and one choice per prompt")
    keep = [i for i in range(len(ra.texts)) if ra.texts[i] != rb.texts[i]      # identical twins carry no signal
            and (keep is None or bool(keep[i]))]
    rows_a, rows_b = _rows(ra), _rows(rb)
    ch = [rows_a[i] if prefers_a[i] else rows_b[i] for i in keep]
    rj = [rows_b[i] if prefers_a[i] else rows_a[i] for i in keep]
    plen = [int(ra.prompt_len[i]) for i in keep]
    return {"chosen": ch, "rejected": rj, "prompt_len": plen, "prompts": [ra.prompts[i] for i in keep],
            "chosen_text": [ra.texts[i] if prefers_a[i] else rb.texts[i] for i in keep],
            "rejected_text": [rb.texts[i] if prefers_a[i] else ra.texts[i] for i in keep]}


def _rows(r: Rollout) -> list[list[int]]:
    return [row[:n] for row, n in zip(r.tokens.tolist(), r.length.tolist())]


def sample_pairs(policy: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[dict], per_prompt: int, seed: int,
                 max_new_tokens: int = 10) -> dict:
    """Notebook 08's preference data: two answers to each prompt (`per_prompt` times over), sampled from
    `policy`; the simulated labeller (seeded with `seed`) picks one; pairs it rates equal are dropped."""
    gen = torch.Generator().manual_seed(seed)
    many = [p for p in prompts for _ in range(per_prompt)]
    a = sample(policy, tokenizer, many, max_new_tokens=max_new_tokens, generator=gen)
    b = sample(policy, tokenizer, many, max_new_tokens=max_new_tokens, generator=gen)
    people = [p["person"] for p in many]
    labeller = LabellerConfig(seed=seed)
    same = ties(people, a.texts, b.texts, labeller)
    return make_pairs(a, b, label_pairs(people, a.texts, b.texts, labeller), keep=~same)


def pair_batch(pairs: dict, idx: Sequence[int], pad_id: int) -> dict:
    """Chosen rows then rejected rows in one padded batch: tokens (2B, T); the first B are chosen."""
    rows = [pairs["chosen"][i] for i in idx] + [pairs["rejected"][i] for i in idx]
    plen = [pairs["prompt_len"][i] for i in idx] * 2
    return pad_sequences(rows, plen, pad_id)


def pair_batches(pairs: dict, pad_id: int) -> Callable[[int, torch.Generator], dict]:
    """A batcher for `fmlab.train.train` drawing random preference pairs."""
    n = len(pairs["chosen"])
    if n == 0:
        raise ValueError("no preference pairs to train on")

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        return pair_batch(pairs, torch.randint(0, n, (batch_size,), generator=generator).tolist(), pad_id)
    return get_batch


# --- measuring outputs --------------------------------------------------------------------------------
def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a set of completions: 1 = never repeats, near 0 = one answer."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [t.replace("<eos>", "").split()]
             for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def win_rate(scores: Sequence[float], baseline_scores: Sequence[float]) -> float:
    """Share of paired comparisons won against the baseline (a tie counts one half)."""
    a, b = torch.as_tensor(scores, dtype=torch.float), torch.as_tensor(baseline_scores, dtype=torch.float)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError("win_rate needs two equally long, non-empty lists of scores")
    return ((a > b).float() + 0.5 * (a == b).float()).mean().item()


def win_rate_vs_start(policy: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[dict], samples: int,
                      seed: int) -> Callable[[], float]:
    """A measure to call during training: how often the labeller's rubric prefers the policy's answer to the
    starting policy's answer to the same prompt (`samples` answers each, ties count one half).  The starting
    answers are sampled now; before training the measure is exactly 0.5 (same seed, same answers)."""
    held_out = [p for p in prompts for _ in range(samples)]

    def rubric_scores() -> list[float]:
        roll = sample(policy, tokenizer, held_out, 10, generator=torch.Generator().manual_seed(seed + 7))
        return [rubric(p["person"], t) for p, t in zip(held_out, roll.texts)]

    start = rubric_scores()
    return lambda: win_rate(rubric_scores(), start)
