"""Every training method of the course on one base model, one budget, one table (notebook 09).

Exam guides end with a table of fine-tuning methods -- what each updates, what it costs, what it is for,
what it risks.  This module *measures* that table.  `run(method, base_model, tok)` takes a fresh copy of
the shipped base model, trains it with one method for the method's budget (optimizer steps) and returns
one `Row`:

    trainable parameters (and % of the model)
    training memory   = weights + gradients + optimizer state + activations of one real step
                        (`fmlab.memory.measure` on one batch of that method's data, of a common size --
                        16 examples -- so that activations compare like with like; frozen models the
                        method needs during training -- a reference policy, a reward model -- count as weights)
    wall seconds of training (the loop only: evaluation excluded; RLHF includes its reward model)
    target metric     before and after training, and the *gain* = the share of the headroom closed:
                        accuracy / win rate:  (after - before) / (best - before)   (best = 1)
                        perplexity:           (log before - log after) / log before   (best = 1)
    general ability   held-out perplexity of the pre-training text and fact recall, vs the base model
    data              what the method needed ("1 000 labelled examples", "unlabelled domain text", ...)

Per-method differences live in one small frozen dataclass per method (`FullFineTuning`, `Lora`, `Reft`,
`Multitask`, `ContinuedPretraining`, `Rlhf`, `Dpo`), each with a `setup` that builds a `Run`: the model
to train, its batches, its loss, its target metric.  No registry, no dispatch by name: the notebook lists
the methods it wants.  Recipes are the ones the method notebooks settled on (02 full fine-tuning, 04 LoRA,
05 ReFT, 06 multitask, 07 continued pre-training, 08 RLHF / DPO), at the budget a CPU affords.

Simplifications: one seed per call (the notebook repeats calls for a spread); memory is counted on CPU
without the temporaries (`memory.measure` reports CUDA's peak when a GPU runs it); the preference pairs
of RLHF and DPO come from the simulated labeller of `fmlab.preference`, collected once and shared.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from . import batches, dpo, evaluate, foundation, lora, memory, preference, recipes, reft, reward, rlhf, world
from .gpt import MiniGPT
from .tokenizer import Tokenizer
from .train import TrainConfig, default_loss, train

__all__ = ["Run", "Row", "General", "general_reference", "run", "headroom_gain", "FullFineTuning", "Lora",
           "Reft", "Multitask", "ContinuedPretraining", "Preferences", "collect_preferences", "Rlhf", "Dpo"]

MULTITASK = ("sentiment", "translate", "summarize", "qa")


# --- what a method hands the harness, and what the harness returns ------------------------------------
@dataclass
class Run:
    """One method, ready to train: everything `run` needs, nothing about how it was built."""
    model: nn.Module                                  # what `train` updates (a MiniGPT, or a ReftModel)
    batches: batches.Batcher                          # its training batches
    cfg: TrainConfig                                  # its recipe; cfg.steps is the budget
    target: str                                       # name of the target metric, e.g. "sentiment accuracy"
    score: Callable[[], float]                        # the target metric of `model` now
    lm: MiniGPT                                       # the language model as deployed (general ability)
    data: str                                         # the data the method needed, in words
    loss_fn: Callable[[nn.Module, dict], torch.Tensor] = default_loss
    lower_is_better: bool = False                     # True for perplexity targets
    frozen_bytes: int = 0                             # frozen models held in memory while training
    extra_seconds: float = 0.0                        # training done while building the run (reward model)
    notes: dict = field(default_factory=dict)         # method-specific measurements for the notebook


@dataclass(frozen=True)
class General:
    """The base model's general ability: what every method is compared against."""
    perplexity: float        # held-out pre-training text
    fact_recall: float       # share of the 100 fact cloze probes answered


@dataclass(frozen=True)
class Row:
    method: str
    trainable: int             # parameters that receive gradients
    trainable_pct: float       # ... as a % of the deployed model's parameters
    memory: memory.Memory      # one training step: weights (+ frozen models), gradients, optimizer, activations
    memory_batch: int          # examples in the batch the memory was measured on (pairs for DPO)
    batch_size: int            # examples per step in the method's recipe (activations scale with it)
    train_s: float             # wall seconds of the training loop(s)
    steps: int                 # optimizer steps (the budget)
    target: str                # the target metric's name
    before: float              # target metric of the base model
    after: float               # ... after training
    gain: float                # share of the headroom closed (see `headroom_gain`)
    perplexity: float          # held-out general-text perplexity after training
    fact_recall: float         # fact recall after training
    perplexity_change: float   # perplexity / base perplexity - 1   (> 0: general text got harder)
    recall_drop: float         # base fact recall - fact recall     (> 0: facts forgotten)
    data: str                  # what the method needed
    base_identical: bool       # every base-model weight bit-identical after training

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        mem = d.pop("memory")
        d["memory_kib"] = sum(v for k, v in mem.items() if k != "temporary") / 2**10
        return d


def headroom_gain(before: float, after: float, lower_is_better: bool = False) -> float:
    """Share of the distance to a perfect score that training closed (1 = perfect, 0 = no change, < 0 worse).

    Accuracy-like metrics in [0, 1]: (after - before) / (1 - before).  Perplexity (>= 1, perfect = 1):
    the same on a log scale, (log before - log after) / log before.
    """
    if lower_is_better:
        if before <= 1 or after <= 0:
            raise ValueError(f"perplexities must be > 1 before and > 0 after, got {before}, {after}")
        return (math.log(before) - math.log(after)) / math.log(before)
    if not 0 <= before < 1:
        raise ValueError(f"an accuracy-like score must lie in [0, 1), got {before}: nothing left to gain")
    return (after - before) / (1 - before)


# --- the harness --------------------------------------------------------------------------------------
_PROBES: list[dict] | None = None


def _probes() -> list[dict]:
    global _PROBES
    if _PROBES is None:
        _PROBES = world.fact_cloze(foundation.load_world())
    return _PROBES


def general_ability(model: MiniGPT, tok: Tokenizer, max_windows: int = 100) -> General:
    """Held-out pre-training perplexity and fact recall of a language model."""
    stream = foundation.corpus_stream("pretrain", "val")
    return General(perplexity=evaluate.perplexity(model, stream, max_windows=max_windows),
                   fact_recall=evaluate.fact_recall(model, tok, _probes()))


def general_reference(base_model: MiniGPT, tok: Tokenizer) -> General:
    """The base model's general ability, measured once and passed to every `run`."""
    return general_ability(base_model, tok)


def _fresh(base_model: MiniGPT) -> MiniGPT:
    model = copy.deepcopy(base_model)
    model.requires_grad_(True)
    return model


def _base_identical(lm: nn.Module, base_model: MiniGPT) -> bool:
    """True when every weight of the base model is still in `lm`, bit for bit (adapters may sit beside)."""
    state = {k.replace(".base.", "."): v for k, v in lm.state_dict().items()}
    return all(k in state and torch.equal(state[k], v) for k, v in base_model.state_dict().items())


def _counts(run_: Run) -> tuple[int, float]:
    params = {id(p): p for p in run_.model.parameters()}.values()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    return trainable, 100 * trainable / total


def run(method, base_model: MiniGPT, tok: Tokenizer, base: General, steps: int | None = None,
        seed: int = 0, memory_batch: int = 16) -> Row:
    """Train a fresh copy of `base_model` with `method` for `steps` (default: the method's) and measure it.

    method: one of this module's method dataclasses (anything with ``setup(base_model, tok, steps, seed)
    -> Run`` and a ``name``).  base: `general_reference(base_model, tok)`, measured once.
    memory_batch: examples in the batch the step memory is measured on (the same for every method).
    """
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1 (optimizer steps of the budget), got {steps}")
    torch.manual_seed(seed)
    r = method.setup(base_model, tok, steps or method.steps, seed)
    trainable, pct = _counts(r)
    before = r.score()
    batch = r.batches(memory_batch, torch.Generator().manual_seed(seed + 1))
    mem = memory.measure(r.model, batch, loss_fn=r.loss_fn)
    mem = dataclasses.replace(mem, weights=mem.weights + r.frozen_bytes)
    history = train(r.model, r.batches, dataclasses.replace(r.cfg, seed=seed, progress=False), loss_fn=r.loss_fn)
    r.model.eval()
    after = r.score()
    general = general_ability(r.lm, tok)
    identical = _base_identical(r.lm, base_model)
    return Row(method=method.name, trainable=trainable, trainable_pct=pct, memory=mem, memory_batch=memory_batch,
               batch_size=r.cfg.batch_size,
               train_s=float(history["seconds"].iloc[-1]) + r.extra_seconds, steps=r.cfg.steps,
               target=r.target, before=before, after=after,
               gain=headroom_gain(before, after, r.lower_is_better),
               perplexity=general.perplexity, fact_recall=general.fact_recall,
               perplexity_change=general.perplexity / base.perplexity - 1,
               recall_drop=base.fact_recall - general.fact_recall, data=r.data, base_identical=identical)


# --- the methods: one small dataclass each ------------------------------------------------------------
def _n(x: int) -> str:
    return f"{x:,}".replace(",", " ")


@dataclass(frozen=True)
class FullFineTuning:
    """Every weight trains on one labelled task (notebook 02's recipe, `recipes.SENTIMENT_FT`)."""
    name: str = "full fine-tuning"
    task: str = recipes.SENTIMENT_TASK
    steps: int = recipes.SENTIMENT_FT.steps
    cfg: TrainConfig = recipes.SENTIMENT_FT

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data = foundation.load_task(self.task)
        model = _fresh(base_model)
        return Run(model=model, batches=batches.instruction_batches(tok, data["train"], model.cfg.block_size),
                   cfg=dataclasses.replace(self.cfg, steps=steps), target=f"{self.task} accuracy",
                   score=lambda: evaluate.accuracy(model, tok, data["test"]), lm=model,
                   data=f"{_n(len(data['train']))} labelled examples")


@dataclass(frozen=True)
class Lora:
    """Frozen base + rank-r adapters on attention + the label words' embedding rows (notebook 04)."""
    name: str = "LoRA"
    task: str = recipes.SENTIMENT_TASK
    rank: int = 8
    alpha: float = 16.0
    label_words: str = "positive negative"       # rows of the tied embedding that train too (new labels)
    steps: int = 160
    cfg: TrainConfig = dataclasses.replace(recipes.SENTIMENT_FT, batch_size=32)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data = foundation.load_task(self.task)
        model = copy.deepcopy(base_model)
        cfg = lora.LoraConfig(rank=self.rank, alpha=self.alpha, targets=lora.ATTENTION,
                              train_tokens=tuple(tok.encode(self.label_words)), seed=seed)
        lora.apply(model, cfg)
        return Run(model=model, batches=batches.instruction_batches(tok, data["train"], model.cfg.block_size),
                   cfg=dataclasses.replace(self.cfg, steps=steps), target=f"{self.task} accuracy",
                   score=lambda: evaluate.accuracy(model, tok, data["test"]), lm=model,
                   data=f"{_n(len(data['train']))} labelled examples")


@dataclass(frozen=True)
class Reft:
    """Frozen base + LoReFT edits of the prompt's hidden states (notebook 05)."""
    name: str = "ReFT"
    task: str = recipes.SENTIMENT_TASK
    # notebook 05's recipe: rank-8 edits after blocks 1 and 3, on the last 4 prompt tokens (they hold the
    # adjective) and the answer tokens (the label words are new to the frozen head, so <eos> needs an edit too)
    config: reft.ReftConfig = reft.ReftConfig(layers=(1, 3), rank=8, first=0, last=4, answer=True)
    temperature: float = 0.05                      # sharpened loss: see reft.reft_loss
    steps: int = 200
    cfg: TrainConfig = TrainConfig(steps=200, batch_size=32, lr=5e-2, warmup=20, weight_decay=0.0)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data = foundation.load_task(self.task)
        frozen = copy.deepcopy(base_model)
        train_batches = batches.instruction_batches(tok, data["train"], frozen.cfg.block_size)
        calibration = train_batches(len(data["train"]), torch.Generator().manual_seed(seed))
        model = reft.apply(frozen, dataclasses.replace(self.config, seed=seed), calibration)
        temperature = self.temperature
        return Run(model=model, batches=train_batches, cfg=dataclasses.replace(self.cfg, steps=steps),
                   target=f"{self.task} accuracy", score=lambda: reft.accuracy(model, tok, data["test"]),
                   lm=frozen, data=f"{_n(len(data['train']))} labelled examples",
                   loss_fn=lambda m, b: reft.reft_loss(m, b, temperature))


@dataclass(frozen=True)
class Multitask:
    """Every weight trains on a balanced mixture of four instruction tasks (notebook 06)."""
    name: str = "multitask fine-tuning"
    tasks: tuple[str, ...] = MULTITASK
    test_size: int = 100                             # test examples per task (qa has fewer)
    steps: int = 240                                 # notebook 06 runs 320 (80 per task); 240 fits the CPU budget
    cfg: TrainConfig = TrainConfig(steps=240, batch_size=16, lr=2e-3, warmup=10)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        data = {t: foundation.load_task(t) for t in self.tasks}
        model = _fresh(base_model)
        mixture = batches.mix([batches.instruction_batches(tok, data[t]["train"], model.cfg.block_size)
                               for t in self.tasks], [1] * len(self.tasks), pad_id=tok.pad_id)
        tests = {t: data[t]["test"][:self.test_size] for t in self.tasks}
        n = sum(len(data[t]["train"]) for t in self.tasks)
        return Run(model=model, batches=mixture, cfg=dataclasses.replace(self.cfg, steps=steps),
                   target=f"mean accuracy, {len(self.tasks)} tasks",
                   score=lambda: sum(evaluate.accuracy(model, tok, tests[t]) for t in tests) / len(tests),
                   lm=model, data=f"{_n(n)} labelled examples of {len(self.tasks)} tasks")


@dataclass(frozen=True)
class ContinuedPretraining:
    """Self-supervised next-token training on unlabelled domain text (notebook 07: domain adaptation)."""
    name: str = "continued pre-training"
    corpus: str = "station"
    steps: int = 150
    cfg: TrainConfig = TrainConfig(steps=150, batch_size=16, lr=2e-3, warmup=20)
    eval_windows: int = 30                            # held-out windows of 64 tokens for the domain perplexity

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        train_stream = foundation.corpus_stream(self.corpus, "train")
        val = foundation.corpus_stream(self.corpus, "val")
        model = _fresh(base_model)
        return Run(model=model, batches=batches.lm_batches(train_stream, model.cfg.block_size),
                   cfg=dataclasses.replace(self.cfg, steps=steps), target=f"{self.corpus} perplexity",
                   score=lambda: evaluate.perplexity(model, val, max_windows=self.eval_windows), lm=model,
                   data=f"{_n(train_stream.numel())} tokens of unlabelled {self.corpus} text",
                   lower_is_better=True)


# --- human preferences: RLHF (reward model + RL) and DPO ----------------------------------------------
@dataclass
class Preferences:
    """Preference pairs on the base model's own answers, labelled once, shared by RLHF and DPO."""
    pairs: dict                    # preference.make_pairs output (training people)
    train_prompts: list[dict]      # prompts about the training people
    test_prompts: list[dict]       # prompts about held-out people: the win rate is measured here
    samples_per_prompt: int        # test samples per prompt for the win rate


def collect_preferences(base_model: MiniGPT, tok: Tokenizer, per_prompt: int = 8, test_samples: int = 8,
                        seed: int = 0) -> Preferences:
    """Sample two answers per prompt from the base model and let the simulated labeller choose (notebook 08)."""
    names = world.NAMES
    train_prompts, test_prompts = preference.make_prompts(names[:15]), preference.make_prompts(names[15:])
    gen = torch.Generator().manual_seed(seed)
    many = [p for p in train_prompts for _ in range(per_prompt)]
    a = preference.sample(base_model, tok, many, max_new_tokens=10, generator=gen)
    b = preference.sample(base_model, tok, many, max_new_tokens=10, generator=gen)
    prefers_a = preference.label_pairs([p["person"] for p in many], a.texts, b.texts,
                                       preference.LabellerConfig(seed=seed))
    return Preferences(preference.make_pairs(a, b, prefers_a), train_prompts, test_prompts, test_samples)


def _win_rate(policy: MiniGPT, start: list[float], prefs: Preferences, tok: Tokenizer, seed: int) -> float:
    return preference.win_rate(_true_scores(policy, prefs, tok, seed), start)


def _true_scores(policy: MiniGPT, prefs: Preferences, tok: Tokenizer, seed: int) -> list[float]:
    prompts = [p for p in prefs.test_prompts for _ in range(prefs.samples_per_prompt)]
    roll = preference.sample(policy, tok, prompts, 10, 1.0, torch.Generator().manual_seed(seed + 7))
    return [preference.rubric(p["person"], t) for p, t in zip(prompts, roll.texts)]


def _preference_run(policy: MiniGPT, base_model: MiniGPT, prefs: Preferences, tok: Tokenizer, seed: int,
                    **kwargs) -> Run:
    start = _true_scores(base_model, prefs, tok, seed)     # same seed: an untrained policy ties itself, 0.5
    return Run(model=policy, target="win rate vs the start (true preference)", lm=policy,
               score=lambda: _win_rate(policy, start, prefs, tok, seed),
               data=f"{_n(len(prefs.pairs['chosen']))} preference pairs", **kwargs)


def _bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())


@dataclass(frozen=True)
class Rlhf:
    """Reward model on the pairs, then KL-penalised policy gradient against it (notebook 08)."""
    prefs: Preferences
    name: str = "RLHF (reward model + RL)"
    beta: float = 0.3                                  # KL coefficient
    steps: int = 80                                    # RL steps
    cfg: TrainConfig = TrainConfig(steps=80, batch_size=32, lr=5e-4, warmup=5, weight_decay=0.0)
    reward_cfg: TrainConfig = TrainConfig(steps=100, batch_size=32, lr=1e-3, warmup=10)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        ref_model = rlhf.freeze(copy.deepcopy(base_model))
        reward_model = reward.RewardModel(base_model).to(next(base_model.parameters()).device)
        reward_model.requires_grad_(True)
        pad = tok.pad_id
        history = train(reward_model, preference.pair_batches(self.prefs.pairs, pad),
                        dataclasses.replace(self.reward_cfg, seed=seed, progress=False), loss_fn=reward.reward_loss)
        rlhf.freeze(reward_model)
        everything = preference.pair_batch(self.prefs.pairs, range(len(self.prefs.pairs["chosen"])), pad)
        reward_model.normalise_({k: v.to(next(reward_model.parameters()).device) for k, v in everything.items()})
        policy = _fresh(base_model)
        rl = rlhf.RLConfig(beta=self.beta, group=4, max_new_tokens=10)
        rollouts = rlhf.rollout_batches(policy, ref_model, reward_model, tok, self.prefs.train_prompts, rl)
        return _preference_run(policy, base_model, self.prefs, tok, seed, batches=rollouts,
                               cfg=dataclasses.replace(self.cfg, steps=steps),
                               loss_fn=rlhf.policy_gradient_loss(rl),
                               frozen_bytes=_bytes(ref_model) + _bytes(reward_model),
                               extra_seconds=float(history["seconds"].iloc[-1]))


@dataclass(frozen=True)
class Dpo:
    """Direct preference optimisation on the same pairs: no reward model, no sampling (notebook 08)."""
    prefs: Preferences
    name: str = "DPO"
    beta: float = 0.1
    steps: int = 80
    cfg: TrainConfig = TrainConfig(steps=80, batch_size=32, lr=5e-4, warmup=5, weight_decay=0.0)

    def setup(self, base_model: MiniGPT, tok: Tokenizer, steps: int, seed: int) -> Run:
        ref_model = rlhf.freeze(copy.deepcopy(base_model))
        policy = _fresh(base_model)
        return _preference_run(policy, base_model, self.prefs, tok, seed,
                               batches=preference.pair_batches(self.prefs.pairs, tok.pad_id),
                               cfg=dataclasses.replace(self.cfg, steps=steps),
                               loss_fn=dpo.dpo_loss_fn(ref_model, self.beta), frozen_bytes=_bytes(ref_model))
