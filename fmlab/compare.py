"""Every training method of the course on one base model, one harness, one table (notebook 09).

Exam guides end with a table of fine-tuning methods -- what each updates, costs, is for, risks.  This module
*measures* it: `run(method, base_model, tokenizer, base)` trains a fresh copy of the shipped base model with one
method and returns one `Row` -- cost (trainable parameters, models held, the memory of one training step with
every held model counted, seconds, budget), benefit (the method's own target metric before and after, in its own
unit, never mixed on one axis), risk (held-out perplexity and fact recall of the model *as deployed*: LoRA with
its adapter, ReFT as `reft.deploy` runs it, a student itself) and the data the method needed.

One small frozen dataclass per method, whose `setup` builds a `Run` from the functions the method notebooks
call; the harness knows no method's internals.  No registry, no dispatch by name.  Recipes are the notebooks',
at budgets a CPU affords (each docstring says where they differ).  Simplifications: one seed per call (the
notebook repeats calls); memory counted on CPU without temporaries (CUDA's peak when a GPU runs it).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from . import (batches, distill, dpo, evaluate, foundation, grpo, lora, memory, params, ppo, preference, recipes,
               reft, reward, verifier, world)
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
    forward: Callable | None = None                   # forward(tokens, targets) of `deployed` for `fmlab.evaluate`
    base_state: Callable[[], dict] | None = None      # the base weights as the method holds them (default state_dict)
    finish: Callable[[], float] | None = None         # a second stage after the loop (domain: the labels); its seconds
    memory_batches: batches.Batcher | None = None     # for the memory step, if `batches` must not be disturbed (PPO)
    notes: dict = field(default_factory=dict)         # method-specific measurements for the notebook
    val_score: Callable[[], float] | None = None      # the target metric on validation data (early stopping)


@dataclass(frozen=True)
class General:                 # general ability of a deployed model: what every method is compared against
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
def general_ability(model: nn.Module, tokenizer: Tokenizer, forward: Callable | None = None,
                    max_windows: int = 100) -> General:
    """Held-out pre-training perplexity and fact recall of a deployed language model (`forward`: as in
    `evaluate.greedy_match`)."""
    stream = foundation.corpus_stream("pretrain", "val")
    recall = evaluate.fact_recall(model, tokenizer, world.fact_cloze(foundation.load_world()), forward=forward)
    return General(perplexity=evaluate.perplexity(model, stream, max_windows=max_windows), fact_recall=recall)


def general_reference(base_model: MiniGPT, tokenizer: Tokenizer) -> General:
    """The base model's general ability, measured once and passed to every `run`."""
    return general_ability(base_model, tokenizer)


def _fresh(base_model: MiniGPT) -> MiniGPT:
    return copy.deepcopy(base_model).requires_grad_(True)


def _base_identical(state: dict, base_model: MiniGPT) -> bool:
    """True when every weight of the base model is in `state`, bit for bit."""
    return all(k in state and torch.equal(state[k], v) for k, v in base_model.state_dict().items())


def run(method, base_model: MiniGPT, tokenizer: Tokenizer, base: General, steps: int | None = None,
        seed: int = 0, memory_batch: int = 16, stop_at: float | None = None, check_every: int = 5) -> Row:
    """Train a fresh copy of `base_model` with `method` and measure it (the shipped model is not touched).

    method: one of this module's method dataclasses (anything with a ``name`` and ``setup(base_model, tokenizer,
    steps, seed) -> Run``).  base: `general_reference(base_model, tokenizer)`, measured once.  steps: the budget
    (default: the method's recipe).  memory_batch: examples in the batch the step memory is measured on.
    stop_at: early stopping -- the target metric on *validation* data is checked every `check_every` steps and
    training stops at the first check that reaches it (methods compared at a matched target, not a matched
    number of steps; the row's ``steps`` is then the steps actually taken).  Only for methods with a validation
    metric (the sentiment rows: full fine-tuning, LoRA, ReFT, distillation).
    """
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1 (optimizer steps of the budget), got {steps}")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1 step, got {check_every}")
    torch.manual_seed(seed)
    r = method.setup(base_model, tokenizer, steps or method.cfg.steps, seed)
    trainable, deployed_total = params.count(r.model)["trainable"], params.count(r.deployed)["total"]
    before = r.score()
    batch = (r.memory_batches or r.batches)(memory_batch, torch.Generator().manual_seed(seed + 1))
    mem = memory.measure(r.model, batch, loss_fn=r.loss_fn)
    mem = dataclasses.replace(mem, weights=mem.weights + sum(params.nbytes(m) for m in r.held.values()))
    early = {}
    if stop_at is not None:
        if r.val_score is None:
            raise ValueError(f"{method.name} has no validation metric to stop on; use stop_at=None (a fixed budget)")
        val_score = r.val_score
        early = dict(evals={"val": lambda _: val_score()}, until=lambda row: row["val"] >= stop_at)
    cfg = dataclasses.replace(r.cfg, seed=seed, progress=False, eval_every=check_every if early else r.cfg.eval_every)
    history = train(r.model, r.batches, cfg, loss_fn=r.loss_fn, **early)
    loop_s, taken = float(history["seconds"].iloc[-1]), int(history["step"].iloc[-1])
    if early:
        r.notes["stopped at step"] = taken
        r.notes["validation target reached"] = bool(history["val"].iloc[-1] >= stop_at)
    extra = r.extra_seconds + (r.finish() if r.finish else 0.0)
    after = r.score()                                  # train() leaves the model in evaluation mode
    general = general_ability(r.deployed, tokenizer, r.forward)
    return Row(method=method.name, trainable=trainable, trainable_pct=100 * trainable / deployed_total,
               models_held=1 + len(r.held), memory=mem, step_s=loop_s / taken, steps=taken,
               batch_size=r.cfg.batch_size, train_s=loop_s + extra, metric=r.metric, target=r.target,
               before=before, after=after, perplexity=general.perplexity, fact_recall=general.fact_recall,
               perplexity_change=general.perplexity / base.perplexity - 1,
               recall_drop=base.fact_recall - general.fact_recall, data=r.data,
               base_identical=_base_identical((r.base_state or r.model.state_dict)(), base_model), notes=r.notes)


def by_metric(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows by the kind of target metric: one plot panel each (0.6 accuracy and a 0.6 win rate differ)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.metric, []).append(row)
    return groups


def _budget(cfg: TrainConfig, steps: int) -> TrainConfig:
    """The recipe at another budget: warm-up scaled with the steps."""
    return dataclasses.replace(cfg, steps=steps, warmup=min(steps - 1, round(cfg.warmup * steps / cfg.steps)))


def _n(x: int) -> str:                                 # 12 345: thousands apart
    return f"{x:,}".replace(",", " ")


def _sentiment(model: nn.Module, tokenizer: Tokenizer, block: int, cfg: TrainConfig, steps: int, **run) -> Run:
    """A Run on the sentiment task: `model` trains on its labelled examples, scored by test accuracy."""
    data = foundation.load_task(recipes.SENTIMENT_TASK)
    run = {"score": lambda: evaluate.accuracy(model, tokenizer, data["test"]), "deployed": model,
           "batches": batches.instruction_batches(tokenizer, data["train"], block),
           "data": f"{_n(len(data['train']))} labelled examples", **run}
    deployed, forward = run["deployed"], run.get("forward")
    return Run(model=model, cfg=_budget(cfg, steps), metric="accuracy", target="sentiment accuracy (test)",
               val_score=lambda: evaluate.accuracy(deployed, tokenizer, data["val"], forward=forward), **run)


# --- supervised fine-tuning: full, LoRA, ReFT, multitask ------------------------------------------------
@dataclass(frozen=True)
class FullFineTuning:
    """Every weight trains on one labelled task (notebook 02's recipe, `recipes.SENTIMENT_FT`)."""
    name: str = "full fine-tuning"
    cfg: TrainConfig = recipes.SENTIMENT_FT

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        return _sentiment(_fresh(base_model), tokenizer, base_model.cfg.block_size, self.cfg, steps)


@dataclass(frozen=True)
class Lora:
    """Frozen base + rank-r adapters on the attention projections (notebook 04, `recipes.LORA_FT`)."""
    name: str = "LoRA"
    rank: int = 8
    alpha: float = 16.0
    cfg: TrainConfig = recipes.LORA_FT

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        model = lora.apply(copy.deepcopy(base_model), lora.LoraConfig(rank=self.rank, alpha=self.alpha, seed=seed))
        return _sentiment(model, tokenizer, base_model.cfg.block_size, self.cfg, steps,
                          base_state=lambda: lora.base_state(model))


@dataclass(frozen=True)
class Reft:
    """Frozen base + LoReFT edits of the prompt's hidden states (notebook 05: pyreft's setting, `recipes.REFT_FT`)."""
    name: str = "ReFT"
    reft_cfg: reft.ReftConfig = reft.ReftConfig()     # every layer, first and last prompt token, rank 4
    cfg: TrainConfig = recipes.REFT_FT

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        model = reft.apply(copy.deepcopy(base_model), dataclasses.replace(self.reft_cfg, seed=seed))
        deployed = reft.deploy(model)
        test = foundation.load_task(recipes.SENTIMENT_TASK)["test"]
        return _sentiment(model, tokenizer, base_model.cfg.block_size, self.cfg, steps, deployed=deployed,
                          forward=deployed, score=lambda: reft.accuracy(model, tokenizer, test),
                          loss_fn=reft.reft_loss, base_state=model.base_model.state_dict)


@dataclass(frozen=True)
class Multitask:
    """Every weight trains on a mixture of instruction tasks (notebook 06's mixture, same lr as `SENTIMENT_FT`)."""
    name: str = "multitask fine-tuning"
    tasks: tuple[str, ...] = ("translate", "qa", "sentiment")
    weights: tuple[float, ...] = (100, 30, 40)                # notebook 06: steps each task needs alone
    test_size: int = 100                                      # test examples per task
    cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, steps=170, warmup=17)

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        data, model = {t: foundation.load_task(t) for t in self.tasks}, _fresh(base_model)
        mixture = batches.mix([batches.instruction_batches(tokenizer, data[t]["train"], model.cfg.block_size)
                               for t in self.tasks], list(self.weights), pad_id=tokenizer.pad_id)
        tests = {t: data[t]["test"][:self.test_size] for t in self.tasks}
        n = sum(len(data[t]["train"]) for t in self.tasks)
        return Run(model=model, batches=mixture, cfg=_budget(self.cfg, steps), metric="accuracy",
                   target=f"mean accuracy over {len(self.tasks)} tasks (test)",
                   score=lambda: sum(evaluate.accuracy(model, tokenizer, tests[t]) for t in tests) / len(tests),
                   deployed=model, data=f"{_n(n)} labelled examples of {len(self.tasks)} tasks")


# --- domain adaptation: continued pre-training, then a few labels -------------------------------------
@dataclass(frozen=True)
class DomainAdaptation:
    """Continued pre-training on unlabelled station notes (the budget, `cfg`; fewer steps than notebook 07), then
    triage fine-tuning on `labels` labelled logs (`label_cfg`, in the total seconds).  Target: triage accuracy on
    unseen (part, symptom) pairs; notes: the same labels fine-tuned from the base model, without the notes."""
    name: str = "domain adaptation"
    labels: int = 64
    cfg: TrainConfig = TrainConfig(steps=80, batch_size=32, lr=1e-3, warmup=8)
    label_cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, steps=60, warmup=6)
    compare_base: bool = True                            # also fine-tune the base on the same labels (notes)

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        triage = foundation.load_task("triage")
        stream, val = foundation.corpus_stream("station", "train"), foundation.corpus_stream("station", "val")
        model = _fresh(base_model)
        labelled = batches.instruction_batches(tokenizer, triage["train"][:self.labels], model.cfg.block_size)
        test = triage["test"][:200]
        label_cfg = dataclasses.replace(self.label_cfg, seed=seed, progress=False)
        notes = {"station perplexity, base": evaluate.perplexity(base_model, val, max_windows=30)}
        if self.compare_base:
            plain = _fresh(base_model)
            train(plain, labelled, label_cfg)
            notes[f"base + the same {self.labels} labels, no notes"] = evaluate.accuracy(plain, tokenizer, test)

        def finish() -> float:           # after continued pre-training: the few labelled logs
            notes["station perplexity, adapted"] = evaluate.perplexity(model, val, max_windows=30)
            return float(train(model, labelled, label_cfg)["seconds"].iloc[-1])

        return Run(model=model, batches=batches.lm_batches(stream, model.cfg.block_size),
                   cfg=_budget(self.cfg, steps), metric="accuracy",
                   target=f"triage accuracy, {self.labels} labelled logs (test)",
                   score=lambda: evaluate.accuracy(model, tokenizer, test), deployed=model, finish=finish, notes=notes,
                   data=f"{_n(stream.numel())} tokens of unlabelled notes + {self.labels} labelled logs")


# --- distillation ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distillation:
    """A small student (2 blocks x width 64, pre-trained 300 steps on the same corpus, as in notebook 10) learns the
    soft targets of the teacher (the base fine-tuned with `recipes.SENTIMENT_FT`); both preparations count in the
    total seconds.  Notes: both models' serving cost (`distill.generation_speed`).  Measured (seeds 0-2): 150 + 250
    steps sometimes collapse to one label (0.48 on seed 2); 200 + 300 reached 1.0 on every seed."""
    name: str = "distillation"
    temperature: float = 4.0                           # notebook 10's T
    label_weight: float = 0.5
    student: GPTConfig | None = None                   # default: the base's config with 2 blocks x width 64
    student_pretrain: TrainConfig = dataclasses.replace(foundation.PRETRAIN, steps=300, warmup=30)
    cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, steps=200, warmup=20)
    speed_prompts: int = 40                            # test prompts answered one at a time to time serving
    compare_hard_labels: bool = True                   # also train the same pre-trained student on the labels alone

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        data = foundation.load_task(recipes.SENTIMENT_TASK)
        train_batches = batches.instruction_batches(tokenizer, data["train"], base_model.cfg.block_size)
        teacher = _fresh(base_model)
        h = train(teacher, train_batches, dataclasses.replace(recipes.SENTIMENT_FT, seed=seed, progress=False))
        cfg = self.student or dataclasses.replace(base_model.cfg, n_layer=2, n_embd=64)   # notebook 10's student
        torch.manual_seed(seed)
        student = MiniGPT(cfg).to(params.device_of(base_model))
        h2 = train(student, batches.lm_batches(foundation.corpus_stream("pretrain"), cfg.block_size),
                   dataclasses.replace(self.student_pretrain, seed=seed, progress=False))
        spent = float(h["seconds"].iloc[-1] + h2["seconds"].iloc[-1])
        plain = copy.deepcopy(student) if self.compare_hard_labels else None
        params.freeze(teacher)
        soft = distill.soft_target_batches(teacher, tokenizer, data["train"], cfg.block_size)
        speed = {name: distill.generation_speed(m, tokenizer, data["test"][:self.speed_prompts])
                 for name, m in (("teacher", teacher), ("student", student))}      # serving cost: architecture only
        notes = {"teacher accuracy (test)": evaluate.accuracy(teacher, tokenizer, data["test"]),
                 "teacher parameters": params.count(teacher)["total"],
                 "student parameters": params.count(student)["total"],
                 **{f"{name} FLOPs per answer": s["flops_per_answer"] for name, s in speed.items()},
                 **{f"{name} ms per answer": s["ms_per_answer"] for name, s in speed.items()}}

        def control() -> float:   # the same pre-trained student, the same schedule and steps, the labels alone
            cfg = dataclasses.replace(_budget(self.cfg, steps), seed=seed, progress=False)
            taken = notes.get("stopped at step", cfg.steps)               # as many steps as distillation took
            train(plain, train_batches, dataclasses.replace(cfg, eval_at=(taken,)), until=lambda row: row["step"] >= taken)
            notes["student on the labels alone (test)"] = evaluate.accuracy(plain, tokenizer, data["test"])
            notes["student on the labels alone, general perplexity"] = general_ability(plain, tokenizer).perplexity
            return 0.0                                                    # a control: not part of the method's cost

        return _sentiment(student, tokenizer, cfg.block_size, self.cfg, steps, batches=soft,
                          loss_fn=distill.distillation_loss_fn(self.temperature, self.label_weight),
                          held={"teacher": teacher}, extra_seconds=spent, notes=notes,
                          finish=control if plain is not None else None,
                          data=f"{_n(len(data['train']))} labelled examples + the teacher's outputs")


# --- learning from feedback: RLHF (reward model + PPO), DPO, GRPO with a checker -----------------------
def _feedback(base_model: MiniGPT, tokenizer: Tokenizer, pairs_per_prompt: int, samples: int, seed: int):
    """Notebook 08's setting: preference pairs sampled from the starting policy on 15 people's prompts and labelled
    (`preference.sample_pairs`, its seconds counted); the policy to train; what its Run shares with the other
    feedback methods: the win rate against the starting policy on 5 held-out people (0.5 = no better)."""
    train_prompts = preference.make_prompts(world.NAMES[:15])
    t0 = time.perf_counter()
    pairs = preference.sample_pairs(base_model, tokenizer, train_prompts, pairs_per_prompt, seed)
    spent, policy = time.perf_counter() - t0, _fresh(base_model)
    score = preference.win_rate_vs_start(policy, tokenizer, preference.make_prompts(world.NAMES[15:]), samples, seed)
    return train_prompts, pairs, policy, dict(metric="win rate", target="win rate vs the starting policy "
                                              "(held-out people)", score=score, deployed=policy, extra_seconds=spent,
                                              notes={"preference pairs": len(pairs["chosen"])})


@dataclass(frozen=True)
class Rlhf:
    """RLHF as InstructGPT runs its last two steps (notebook 08): labelled pairs from the starting policy -> a reward
    model (Bradley-Terry) -> PPO against it on a KL leash.  Held: the frozen reference and the reward model besides
    the policy with its value head -- three models (InstructGPT adds a separate value network).  Sampling the pairs
    and training the reward model count in the total seconds.  Budget vs notebook 08 (20 rounds of 32 answers,
    reward model 40 steps on 8 pairs per prompt): 12 rounds of 16, reward model 30 steps on 6 pairs per prompt."""
    name: str = "RLHF (reward model + PPO)"
    pairs_per_prompt: int = 6                         # answer pairs sampled per training prompt for the labeller
    reward_cfg: TrainConfig = TrainConfig(steps=30, batch_size=32, lr=3e-4, warmup=3)
    ppo_cfg: ppo.PPOConfig = ppo.PPOConfig(beta=0.3, group=4, epochs=4)
    eval_samples: int = 16                            # answers per held-out prompt for the win rate
    cfg: TrainConfig = TrainConfig(steps=48, batch_size=16, lr=3e-4, warmup=5, weight_decay=0.0)  # rounds x epochs

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        prompts, pairs, policy, run = _feedback(base_model, tokenizer, self.pairs_per_prompt, self.eval_samples, seed)
        t0 = time.perf_counter()
        reward_model = reward.RewardModel(base_model).requires_grad_(True)
        train(reward_model, preference.pair_batches(pairs, tokenizer.pad_id),
              dataclasses.replace(self.reward_cfg, seed=seed, progress=False), loss_fn=reward.reward_loss)
        everything = preference.pair_batch(pairs, range(len(pairs["chosen"])), tokenizer.pad_id)
        device = params.device_of(base_model)
        params.freeze(reward_model).normalise_({k: v.to(device) for k, v in everything.items()})
        run["extra_seconds"] += time.perf_counter() - t0
        ref_model = params.freeze(copy.deepcopy(base_model))
        agent = ppo.PolicyWithValue(policy)
        def make():          # one batcher for training, another for the memory step (it would shift the epochs)
            return ppo.rollout_batches(agent, ref_model, reward_model, tokenizer, prompts, self.ppo_cfg)
        return Run(model=agent, batches=make(), memory_batches=make(), cfg=_budget(self.cfg, steps),
                   loss_fn=ppo.ppo_loss(self.ppo_cfg), held={"reference": ref_model, "reward model": reward_model},
                   data=f"{len(pairs['chosen'])} preference pairs (human feedback) -> a reward model", **run)


@dataclass(frozen=True)
class Dpo:
    """DPO (notebook 08, part 2): `Rlhf`'s labelled pairs trained into the policy directly -- no reward model, no
    sampling while training.  Held: the policy and the frozen reference.  Pair sampling counts in the seconds."""
    name: str = "DPO"
    pairs_per_prompt: int = 6                         # the same pairs as `Rlhf` (same seed, same sampling)
    beta: float = 0.1                                 # DPO's KL strength (Rafailov et al.: 0.1)
    eval_samples: int = 16
    cfg: TrainConfig = TrainConfig(steps=30, batch_size=16, lr=1e-4, warmup=3, weight_decay=0.0)

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        _, pairs, policy, run = _feedback(base_model, tokenizer, self.pairs_per_prompt, self.eval_samples, seed)
        ref_model = params.freeze(copy.deepcopy(base_model))
        return Run(model=policy, batches=preference.pair_batches(pairs, tokenizer.pad_id), cfg=_budget(self.cfg, steps),
                   loss_fn=dpo.dpo_loss_fn(ref_model, self.beta), held={"reference": ref_model},
                   data=f"{len(pairs['chosen'])} preference pairs (human feedback)", **run)


@dataclass(frozen=True)
class Grpo:
    """RL with a verifiable reward (notebook 08, part 2): GRPO with `verifier.strict_check` as the score (a program;
    no reward model, no value network).  Held: the policy and the frozen reference.  Target: strict accuracy on
    held-out questions, `samples` answers each.  Budget vs the notebook (30 steps of 4 x 8 answers): 16 of 2 x 8."""
    name: str = "GRPO (checker)"
    grpo_cfg: grpo.GRPOConfig = grpo.GRPOConfig(beta=0.04, group=8)
    samples: int = 4                                  # answers per held-out question for the accuracy
    cfg: TrainConfig = TrainConfig(steps=16, batch_size=16, lr=3e-4, warmup=2, weight_decay=0.0)

    def setup(self, base_model: MiniGPT, tokenizer: Tokenizer, steps: int, seed: int) -> Run:
        qa = foundation.load_task("qa")
        questions, held_out = verifier.fact_questions(qa["train"]), verifier.fact_questions(qa["test"] + qa["ood"])
        ref_model, policy = params.freeze(copy.deepcopy(base_model)), _fresh(base_model)
        batches_ = grpo.rollout_batches(policy, ref_model, tokenizer, questions, verifier.strict_check, self.grpo_cfg)
        return Run(model=policy, batches=batches_, cfg=_budget(self.cfg, steps), metric="accuracy",
                   target="fact-answer accuracy, strict checker (held-out questions)",
                   score=lambda: verifier.report(policy, tokenizer, held_out, samples=self.samples,
                                                 seed=seed + 7)["strict"],
                   deployed=policy, loss_fn=grpo.grpo_loss_fn(self.grpo_cfg), held={"reference": ref_model},
                   data=f"{len(questions)} questions + a checker program (no labels, no pairs)")
