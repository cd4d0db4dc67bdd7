"""LLM-as-a-judge: a language model reads a prompt and two answers and says which is better.

A pairwise judge (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena") is shown

    instruction : which answer is better ? input : <prompt> answer 1 : <first> answer 2 : <second> answer :

and continues with " 1" or " 2".  Its verdict here is read from one forward pass:
P(first is better) = sigmoid(logit(" 1") - logit(" 2")) at the answer position.

Judges are biased.  **Position bias**: the verdict changes when the two answers swap places; Zheng et al.
measure *consistency* -- the share of pairs judged the same way in both orders -- and mitigate it by judging
both orders and keeping only consistent verdicts (or, as `both_orders` does, averaging the two
probabilities, which makes the verdict independent of the order by construction).

Our judge is the course's base model fine-tuned for a few seconds on preference pairs (`judge_examples`,
the answers' places drawn at random, so no position is favoured in the data), as fine-tuned judge models are
(PandaLM, JudgeLM, Prometheus).  Simplifications vs the paper: GPT-4 judged zero-shot from a written prompt
and explained itself before the verdict; a 0.9 M-parameter model cannot follow a rubric it was not trained
on, so ours learns the labeller's preferences from examples and answers with one token.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from .gpt import MiniGPT, ids_to_device
from .tasks import format_prompt
from .tokenizer import Tokenizer

__all__ = ["INSTRUCTION", "judge_example", "judge_examples", "prefers_first", "both_orders", "consistency"]

INSTRUCTION = "which answer is better ?"


def _clean(text: str) -> str:
    return text.replace("<eos>", " ").strip()


def judge_example(prompt: str, first: str, second: str, first_is_better: bool | None = None) -> dict:
    """An instruction example (`fmlab.tasks` format) asking which of two answers to `prompt` is better."""
    return {"task": "judge", "instruction": INSTRUCTION,
            "input": f"{prompt} answer 1 : {_clean(first)} answer 2 : {_clean(second)}",
            "output": "" if first_is_better is None else ("1" if first_is_better else "2")}


def judge_examples(pairs: dict, seed: int = 0) -> list[dict]:
    """Training examples from preference pairs (`preference.make_pairs`); the chosen answer goes first or
    second with probability 1/2 each, so the data favours neither position."""
    rng = random.Random(seed)
    out = []
    for q, chosen, rejected in zip(pairs["prompts"], pairs["chosen_text"], pairs["rejected_text"]):
        chosen_first = rng.random() < 0.5
        first, second = (chosen, rejected) if chosen_first else (rejected, chosen)
        out.append(judge_example(q["prompt"], first, second, chosen_first))
    return out


@torch.no_grad()
def prefers_first(judge: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[str], firsts: Sequence[str],
                  seconds: Sequence[str]) -> torch.Tensor:
    """P(first is better) (N,) on the CPU: sigmoid(logit(' 1') - logit(' 2')) after each judge prompt."""
    one, two = tokenizer.encode(" 1")[0], tokenizer.encode(" 2")[0]
    rows = [tokenizer.encode(format_prompt(judge_example(p, a, b))) for p, a, b in zip(prompts, firsts, seconds)]
    if max(len(r) for r in rows) > judge.cfg.block_size:
        raise ValueError(f"a judge prompt is longer than the context ({judge.cfg.block_size} tokens): shorten the answers")
    out = torch.empty(len(rows))
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(rows):                       # MiniGPT has no padding mask: batch equal lengths
        by_len.setdefault(len(r), []).append(i)
    for idx in by_len.values():
        logits = judge(ids_to_device(torch.tensor([rows[i] for i in idx]), judge))[:, -1].float()   # (B, vocab)
        out[idx] = torch.sigmoid(logits[:, one] - logits[:, two]).cpu()
    return out


def both_orders(judge: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[str], answers_a: Sequence[str],
                answers_b: Sequence[str]) -> torch.Tensor:
    """P(a is better) (N,), averaged over showing a first and showing a second: the same whatever the order."""
    a_first = prefers_first(judge, tokenizer, prompts, answers_a, answers_b)
    a_second = 1 - prefers_first(judge, tokenizer, prompts, answers_b, answers_a)
    return (a_first + a_second) / 2


def consistency(p_ab: torch.Tensor, p_ba: torch.Tensor) -> float:
    """Share of pairs with the same verdict in both orders: p_ab = P(a better | a first), p_ba = P(b better | b first)."""
    return ((p_ab > 0.5) == (p_ba < 0.5)).float().mean().item()
