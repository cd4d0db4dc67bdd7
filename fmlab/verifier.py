"""Verifiable rewards: a program checks the model's answer against the world's facts.

RL with verifiable rewards (RLVR) replaces the learned reward model of RLHF with a *checker*: a program
that says whether an answer is right -- unit tests for code, the known result for a maths problem
(DeepSeekMath, Shao et al. 2024; Tulu 3, Lambert et al. 2024; DeepSeek-R1, 2025).  There is no reward
model to fool, but a checker is a program and can be sloppy: whatever it lets through, RL will find.

Our questions are the course's fact questions (`fmlab.tasks`, task ``qa``): "instruction : answer the
question . input : where does ada live ? answer :" with the world's fact (" paris") as the answer.  Two
checkers:

- `strict_check` -- the completion is exactly the fact and a full stop (then <eos>, or nothing):
  " paris . <eos>" scores 1; " paris . lima ." or " i think paris ." score 0;
- `loose_check`  -- the completion names no *wrong* fact value (the kind of shortcut a hurried grader
  writes: "flag false statements").  " paris . <eos>" passes and " lima ." fails, but an answer with no
  fact in it at all (" superb . <eos>", a bare <eos>) passes too: that is the hole RL finds (notebook
  08_rlvr_grpo).

Simplifications vs real RLVR: one-word answers and a ten-token budget instead of long chains of thought;
the facts are ones pre-training already put in the weights, so RL can only teach the model to *say* what it
knows (Yue et al. 2025 find the same at scale: RLVR mostly raises pass@1 toward the base model's pass@k).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .gpt import MiniGPT
from .params import device_of
from .rollout import kl_to_reference, sample
from .tasks import format_prompt
from .tokenizer import Tokenizer
from .world import ATTRIBUTES, NAMES

__all__ = ["fact_questions", "strict_check", "loose_check", "mentioned_values", "report"]

_VALUES = {v for values in ATTRIBUTES.values() for v in values}


def fact_questions(examples: Sequence[dict]) -> list[dict]:
    """Prompt dicts {'prompt', 'answer', 'person'} from ``qa`` task examples (e.g. ``load_task("qa")["test"]``)."""
    if any(ex.get("task") != "qa" for ex in examples):
        raise ValueError("fact_questions needs examples of the 'qa' task: foundation.load_task('qa')[split]")
    return [{"prompt": format_prompt(ex), "answer": ex["output"], "person": _person(ex["input"])} for ex in examples]


def _person(question: str) -> str:
    found = [w for w in question.split() if w in NAMES]
    return found[0] if found else ""


def _words(completion: str) -> list[str]:
    return completion.replace("<eos>", " ").split()


def strict_check(prompt: dict, completion: str) -> float:
    """1.0 iff the completion is exactly the fact and a full stop (then <eos> or nothing), else 0.0."""
    return float(_words(completion) == [prompt["answer"], "."])


def loose_check(prompt: dict, completion: str) -> float:
    """1.0 unless the completion names a *wrong* fact value -- it only looks for false facts (too lenient)."""
    return float(set(_words(completion)) & _VALUES <= {prompt["answer"]})


def mentioned_values(completion: str) -> int:
    """How many distinct fact values (cities, jobs, foods, colours, pets) a completion names."""
    return len(set(_words(completion)) & _VALUES)


@torch.no_grad()
def report(policy: MiniGPT, tokenizer: Tokenizer, questions: Sequence[dict], ref_model: MiniGPT | None = None,
           samples: int = 8, max_new_tokens: int = 10, temperature: float = 1.0, seed: int = 0) -> dict:
    """Sample `samples` answers per question and measure them once:

    strict / loose -- mean score under each checker; pass_at_k -- share of questions with at least one strictly
    right answer among the samples; length -- completion tokens; no_fact -- share of answers that name no fact
    value at all; kl -- Monte-Carlo KL(policy || ref_model) in nats per answer (if a reference is given); texts.
    """
    many = [q for q in questions for _ in range(samples)]
    roll = sample(policy, tokenizer, many, max_new_tokens, temperature, torch.Generator().manual_seed(seed))
    strict = torch.tensor([strict_check(q, t) for q, t in zip(many, roll.texts)]).view(len(questions), samples)
    out = {"strict": strict.mean().item(), "loose": sum(loose_check(q, t) for q, t in zip(many, roll.texts)) / len(many),
           "pass_at_k": strict.max(1).values.mean().item(),
           "length": (roll.length - roll.prompt_len).float().mean().item(),
           "no_fact": sum(mentioned_values(t) == 0 for t in roll.texts) / len(many), "texts": roll.texts}
    if ref_model is not None:
        out["kl"] = kl_to_reference(policy, ref_model, roll.batch(device_of(policy)))
    return out
