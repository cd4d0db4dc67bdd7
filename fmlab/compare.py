"""Every training method of the course on one base model, one harness, one table (notebook 09).

Exam guides end with a table of fine-tuning methods -- what each updates, what it costs, what it is for, what
it risks.  This module *measures* that table.  `run(method, base_model, tok, base)` takes a fresh copy of the
shipped base model, trains it with one method and returns one `Row`:

    cost      trainable parameters (and % of the deployed model); the models the method holds in memory while
              it trains (a reference policy, a reward model, a teacher count too); the memory of one training
              step on a common batch of 16 examples (`memory.measure`: weights of every model held +
              gradients + optimizer state + activations); seconds per optimizer step, the budget (steps x
              batch) and the total seconds (the training loop, plus training done to prepare the method:
              a reward model, a teacher, a student's pre-training)
    benefit   the method's own target metric before and after, in its own unit: accuracy, win rate against
              the starting policy, or fact accuracy under a checker -- never mixed on one axis
    risk      general ability of the model *as it is deployed*: held-out perplexity of the pre-training text
              and fact recall -- for LoRA with the adapter on, for ReFT with its edit on the prompt's first and
              last tokens, for a distilled student the student itself
    data      what the method needed

One small frozen dataclass per method (`FullFineTuning`, `Lora`, `Reft`, `Multitask`, `DomainAdaptation`,
`Distillation`, `Rlhf`, `Dpo`, `Grpo`), each with a `setup` that builds a `Run`.  No registry, no dispatch by
name: the notebook lists the methods it wants.  Recipes are those the method notebooks settled on, at budgets
a CPU affords (each method's docstring says where they differ).

Simplifications: one seed per call (the notebook repeats calls for a spread); memory is counted on CPU without
the temporaries (`memory.measure` reports CUDA's peak when a GPU runs it).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from . import (batches, distill, dpo, evaluate, foundation, grpo, lora, memory, ppo, preference, recipes, reft,
               reward, rlhf, verifier, world)
from .gpt import GPTConfig, MiniGPT
from .tokenizer import Tokenizer
from .train import TrainConfig, default_loss, train

__all__ = ["Run", "Row", "General", "general_ability", "general_reference", "run", "by_metric", "FullFineTuning",
           "Lora", "Reft", "Multitask", "DomainAdaptation", "Distillation", "Rlhf", "Dpo", "Grpo"]


# --- what a method hands the harness, and what the harness returns ------------------------------------
@dataclass
class Run:
    """One method, ready to train: everything `run` needs, nothing about how it was built."""
    model: nn.Module                                  # what `train` updates
    batches: batches.Batcher                          # its training batches
    cfg: TrainConfig                                  # its recipe; cfg.steps x cfg.batch_size is the budget
    metric: str                                       # the kind of target: "accuracy", "win rate", ...
    target: str                                       # what exactly is measured, e.g. "sentiment accuracy (test)"
    score: Callable[[], float]                        # the target metric of `model` now
    deployed: nn.Module                               # the model as a user runs it (general ability is measured on it)
    data: str                                         # the data the method needed, in words
    loss_fn: Callable[[nn.Module, dict], torch.Tensor] = default_loss
    held: dict[str, nn.Module] = field(default_factory=dict)   # other models in memory while training
    extra_seconds: float = 0.0                        # training done to prepare the method (reward model, teacher)
    recall_forward: Callable | None = None            # how fact recall runs the deployed model (ReFT: edit the prompt)
    finish: Callable[[], float] | None = None         # a second stage after the loop (domain: the labels); its seconds
    memory_batches: batches.Batcher | None = None     # batches for the memory step if drawing from `batches` would
                                                      # disturb training (PPO replays each rollout `epochs` times)
    notes: dict = field(default_factory=dict)         # method-specific measurements for the notebook


@dataclass(frozen=True)
class General:
    """General ability of a deployed model: what every method is compared against."""
    perplexity: float        # held-out pre-training text
    fact_recall: float       # share of the 100 fact cloze probes answered


@dataclass(frozen=True)
class Row:
    method: str
    trainable: int             # parameters that receive gradients
    trainable_pct: float       # ... as a % of the deployed model's parameters
    models_held: int           # models in memory while training (the trained one included)
    memory: memory.Memory      # one training step: weights of every model held, gradients, optimizer, activations
    step_s: float              # seconds per optimizer step (the training loop only)
    steps: int                 # optimizer steps
    batch_size: int            # examples (or sequences, pairs, rollouts) per step
    train_s: float             # total seconds: the loop + training done to prepare the method
    metric: str                # the kind of target metric
    target: str                # the target metric, exactly
    before: float              # target metric of the base model
    after: float               # ... after training
    perplexity: float          # held-out general-text perplexity of the deployed model
    fact_recall: float         # fact recall of the deployed model
    perplexity_change: float   # perplexity / base perplexity - 1   (> 0: general text got harder)
    recall_drop: float         # base fact recall - fact recall     (> 0: facts forgotten)
    data: str                  # what the method needed
    base_identical: bool       # every base-model weight bit-identical after training
    notes: dict                # method-specific measurements

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        mem = d.pop("memory")
        d["memory_kib"] = sum(v for k, v in mem.items() if k != "temporary") / 2**10
        return d


# --- the harness --------------------------------------------------------------------------------------
def general_ability(model: nn.Module, tok: Tokenizer, recall_forward: Callable | None = None,
                    max_windows: int = 100) -> General:
    """Held-out pre-training perplexity and fact recall of a deployed language model."""
    stream = foundation.corpus_stream("pretrain", "val")
    probes = world.fact_cloze(foundation.load_world())
    rows = [(tok.encode(p["prompt"]), tok.encode(" " + p["answer"])) for p in probes]
    recall = evaluate.greedy_match(model, rows, tok.pad_id, forward=recall_forward).float().mean().item()
    return General(perplexity=evaluate.perplexity(model, stream, max_windows=max_windows), fact_recall=recall)


def general_reference(base_model: MiniGPT, tok: Tokenizer) -> General:
    """The base model's general ability, measured once and passed to every `run`."""
    return general_ability(base_model, tok)


def _fresh(base_model: MiniGPT) -> MiniGPT:
    return copy.deepcopy(base_model).requires_grad_(True)


def _bytes(model: nn.Module) -> int:
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    return sum(t.numel() * t.element_size() for t in tensors)


def _base_identical(model: nn.Module, base_model: MiniGPT) -> bool:
    """True when every weight of the base model is still in `model`, bit for bit (adapters may sit beside)."""
    state = {k.replace(".base.", ".").removeprefix("base_model."): v for k, v in model.state_dict().items()}
    return all(k in state and torch.equal(state[k], v) for k, v in base_model.state_dict().items())


def run(method, base_model: MiniGPT, tok: Tokenizer, base: General, steps: int | None = None,
        seed: int = 0, memory_batch: int = 16) -> Row:
    """Train a fresh copy of `base_model` with `method` and measure it (the shipped model is not touched).

    method: one of this module's method dataclasses (anything with a ``name`` and ``setup(base_model, tok,
    steps, seed) -> Run``).  base: `general_reference(base_model, tok)`, measured once.  steps: the budget
    (default: the method's recipe).  memory_batch: examples in the batch the step memory is measured on.
    """
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1 (optimizer steps of the budget), got {steps}")
    torch.manual_seed(seed)
    r = method.setup(base_model, tok, steps or method.cfg.steps, seed)
    params = {id(p): p for p in r.model.parameters()}.values()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    deployed_total = sum(p.numel() for p in {id(p): p for p in r.deployed.parameters()}.values())
    before = r.score()
    batch = (r.memory_batches or r.batches)(memory_batch, torch.Generator().manual_seed(seed + 1))
    mem = memory.measure(r.model, batch, loss_fn=r.loss_fn)
    mem = dataclasses.replace(mem, weights=mem.weights + sum(_bytes(m) for m in r.held.values()))
    history = train(r.model, r.batches, dataclasses.replace(r.cfg, seed=seed, progress=False), loss_fn=r.loss_fn)
    loop_s = float(history["seconds"].iloc[-1])
    extra = r.extra_seconds + (r.finish() if r.finish else 0.0)
    r.model.eval()
    after = r.score()
    general = general_ability(r.deployed, tok, r.recall_forward)
    return Row(method=method.name, trainable=trainable, trainable_pct=100 * trainable / deployed_total,
               models_held=1 + len(r.held), memory=mem, step_s=loop_s / r.cfg.steps, steps=r.cfg.steps,
               batch_size=r.cfg.batch_size, train_s=loop_s + extra, metric=r.metric, target=r.target,
               before=before, after=after, perplexity=general.perplexity, fact_recall=general.fact_recall,
               perplexity_change=general.perplexity / base.perplexity - 1,
               recall_drop=base.fact_recall - general.fact_recall, data=r.data,
               base_identical=_base_identical(r.model, base_model), notes=r.notes)


def by_metric(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows grouped by the kind of their target metric: one plot panel each (accuracy and win rate never share
    an axis -- 0.6 accuracy and a 0.6 win rate mean different things)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.metric, []).append(row)
    return groups


def _budget(cfg: TrainConfig, steps: int) -> TrainConfig:
    """The recipe at another budget: warm-up scaled with the steps."""
    return dataclasses.replace(cfg, steps=steps, warmup=min(steps - 1, round(cfg.warmup * steps / cfg.steps)))


def _n(x: int) -> str:
    return f"{x:,}".replace(",", " ")


def _sentiment(tok: Tokenizer, block: int):
    data = foundation.load_task(recipes.SENTIMENT_TASK)
    return data, batches.instruction_batches(tok, data["train"], block)


# --- supervised fine-tuning: full, LoRA, ReFT, multitask ------------------------------------------------
@dataclass(frozen=True)
class FullFineTuning:
    """Every weight trains on one labelled task (notebook 02's recipe, `recipes.SENTIMENT_FT`)."""
    name: str = "full fine-tuning"
    cfg: TrainConfig = recipes.SENTIMENT_FT

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data, train_batches = _sentiment(tok, base_model.cfg.block_size)
        model = _fresh(base_model)
        return Run(model=model, batches=train_batches, cfg=_budget(self.cfg, steps),
                   metric="accuracy", target="sentiment accuracy (test)",
                   score=lambda: evaluate.accuracy(model, tok, data["test"]), deployed=model,
                   data=f"{_n(len(data['train']))} labelled examples")


@dataclass(frozen=True)
class Lora:
    """Frozen base + rank-r adapters on the attention projections (notebook 04, `recipes.LORA_FT`)."""
    name: str = "LoRA"
    rank: int = 8
    alpha: float = 16.0
    cfg: TrainConfig = recipes.LORA_FT

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data, train_batches = _sentiment(tok, base_model.cfg.block_size)
        model = lora.apply(copy.deepcopy(base_model), lora.LoraConfig(rank=self.rank, alpha=self.alpha, seed=seed))
        return Run(model=model, batches=train_batches, cfg=_budget(self.cfg, steps),
                   metric="accuracy", target="sentiment accuracy (test)",
                   score=lambda: evaluate.accuracy(model, tok, data["test"]), deployed=model,
                   data=f"{_n(len(data['train']))} labelled examples")


class _ReftDeployed(nn.Module):
    """A ReFT model as a user runs it: the edit on the first and last tokens of whatever it reads."""

    def __init__(self, model: reft.ReftModel):
        super().__init__()
        self.reft_model, self.cfg = model, model.base_model.cfg

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((tokens.size(0),), tokens.size(1), device=tokens.device)
        return self.reft_model(tokens, reft.prompt_positions(lengths, self.reft_model.cfg.first, self.reft_model.cfg.last))


@dataclass(frozen=True)
class Reft:
    """Frozen base + LoReFT edits of the prompt's hidden states (notebook 05: pyreft's setting, `recipes.REFT_FT`)."""
    name: str = "ReFT"
    config: reft.ReftConfig = reft.ReftConfig()       # every layer, first and last prompt token, rank 4
    cfg: TrainConfig = recipes.REFT_FT

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data, train_batches = _sentiment(tok, base_model.cfg.block_size)
        model = reft.apply(copy.deepcopy(base_model), dataclasses.replace(self.config, seed=seed))
        cfg = model.cfg
        recall = lambda tokens, targets: model(tokens, reft.positions_from_targets(targets, cfg.first, cfg.last))  # noqa: E731
        return Run(model=model, batches=train_batches, cfg=_budget(self.cfg, steps),
                   metric="accuracy", target="sentiment accuracy (test)",
                   score=lambda: reft.accuracy(model, tok, data["test"]), deployed=_ReftDeployed(model),
                   loss_fn=reft.reft_loss, recall_forward=recall,
                   data=f"{_n(len(data['train']))} labelled examples")


@dataclass(frozen=True)
class Multitask:
    """Every weight trains on a mixture of instruction tasks (notebook 06's mixture, same lr as `SENTIMENT_FT`)."""
    name: str = "multitask fine-tuning"
    tasks: tuple[str, ...] = ("translate", "qa", "sentiment")
    weights: tuple[float, ...] = (100, 30, 40)                # notebook 06: steps each task needs alone
    test_size: int = 100                                      # test examples per task
    cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, steps=170, warmup=17)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data = {t: foundation.load_task(t) for t in self.tasks}
        model = _fresh(base_model)
        mixture = batches.mix([batches.instruction_batches(tok, data[t]["train"], model.cfg.block_size)
                               for t in self.tasks], list(self.weights), pad_id=tok.pad_id)
        tests = {t: data[t]["test"][:self.test_size] for t in self.tasks}
        n = sum(len(data[t]["train"]) for t in self.tasks)
        return Run(model=model, batches=mixture, cfg=_budget(self.cfg, steps),
                   metric="accuracy", target=f"mean accuracy over {len(self.tasks)} tasks (test)",
                   score=lambda: sum(evaluate.accuracy(model, tok, tests[t]) for t in tests) / len(tests),
                   deployed=model, data=f"{_n(n)} labelled examples of {len(self.tasks)} tasks")


# --- domain adaptation: continued pre-training, then a few labels -------------------------------------
@dataclass(frozen=True)
class DomainAdaptation:
    """Continued pre-training on unlabelled station notes, then triage fine-tuning on a few labelled logs
    (notebook 07; fewer continued pre-training steps here, to fit the capstone's budget).

    The budget (`cfg`) is the continued pre-training; the labelled fine-tuning afterwards (`label_cfg`,
    `labels` logs) is counted in the total seconds.  The target is triage accuracy on logs of unseen
    (part, symptom) pairs; notes record the same labels fine-tuned from the base model, without the notes.
    """
    name: str = "domain adaptation"
    labels: int = 64
    cfg: TrainConfig = TrainConfig(steps=80, batch_size=32, lr=1e-3, warmup=8)
    label_cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, steps=60, warmup=6)
    compare_base: bool = True                            # also fine-tune the base on the same labels (notes)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        triage = foundation.load_task("triage")
        stream, val = foundation.corpus_stream("station", "train"), foundation.corpus_stream("station", "val")
        model = _fresh(base_model)
        labelled = batches.instruction_batches(tok, triage["train"][:self.labels], model.cfg.block_size)
        test = triage["test"][:200]
        label_cfg = dataclasses.replace(self.label_cfg, seed=seed, progress=False)
        notes = {"station perplexity, base": evaluate.perplexity(base_model, val, max_windows=30)}
        if self.compare_base:
            plain = _fresh(base_model)
            train(plain, labelled, label_cfg)
            notes[f"base + the same {self.labels} labels, no notes"] = evaluate.accuracy(plain, tok, test)

        def finish() -> float:           # after continued pre-training: the few labelled logs
            notes["station perplexity, adapted"] = evaluate.perplexity(model, val, max_windows=30)
            return float(train(model, labelled, label_cfg)["seconds"].iloc[-1])

        return Run(model=model, batches=batches.lm_batches(stream, model.cfg.block_size),
                   cfg=_budget(self.cfg, steps), metric="accuracy",
                   target=f"triage accuracy, {self.labels} labelled logs (test)",
                   score=lambda: evaluate.accuracy(model, tok, test), deployed=model, finish=finish, notes=notes,
                   data=f"{_n(stream.numel())} tokens of unlabelled notes + {self.labels} labelled logs")


# --- distillation ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distillation:
    """A small student (2 blocks x width 64, pre-trained on the same corpus) learns the fine-tuned teacher's soft
    targets (notebook 10).  Teacher = the base model fine-tuned with `recipes.SENTIMENT_FT`; both the teacher's
    fine-tuning and the student's pre-training are counted in the total seconds (notebook 10 pre-trains the
    student for 300 steps; the same here).  Notes record both models' serving cost (`distill.generation_speed`):
    counted FLOPs per answer, and milliseconds per answer on this machine.

    Measured (seeds 0-2, one core): with 150 pre-training steps and 250 distillation steps the student sometimes
    collapses to one label (accuracy 0.48 on seed 2); 200 + 300 reached 1.0 on every seed -- the student's
    pre-training is what the distillation stands on."""
    name: str = "distillation"
    temperature: float = 4.0                           # notebook 10's T
    label_weight: float = 0.5
    student: GPTConfig | None = None                   # default: the base's config with 2 blocks x width 64
    student_pretrain: TrainConfig = dataclasses.replace(foundation.PRETRAIN, steps=300, warmup=30)
    cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, steps=200, warmup=20)
    speed_prompts: int = 40                            # test prompts answered one at a time to time serving

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data, train_batches = _sentiment(tok, base_model.cfg.block_size)
        teacher = _fresh(base_model)
        h = train(teacher, train_batches, dataclasses.replace(recipes.SENTIMENT_FT, seed=seed, progress=False))
        teacher.eval().requires_grad_(False)
        spent = float(h["seconds"].iloc[-1])
        cfg = self.student or dataclasses.replace(base_model.cfg, n_layer=2, n_embd=64)   # notebook 10's student
        torch.manual_seed(seed)
        student = MiniGPT(cfg).to(next(base_model.parameters()).device)
        t0 = time.perf_counter()
        train(student, batches.lm_batches(foundation.corpus_stream("pretrain"), cfg.block_size),
              dataclasses.replace(self.student_pretrain, seed=seed, progress=False))
        spent += time.perf_counter() - t0
        soft = distill.soft_target_batches(teacher, tok, data["train"], cfg.block_size)
        speed = {name: distill.generation_speed(m, tok, data["test"][:self.speed_prompts])
                 for name, m in (("teacher", teacher), ("student", student))}      # serving cost: architecture only
        student.train()
        notes = {"teacher accuracy (test)": evaluate.accuracy(teacher, tok, data["test"]),
                 "teacher parameters": teacher.num_params(), "student parameters": student.num_params(),
                 **{f"{name} FLOPs per answer": s["flops_per_answer"] for name, s in speed.items()},
                 **{f"{name} ms per answer": s["ms_per_answer"] for name, s in speed.items()}}
        return Run(model=student, batches=soft, cfg=_budget(self.cfg, steps), metric="accuracy",
                   target="sentiment accuracy (test)", score=lambda: evaluate.accuracy(student, tok, data["test"]),
                   deployed=student, loss_fn=distill.distillation_loss_fn(self.temperature, self.label_weight),
                   held={"teacher": teacher}, extra_seconds=spent, notes=notes,
                   data=f"{_n(len(data['train']))} labelled examples + the teacher's outputs")


# --- learning from feedback: RLHF (reward model + PPO), DPO, GRPO with a checker -----------------------
def _pairs(policy: MiniGPT, tok: Tokenizer, prompts: list[dict], per_prompt: int, seed: int) -> dict:
    """Notebook 08's preference data: two answers per prompt, the simulated labeller picks one, ties dropped."""
    gen = torch.Generator().manual_seed(seed)
    many = [p for p in prompts for _ in range(per_prompt)]
    a = preference.sample(policy, tok, many, max_new_tokens=10, generator=gen)
    b = preference.sample(policy, tok, many, max_new_tokens=10, generator=gen)
    people = [p["person"] for p in many]
    labeller = preference.LabellerConfig(seed=seed)
    same = preference.ties(people, a.texts, b.texts, labeller)
    return preference.make_pairs(a, b, preference.label_pairs(people, a.texts, b.texts, labeller), keep=~same)


def _win_rate_vs_start(policy: MiniGPT, tok: Tokenizer, prompts: list[dict], samples: int, seed: int):
    """score() for preference methods: the labeller's rubric prefers the policy's answer to the starting policy's
    answer to the same held-out prompt (ties count one half).  Before training it is exactly 0.5: the start
    samples the same answers (same seed) and ties with itself."""
    held_out = [p for p in prompts for _ in range(samples)]

    def rubric_scores(model: MiniGPT) -> list[float]:
        roll = preference.sample(model, tok, held_out, 10, generator=torch.Generator().manual_seed(seed + 7))
        return [preference.rubric(p["person"], t) for p, t in zip(held_out, roll.texts)]

    start = rubric_scores(policy)
    return lambda: preference.win_rate(rubric_scores(policy), start)


def _people_prompts() -> tuple[list[dict], list[dict]]:
    """Notebook 08's prompts: 15 people to train on, 5 held-out people to judge the win rate on."""
    return preference.make_prompts(world.NAMES[:15]), preference.make_prompts(world.NAMES[15:])


@dataclass(frozen=True)
class Rlhf:
    """RLHF as InstructGPT runs its last two steps (notebook 08): preference pairs from the starting policy, judged
    by the simulated labeller -> a reward model (Bradley-Terry) -> PPO against it on a KL leash (value head, GAE,
    clipped ratio, `epochs` optimizer steps per rollout).  Held while training: the frozen reference policy and the
    reward model, besides the policy with its value head -- three models (InstructGPT adds a separate value network,
    a fourth).  Sampling the pairs and training the reward model count in the total seconds.

    Budget vs notebook 08 (20 rounds of 32 answers, reward model 40 steps on 8 pairs per prompt): 12 rounds of 16
    answers, reward model 30 steps on 6 pairs per prompt -- under 10 CPU seconds in all.  Target: win rate against the
    starting policy on the 5 held-out people, judged by the labeller's rubric (0.5 = no better)."""
    name: str = "RLHF (reward model + PPO)"
    pairs_per_prompt: int = 6                         # answer pairs sampled per training prompt for the labeller
    reward_cfg: TrainConfig = TrainConfig(steps=30, batch_size=32, lr=3e-4, warmup=3)
    ppo_cfg: ppo.PPOConfig = ppo.PPOConfig(beta=0.3, group=4, epochs=4)
    eval_samples: int = 16                            # answers per held-out prompt for the win rate
    cfg: TrainConfig = TrainConfig(steps=48, batch_size=16, lr=3e-4, warmup=5, weight_decay=0.0)  # rounds x epochs

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        train_prompts, test_prompts = _people_prompts()
        t0 = time.perf_counter()
        pairs = _pairs(base_model, tok, train_prompts, self.pairs_per_prompt, seed)
        reward_model = reward.RewardModel(base_model).requires_grad_(True)
        train(reward_model, preference.pair_batches(pairs, tok.pad_id),
              dataclasses.replace(self.reward_cfg, seed=seed, progress=False), loss_fn=reward.reward_loss)
        device = next(base_model.parameters()).device
        everything = preference.pair_batch(pairs, range(len(pairs["chosen"])), tok.pad_id)
        rlhf.freeze(reward_model).normalise_({k: v.to(device) for k, v in everything.items()})
        spent = time.perf_counter() - t0
        ref_model = rlhf.freeze(copy.deepcopy(base_model))
        policy = _fresh(base_model)
        agent = ppo.PolicyWithValue(policy)
        def make():          # one batcher for training, another for the memory step (it would shift the epochs)
            return ppo.rollout_batches(agent, ref_model, reward_model, tok, train_prompts, self.ppo_cfg)
        return Run(model=agent, batches=make(), memory_batches=make(), cfg=_budget(self.cfg, steps),
                   metric="win rate", target="win rate vs the starting policy (held-out people)",
                   score=_win_rate_vs_start(policy, tok, test_prompts, self.eval_samples, seed), deployed=policy,
                   loss_fn=ppo.ppo_loss(self.ppo_cfg), held={"reference": ref_model, "reward model": reward_model},
                   extra_seconds=spent, notes={"preference pairs": len(pairs["chosen"])},
                   data=f"{len(pairs['chosen'])} preference pairs (human feedback) -> a reward model")


@dataclass(frozen=True)
class Dpo:
    """Direct Preference Optimisation (notebook 08, part 2): the same kind of labelled pairs as `Rlhf`, trained
    into the policy directly -- no reward model, no sampling while training.  Held: the policy and the frozen
    reference (two models).  Sampling the pairs counts in the total seconds.  Target as `Rlhf`'s."""
    name: str = "DPO"
    pairs_per_prompt: int = 6                         # the same pairs as `Rlhf` (same seed, same sampling)
    beta: float = 0.1                                 # DPO's KL strength (Rafailov et al.: 0.1)
    eval_samples: int = 16
    cfg: TrainConfig = TrainConfig(steps=30, batch_size=16, lr=1e-4, warmup=3, weight_decay=0.0)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        train_prompts, test_prompts = _people_prompts()
        t0 = time.perf_counter()
        pairs = _pairs(base_model, tok, train_prompts, self.pairs_per_prompt, seed)
        spent = time.perf_counter() - t0
        ref_model = rlhf.freeze(copy.deepcopy(base_model))
        policy = _fresh(base_model)
        return Run(model=policy, batches=preference.pair_batches(pairs, tok.pad_id), cfg=_budget(self.cfg, steps),
                   metric="win rate", target="win rate vs the starting policy (held-out people)",
                   score=_win_rate_vs_start(policy, tok, test_prompts, self.eval_samples, seed), deployed=policy,
                   loss_fn=dpo.dpo_loss_fn(ref_model, self.beta), held={"reference": ref_model},
                   extra_seconds=spent, notes={"preference pairs": len(pairs["chosen"])},
                   data=f"{len(pairs['chosen'])} preference pairs (human feedback)")


@dataclass(frozen=True)
class Grpo:
    """RL with a verifiable reward (notebook 08, part 2): GRPO -- groups of answers to a fact question, each judged
    against its group -- with `verifier.strict_check` as the reward (a program, no reward model, no value network).
    Held: the policy and the frozen reference.  Target: strict fact-answer accuracy on held-out questions, `samples`
    answers each at temperature 1.  Budget vs the notebook (30 steps of 4 questions x 8 answers): 16 steps of 2 x 8."""
    name: str = "GRPO (checker)"
    grpo_cfg: grpo.GRPOConfig = grpo.GRPOConfig(beta=0.04, group=8)
    samples: int = 4                                  # answers per held-out question for the accuracy
    cfg: TrainConfig = TrainConfig(steps=16, batch_size=16, lr=3e-4, warmup=2, weight_decay=0.0)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        qa = foundation.load_task("qa")
        questions, held_out = verifier.fact_questions(qa["train"]), verifier.fact_questions(qa["test"] + qa["ood"])
        ref_model = rlhf.freeze(copy.deepcopy(base_model))
        policy = _fresh(base_model)
        return Run(model=policy, batches=grpo.rollout_batches(policy, ref_model, tok, questions, verifier.strict_check,
                                                              self.grpo_cfg),
                   cfg=_budget(self.cfg, steps), metric="accuracy",
                   target="fact-answer accuracy, strict checker (held-out questions)",
                   score=lambda: verifier.report(policy, tok, held_out, samples=self.samples, seed=seed + 7)["strict"],
                   deployed=policy, loss_fn=grpo.grpo_loss_fn(self.grpo_cfg), held={"reference": ref_model},
                   data=f"{len(questions)} questions + a checker program (no labels, no pairs)")
