"""Labelled instruction tasks for fine-tuning, generated from the world.

Each example is a dict ``{"task", "instruction", "input", "output"}``; `format_prompt` turns it into the
text the model sees:

    instruction : <instruction> input : <input> answer :   -> the model must continue with " <output>"

Tasks (each with train / validation / test splits that never share an example, and an out-of-
distribution test split `ood` that changes something the training data never varied):

- ``sentiment``  -- rate a short review positive / negative.  ood: adjectives never used in training
  reviews (the base model has only seen them in pre-training stories).
- ``translate``  -- English phrase -> toki (word by word, nouns before adjectives).  ood: phrases whose
  nouns never appear in the training phrases (their toki words are only in the pre-training corpus).
- ``summarize``  -- a short story -> one sentence with who, where and what.  ood: longer stories.
- ``qa``         -- questions about the world's facts.  test: facts never asked in training, so the answer
  must come from what pre-training put in the weights.  ood: the test facts, asked with a new phrasing.
"""
from __future__ import annotations

import random

from .world import (ATTRIBUTES, NEGATIVE, POSITIVE, TOKI_ADJECTIVES, TOKI_NOUNS, FOODS, CITIES,
                    World)

__all__ = ["TASKS", "SPLITS", "make_task", "format_prompt", "INSTRUCTIONS"]

TASKS = ("sentiment", "translate", "summarize", "qa")
SPLITS = ("train", "val", "test", "ood")
INSTRUCTIONS = {
    "sentiment": "is this review positive or negative ?",
    "translate": "translate to toki .",
    "summarize": "summarize the story .",
    "qa": "answer the question .",
}


def format_prompt(example: dict) -> str:
    """The prompt template shared by every task (the answer follows after ' answer :')."""
    return f"instruction : {example['instruction']} input : {example['input']} answer :"


def _example(task: str, inp: str, out: str) -> dict:
    return {"task": task, "instruction": INSTRUCTIONS[task], "input": inp, "output": out}


def _split(items: list, fractions: tuple[float, float], rng: random.Random) -> tuple[list, list, list]:
    items = sorted(set(items))
    rng.shuffle(items)
    n_train, n_val = int(fractions[0] * len(items)), int(fractions[1] * len(items))
    return items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:]


# --- sentiment ----------------------------------------------------------------------------------------
_REVIEW_TEMPLATES = ["the {food} in {city} was {adj} .", "i ate the {food} , it was {adj} .",
                     "the {food} at the cafe was {adj} .", "my {food} was {adj} today .",
                     "the {food} from {city} tasted {adj} ."]
_OOD_WORDS = {"positive": POSITIVE[-3:], "negative": NEGATIVE[-3:]}  # held out of train/val/test


def _reviews(words: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(t.format(food=f, city=c, adj=a), label) for label, adjs in words.items() for a in adjs
            for t in _REVIEW_TEMPLATES for f in FOODS for c in CITIES[:4]]


def _sentiment(world: World, rng: random.Random) -> dict[str, list[dict]]:
    seen = {"positive": POSITIVE[:-3], "negative": NEGATIVE[:-3]}
    train, val, test = _split(_reviews(seen), (0.7, 0.1), rng)
    ood = sorted(set(_reviews(_OOD_WORDS)))
    rng.shuffle(ood)
    pack = lambda xs: [_example("sentiment", t, lab) for t, lab in xs]  # noqa: E731
    return {"train": pack(train), "val": pack(val), "test": pack(test), "ood": pack(ood[:300])}


# --- translation --------------------------------------------------------------------------------------
def _translate_pair(world: World, adj: str, noun: str) -> tuple[str, str]:
    return f"the {adj} {noun}", f"{world.toki[noun]} {world.toki[adj]}"


def _translate(world: World, rng: random.Random) -> dict[str, list[dict]]:
    nouns = list(TOKI_NOUNS)
    ood_nouns = set(rng.sample(nouns, 4))
    seen = [_translate_pair(world, a, n) for n in nouns if n not in ood_nouns for a in TOKI_ADJECTIVES]
    train, val, test = _split(seen, (0.7, 0.1), rng)
    ood = sorted(_translate_pair(world, a, n) for n in ood_nouns for a in TOKI_ADJECTIVES)
    pack = lambda xs: [_example("translate", i, o) for i, o in xs]  # noqa: E731
    return {"train": pack(train), "val": pack(val), "test": pack(test), "ood": pack(ood)}


# --- summarization ------------------------------------------------------------------------------------
_FILLERS = ["the sky was grey .", "it was a long day .", "the streets were busy .", "a bell rang twice .",
            "the wind was cold .", "the shops were open .", "a dog barked .", "the bus was late ."]
_ACTIONS = [("bought {x} at the market .", "bought {x}", FOODS),
            ("met {x} by the river .", "met {x}", None),
            ("saw a {x} in the park .", "saw a {x}", ["bird", "horse", "cat", "dog", "rabbit"])]


def _story(world: World, rng: random.Random, n_fillers: int) -> tuple[str, str]:
    person = rng.choice(world.people)
    city = rng.choice(CITIES)
    event, short, objects = rng.choice(_ACTIONS)
    obj = rng.choice(objects or [p for p in world.people if p != person])
    events = [f"{person} went to {city} .", f"{person} " + event.format(x=obj)]
    body = events + rng.sample(_FILLERS, n_fillers)
    rng.shuffle(body)
    return " ".join(body), f"{person} went to {city} and {short.format(x=obj)} ."


def _summarize(world: World, rng: random.Random) -> dict[str, list[dict]]:
    seen = [_story(world, rng, rng.randint(1, 2)) for _ in range(3000)]
    train, val, test = _split(seen, (0.7, 0.1), rng)
    ood = sorted(set(_story(world, rng, 4) for _ in range(300)))
    pack = lambda xs: [_example("summarize", i, o) for i, o in xs]  # noqa: E731
    return {"train": pack(train[:1500]), "val": pack(val[:200]), "test": pack(test[:300]), "ood": pack(ood)}


# --- fact QA ------------------------------------------------------------------------------------------
_QUESTIONS = {
    "city": ["where does {p} live ?", "which city is home to {p} ?", "in what city can you find {p} ?"],
    "job": ["what is the job of {p} ?", "what does {p} do for work ?", "how does {p} earn a living ?"],
    "food": ["what does {p} like to eat ?", "which food does {p} love ?", "what is the meal {p} enjoys ?"],
    "colour": ["what colour does {p} like ?", "which colour is the favourite of {p} ?",
               "what colour does {p} prefer ?"],
    "pet": ["what pet does {p} have ?", "which animal lives with {p} ?", "what animal does {p} keep ?"],
}


def _qa(world: World, rng: random.Random) -> dict[str, list[dict]]:
    facts = world.fact_list()
    train, val, test = _split(facts, (0.6, 0.2), rng)
    ask = lambda fs, which: [_example("qa", _QUESTIONS[a][k].format(p=p), v)  # noqa: E731
                             for p, a, v in fs for k in which]
    return {"train": ask(train, (0, 1)), "val": ask(val, (0,)), "test": ask(test, (0,)),
            "ood": ask(test, (2,))}


_BUILDERS = {"sentiment": _sentiment, "translate": _translate, "summarize": _summarize, "qa": _qa}


def make_task(world: World, task: str, seed: int = 0) -> dict[str, list[dict]]:
    """Splits ``{'train', 'val', 'test', 'ood'}`` of one task, each a list of example dicts."""
    if task not in _BUILDERS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return _BUILDERS[task](world, random.Random(f"{task}-{seed}"))


assert set(_BUILDERS) == set(TASKS) and set(ATTRIBUTES) == set(_QUESTIONS)
