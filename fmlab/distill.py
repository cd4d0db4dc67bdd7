"""Knowledge distillation: a small *student* model learns to behave like a large *teacher*.

Word-level (soft-target) distillation, Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network".  At every answer position the teacher's logits z_t and the student's logits z_s are turned into
distributions at a temperature T, p = softmax(z / T), and the student minimises

    L = (1 - w) * T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )  +  w * CE( y, softmax(z_s) )

- T > 1 flattens both distributions, so the small probabilities the teacher gives to the *wrong* answers --
  which ones it finds plausible, and how plausible: its "dark knowledge" -- weigh in the loss instead of
  rounding to zero.  As T grows the soft term approaches matching the logits themselves (Hinton et al. 2.1).
- T^2: the soft term's gradients scale as 1/T^2, so multiplying by T^2 keeps their size when T changes.
- w (`label_weight`) mixes in the ordinary cross-entropy with the hard labels y (T = 1), when labels exist.
When the student equals the teacher and w = 0 the loss is 0.

Sequence-level distillation, Kim & Rush 2016, "Sequence-Level Knowledge Distillation": the teacher *writes*
answers (greedy decoding) for prompts that have no labels, and the student is fine-tuned on those answers
with the ordinary next-token loss.  It needs only the teacher's text, not its logits -- which is what
managed services do (Amazon Bedrock Model Distillation: a teacher model answers your prompts, and a smaller
student of the same family is fine-tuned on the answers).  `teacher_answers` and `label_with_teacher`.

Simplifications vs the papers: the loss is taken on the answer tokens only (targets != -100), like the
course's instruction loss, and averaged over those positions; the teacher's logits are computed once per
example and stored (`soft_target_batches`, "offline" distillation; Hinton et al. run the teacher alongside,
which `distillation_loss_fn(teacher=...)` also does -- `tests/test_distill.py` checks both give the same
loss); Kim & Rush decode with beam search (beam 5), we decode greedily, which for answers of a word or two
is what a beam would almost always pick.  Teacher and student share the tokenizer: word-level distillation
compares two distributions over one vocabulary.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import compute
from .batches import IGNORE, Batcher, instruction_rows, pad_batch
from .gpt import MiniGPT, ids_to_device
from .params import device_of, evaluating, freeze
from .tasks import format_prompt
from .tokenizer import Tokenizer

__all__ = ["distillation_loss", "soft_target_batches", "distillation_loss_fn", "teacher_answers", "label_with_teacher",
           "wrong_answer_agreement", "generation_speed"]


def _check_settings(temperature: float, label_weight: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; Hinton et al. use 1-20")
    if not 0 <= label_weight <= 1:
        raise ValueError(f"label_weight must be in [0, 1], got {label_weight}")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = 2.0, label_weight: float = 0.5) -> torch.Tensor:
    """(1 - w) T^2 KL(p_teacher,T || p_student,T) + w CE(labels), mean over positions whose target is not -100.

    student_logits, teacher_logits: (B, T, V); targets: (B, T) next-token ids, -100 where there is no loss.
    label_weight w in [0, 1]: 0 = soft targets only (no labels needed), 1 = hard labels only.
    """
    _check_settings(temperature, label_weight)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: do the two models share the tokenizer?")
    keep = targets != IGNORE                                                   # (B, T)
    s, t = student_logits[keep].float(), teacher_logits[keep].float()          # (N, V): answer positions only
    log_p_s, log_p_t = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    soft = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean() * temperature ** 2    # T^2 KL, mean over N
    hard = F.cross_entropy(s, targets[keep]) if label_weight else s.new_zeros(())
    return (1 - label_weight) * soft + label_weight * hard


def soft_target_batches(teacher: MiniGPT, tokenizer: Tokenizer, examples: Sequence[dict],
                        block_size: int) -> Batcher:
    """Instruction batches that also carry the teacher's logits ("teacher_logits", (B, T, V), zero where the
    target is -100), computed once for every example: offline distillation.

    Rows are drawn exactly as `batches.instruction_batches` draws them (same generator, same order), so a
    hard-label run and a distillation run with the same seed see the same examples in the same steps.
    """
    rows = instruction_rows(tokenizer, examples, block_size)
    device = device_of(teacher)
    soft: list[torch.Tensor] = []                                  # per row: (answer positions, V)
    with evaluating(teacher):
        for start in range(0, len(rows), 64):
            batch = pad_batch(rows[start:start + 64], tokenizer.pad_id)
            logits = teacher(batch["tokens"].to(device)).float().cpu()          # (b, T, V)
            soft += [logits[b][batch["targets"][b] != IGNORE] for b in range(logits.size(0))]

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        idx = torch.randint(0, len(rows), (batch_size,), generator=generator).tolist()
        batch = pad_batch([rows[i] for i in idx], tokenizer.pad_id)
        keep = batch["targets"] != IGNORE
        teacher_logits = torch.zeros(*batch["targets"].shape, soft[0].size(-1))
        teacher_logits[keep] = torch.cat([soft[i] for i in idx])               # row-major, as keep orders them
        return {**batch, "teacher_logits": teacher_logits}
    return get_batch


def distillation_loss_fn(temperature: float = 2.0, label_weight: float = 0.5, teacher: MiniGPT | None = None
                         ) -> Callable[[MiniGPT, dict], torch.Tensor]:
    """loss_fn for `fmlab.train.train`.

    The teacher's logits come from the batch (`soft_target_batches`), or, when `teacher` is given, from the
    teacher reading each batch as it comes (online distillation: one teacher forward pass per step).
    """
    _check_settings(temperature, label_weight)          # now, not at the first training step
    if teacher is not None:
        freeze(teacher)

    def loss_fn(student: MiniGPT, batch: dict) -> torch.Tensor:
        if teacher is None:
            teacher_logits = batch["teacher_logits"]
        else:
            with torch.no_grad():
                teacher_logits = teacher(batch["tokens"])
        return distillation_loss(student(batch["tokens"]), teacher_logits, batch["targets"], temperature,
                                 label_weight)
    return loss_fn


def teacher_answers(teacher: MiniGPT, tokenizer: Tokenizer, examples: Sequence[dict],
                    max_new_tokens: int = 8) -> list[str]:
    """The teacher's greedy answer (text up to <eos>, without the leading space) to each example's prompt.

    Prompts of equal length are decoded together in one batch, so no padding enters the model.
    """
    prompts = [tokenizer.encode(format_prompt(ex)) for ex in examples]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)].append(i)
    out: list[str] = [""] * len(examples)
    with evaluating(teacher):
        for length, rows in by_length.items():
            room = min(max_new_tokens, teacher.cfg.block_size - length)
            tokens = ids_to_device(torch.tensor([prompts[i] for i in rows]), teacher)        # (B, length)
            new = teacher.generate(tokens, room, stop_token=tokenizer.eos_id)[:, length:].tolist()
            for i, ids in zip(rows, new):
                ids = ids[:ids.index(tokenizer.eos_id)] if tokenizer.eos_id in ids else ids
                out[i] = tokenizer.decode(ids).strip()
    return out


def label_with_teacher(teacher: MiniGPT, tokenizer: Tokenizer, prompts: Sequence[dict],
                       max_new_tokens: int = 8) -> list[dict]:
    """Copies of `prompts` (instruction examples; any "output" is ignored) whose output is the teacher's answer.

    This is the transfer set of sequence-level distillation: no human labels, only the teacher's text.
    Prompts the teacher answers with nothing are dropped.
    """
    answers = teacher_answers(teacher, tokenizer, prompts, max_new_tokens)
    return [{**ex, "output": a, "labelled_by": "teacher"} for ex, a in zip(prompts, answers) if a]


@torch.no_grad()
def wrong_answer_agreement(student: MiniGPT, teacher: MiniGPT, tokenizer: Tokenizer, examples: Sequence[dict],
                           k: int = 10) -> float:
    """Does the student rank the *wrong* answers as the teacher does?  (How much dark knowledge it copied.)

    At the first answer position of each prompt: of the teacher's k most likely tokens other than its top
    choice, the share that are also among the student's k most likely tokens other than that top choice;
    averaged over the examples.  1.0: same second choices; about k / vocabulary size: unrelated.
    """
    device = device_of(teacher)
    prompts = [tokenizer.encode(format_prompt(ex)) for ex in examples]
    tokens = pad_batch([(p, p) for p in prompts], tokenizer.pad_id)["tokens"].to(device)   # right-padded
    last = torch.tensor([len(p) - 1 for p in prompts], device=device)   # causal: padding after it is unseen
    rows = torch.arange(len(prompts), device=device)
    z_t, z_s = teacher(tokens)[rows, last].float(), student(tokens)[rows, last].float()   # (N, V)
    top = z_t.argmax(-1)
    z_t[rows, top], z_s[rows, top] = -float("inf"), -float("inf")        # leave the answer itself out
    shared = [len(set(a) & set(b)) for a, b in zip(z_t.topk(k).indices.tolist(), z_s.topk(k).indices.tolist())]
    return sum(shared) / (k * len(shared))


def generation_speed(model: MiniGPT, tokenizer: Tokenizer, examples: Sequence[dict], new_tokens: int = 2,
                     repeats: int = 3) -> dict[str, float]:
    """Serving cost of greedy answers: counted work per answer, and latency and throughput on this machine.

    Every answer is exactly `new_tokens` tokens (no early stop), so every model does the same work.
    flops_per_answer: FLOPs counted (`compute.count_flops`) while answering every prompt one at a time,
    divided by the number of prompts -- the same on every machine.  weight_bytes_per_token: the bytes of
    weights read for each generated token (`compute.weight_bytes`), what bounds serving speed at 7B scale.
    ms_per_answer: one prompt at a time, as a chat request is served.  tokens_per_s: answer tokens per
    second when the prompts of the most common length are answered as one batch (no padding needed).
    Each timing is the best of `repeats`: the run least disturbed by other programs on the machine.  Timings
    are observations of this machine, not claims: at our size they are bound by kernel launches and Python.
    """
    with evaluating(model):
        return _generation_speed(model, tokenizer, examples, new_tokens, repeats)


def _generation_speed(model: MiniGPT, tokenizer: Tokenizer, examples: Sequence[dict], new_tokens: int,
                      repeats: int) -> dict[str, float]:
    device = device_of(model)
    prompts = [tokenizer.encode(format_prompt(ex)) for ex in examples]

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return min(times)

    singles = [ids_to_device(torch.tensor([p]), model) for p in prompts]
    with compute.count_flops() as work:
        [model.generate(p, new_tokens) for p in singles]
    one = best(lambda: [model.generate(p, new_tokens) for p in singles])
    length = max(set(map(len, prompts)), key=[len(p) for p in prompts].count)
    batch = ids_to_device(torch.tensor([p for p in prompts if len(p) == length]), model)     # (B, length)
    batched = best(lambda: model.generate(batch, new_tokens))
    return {"flops_per_answer": work.flops / len(prompts), "weight_bytes_per_token": compute.weight_bytes(model),
            "ms_per_answer": 1000 * one / len(prompts), "tokens_per_s": batch.size(0) * new_tokens / batched}
