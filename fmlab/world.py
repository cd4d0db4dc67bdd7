"""A small synthetic world: 20 people and 100 facts, and the stories told about them.

Real foundation models read trillions of tokens of web text and absorb both *language* (grammar, style)
and *knowledge* (who lives where).  Our world is tiny but plays the same game: 20 people, each with a
city, a job, a favourite food, a favourite colour and a pet (100 facts).  Its stories -- fact statements in
three phrasings, little stories consistent with the facts, reactions that carry sentiment, and dictionary
lines of a toy language ("toki") -- are most of the pre-training corpus; `fmlab.corpus` adds the rest of
"the web" (reviews, Q&A pages, glossaries, postcards, code).  Nothing in it is labelled: a model trained to
predict the next token has to pick up the facts on its own (self-supervised learning).

Everything is a pure function of a seed, so the course's data never needs a download.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["WorldConfig", "World", "make_world", "document", "fact_cloze", "NAMES", "CITIES", "JOBS", "FOODS",
           "COLOURS", "PETS", "ATTRIBUTES", "POSITIVE", "NEGATIVE", "TOKI_NOUNS", "TOKI_ADJECTIVES",
           "FACT_TEMPLATES", "STORY_TEMPLATES", "REACTIONS"]

NAMES = ["ada", "ben", "cleo", "dev", "eli", "fay", "gus", "hana", "ivo", "jade",
         "kai", "lena", "milo", "nia", "omar", "pia", "quin", "rosa", "sam", "tara"]
CITIES = ["paris", "lima", "oslo", "cairo", "tokyo", "delhi", "rome", "quito"]
JOBS = ["baker", "doctor", "farmer", "pilot", "teacher", "painter", "sailor", "miner"]
FOODS = ["soup", "bread", "rice", "cheese", "apples", "noodles", "cake", "beans"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]
PETS = ["cat", "dog", "parrot", "rabbit", "horse", "turtle"]
ATTRIBUTES = {"city": CITIES, "job": JOBS, "food": FOODS, "colour": COLOURS, "pet": PETS}

# Three phrasings per attribute: seeing a fact in several forms is what lets a model *extract* it later
# (a question-answering fine-tune on some facts then generalises to the others).  The first phrasing is
# also the cloze probe: everything before the last word is the prompt, the last word the answer.
FACT_TEMPLATES = {
    "city": ["{p} lives in {v} .", "the home of {p} is in {v} .", "the city where {p} lives is {v} ."],
    "job": ["{p} works as a {v} .", "by trade , {p} is a {v} .", "the job of {p} is {v} ."],
    "food": ["{p} likes to eat {v} .", "the favourite food of {p} is {v} .", "every day , {p} eats {v} ."],
    "colour": ["{p} likes the colour {v} .", "the favourite colour of {p} is {v} .",
               "{p} always wears {v} ."],
    "pet": ["{p} has a pet {v} .", "the pet of {p} is a {v} .", "{p} takes care of a {v} ."],
}

# Story sentences use several facts of one person at once, so the facts also recur in context.
STORY_TEMPLATES = [
    "one morning , {p} the {job} walked through {city} .",
    "{p} fed the {pet} and then ate some {food} .",
    "in {city} , {p} painted the door {colour} .",
    "after work , {p} went home to the {pet} in {city} .",
    "the {job} {p} bought {food} at the market in {city} .",
    "{p} wore a {colour} coat and walked the {pet} .",
    "people in {city} know {p} as a good {job} .",
    "{p} shared some {food} with a friend from {city} .",
]

# Sentiment words.  Pre-training shows each word with a consistent reaction ("... it was awful . ada
# frowned ."), so the base model already carries a notion of good and bad that fine-tuning can use.
POSITIVE = ["delicious", "tasty", "fresh", "lovely", "great", "wonderful", "sweet", "perfect",
            "excellent", "superb"]
NEGATIVE = ["awful", "stale", "bland", "terrible", "soggy", "burnt", "horrible", "rotten",
            "dreadful", "nasty"]
REACTIONS = {"positive": ["{p} smiled .", "{p} was happy .", "{p} asked for more ."],
             "negative": ["{p} frowned .", "{p} was sad .", "{p} left the rest ."]}

# The toy language.  Each English word gets an invented toki word; dictionary lines appear in the
# corpus ("in toki , the word fish is zuko ."), which later makes the translation task learnable.
TOKI_NOUNS = PETS + FOODS + ["tree", "house", "river", "boat", "sun", "moon", "bird", "fish",
                             "stone", "road"]
TOKI_ADJECTIVES = COLOURS + ["big", "small", "old", "new"]
_SYLLABLES = ["ka", "lo", "mi", "zu", "pe", "ta", "ni", "so", "ru", "wa", "ke", "po", "li", "ja",
              "mo", "su", "te", "na", "fu", "ro"]


@dataclass(frozen=True)
class WorldConfig:
    """How the stories about the world are written (`document`); `fmlab.corpus` decides how many."""
    min_sentences: int = 4        # sentences per story, drawn uniformly in [min, max]
    max_sentences: int = 8
    dictionary_fraction: float = 0.5  # share of documents that carry one toki dictionary line


@dataclass(frozen=True)
class World:
    people: list[str]                       # person names
    facts: dict[str, dict[str, str]]        # facts[person][attribute] = value
    toki: dict[str, str] = field(default_factory=dict)  # english word -> toki word

    def fact_list(self) -> list[tuple[str, str, str]]:
        """All facts as (person, attribute, value), in a fixed order."""
        return [(p, a, self.facts[p][a]) for p in self.people for a in ATTRIBUTES]


def make_world(seed: int = 0) -> World:
    rng = random.Random(seed)
    facts = {p: {a: rng.choice(values) for a, values in ATTRIBUTES.items()} for p in NAMES}
    return World(people=list(NAMES), facts=facts, toki=_toki_words(rng))


def _toki_words(rng: random.Random) -> dict[str, str]:
    words, used = {}, set()
    for english in TOKI_NOUNS + TOKI_ADJECTIVES:
        while True:
            w = "".join(rng.sample(_SYLLABLES, 2))
            if w not in used:
                break
        used.add(w)
        words[english] = w
    return words


def fact_sentence(world: World, person: str, attribute: str, rng: random.Random) -> str:
    template = rng.choice(FACT_TEMPLATES[attribute])
    return template.format(p=person, v=world.facts[person][attribute])


def story_sentence(world: World, person: str, rng: random.Random) -> str:
    return rng.choice(STORY_TEMPLATES).format(p=person, **world.facts[person])


def reaction_sentences(world: World, person: str, rng: random.Random) -> str:
    label = rng.choice(["positive", "negative"])
    word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
    food = world.facts[person]["food"]
    return f"{person} tried the {food} . it was {word} . " + rng.choice(REACTIONS[label]).format(p=person)


def dictionary_line(world: World, rng: random.Random) -> str:
    english = rng.choice(sorted(world.toki))
    return f"in toki , the word {english} is {world.toki[english]} ."


def document(world: World, cfg: WorldConfig, rng: random.Random) -> str:
    """One short document about one or two people: facts, story and reaction sentences, shuffled."""
    people = rng.sample(world.people, rng.choice([1, 1, 2]))
    sentences = []
    for _ in range(rng.randint(cfg.min_sentences, cfg.max_sentences)):
        person = rng.choice(people)
        kind = rng.random()
        if kind < 0.5:
            sentences.append(fact_sentence(world, person, rng.choice(list(ATTRIBUTES)), rng))
        elif kind < 0.85:
            sentences.append(story_sentence(world, person, rng))
        else:
            sentences.append(reaction_sentences(world, person, rng))
    if rng.random() < cfg.dictionary_fraction:
        sentences.insert(rng.randrange(len(sentences) + 1), dictionary_line(world, rng))
    return " ".join(sentences)


def fact_cloze(world: World) -> list[dict[str, str]]:
    """Cloze probes, one per fact: {'prompt': 'ada lives in', 'answer': 'paris', 'attribute': 'city'}."""
    probes = []
    for person, attribute, value in world.fact_list():
        sentence = FACT_TEMPLATES[attribute][0].format(p=person, v=value)
        prompt = sentence[: sentence.rindex(value)].strip()
        probes.append({"prompt": prompt, "answer": value, "attribute": attribute, "person": person})
    return probes
