"""The pre-training corpus: what "the web" looks like for our small world.

Real foundation models read web pages, books, forums and code: text of every kind, none of it labelled for
the tasks they are later fine-tuned on -- yet it contains reviews that end with a verdict, question-answer
pages, glossaries, passing mentions of every industry, other languages and code.  That is why a real base
model can already do a little sentiment rating or translation when asked (zero-shot), and why no word a
user types is entirely new to it.  Our corpus mixes the same kinds of documents, each a pure function of
the seed:

===========  ======================================================================================  =======
kind         example                                                                                  share
===========  ======================================================================================  =======
story        ada lives in paris . one morning , ada the baker walked through paris . ...              rest
review       ben ordered the cake at a cafe in lima . it was soggy . verdict : negative .            5 %
q & a        q : in which city does ada live ? a : paris .                                            4 %
glossary     toki glossary : zuko means fish , kalo means red .                                       2 %
mention      cleo watched a film about a space station where the crew fixed a plasma valve .          3 %
postcard     Greetings from Tokyo! 東京からこんにちは！ -- Hana 😀                                       2 %
post         @Ada I agree & 9/10 ^_^ #lima                                                            3 %
code         a paragraph of the Python language reference (one in eight; the rest is a domain)        2 %
===========  ======================================================================================  =======

The reviews use their own templates (not the sentiment task's ``instruction : ... answer :`` format), the
Q&A its own phrasings (not the qa task's questions), the mentions name station parts and Python words but
never say which station faults are urgent (that knowledge is only in the domain corpus, `fmlab.domain`).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from . import domain
from .world import (ATTRIBUTES, CITIES, FACT_TEMPLATES, FOODS, NEGATIVE, POSITIVE, REACTIONS, STORY_TEMPLATES, World,
                    WorldConfig, document)

__all__ = ["CorpusConfig", "pretraining_corpus", "review", "qa_snippet", "glossary", "mention", "postcard", "post",
           "TEMPLATES", "LEARNER_PROMPTS", "grammatical_share"]


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0                 # everything follows from it (the world has its own seed)
    n_documents: int = 12_000     # documents in all
    review: float = 0.05          # food reviews that end in a verdict word (positive / negative)
    qa: float = 0.04              # question-answer snippets about the world's facts
    glossary: float = 0.02        # english <-> toki word lists
    mention: float = 0.03         # passing mentions of the station's parts and of Python
    postcard: float = 0.02        # cased, multilingual postcards from the world's cities (Unicode, emoji)
    post: float = 0.03            # cased social-media posts: #tags, @names, 50%, emoticons, symbols
    code: float = 0.02            # paragraphs of the Python reference
    story: WorldConfig = WorldConfig()   # the stories about the world (the rest of the documents)

    def __post_init__(self):
        shares = [self.review, self.qa, self.glossary, self.mention, self.postcard, self.post, self.code]
        if min(shares) < 0 or sum(shares) >= 1:
            raise ValueError(f"document shares must be >= 0 and leave room for stories, got {shares}")
        if self.n_documents < 1:
            raise ValueError(f"n_documents must be >= 1, got {self.n_documents}")


# --- reviews ------------------------------------------------------------------------------------------
REVIEWS = ["{p} ordered the {food} at a cafe in {city} . it was {adj} . verdict : {label} .",
           "review of a kitchen in {city} : the {food} was {adj} and {adj2} . verdict : {label} .",
           "{p} wrote a review : {adj} {food} , {adj2} service . overall {label} .",
           "a {label} review from {p} : the {food} tasted {adj} .",
           "the {food} in {city} was {adj} , so the review was {label} .",
           "is the review positive or negative ? {p} wrote : the {food} was {adj} . the answer is {label} ."]


def review(world: World, rng: random.Random) -> str:
    """A review page: one to three short reviews, each ending in its verdict word."""
    parts = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        label = rng.choice(["positive", "negative"])
        adj, adj2 = rng.sample(POSITIVE if label == "positive" else NEGATIVE, 2)
        parts.append(rng.choice(REVIEWS).format(p=rng.choice(world.people), food=rng.choice(FOODS),
                                                city=rng.choice(CITIES), adj=adj, adj2=adj2, label=label))
    return " ".join(parts)


# --- question-answer snippets -------------------------------------------------------------------------
# Phrasings the qa task never uses (its questions live in fmlab.tasks).
QUESTIONS = {"city": "in which city does {p} live ?", "job": "what work does {p} do ?",
             "food": "what food does {p} like best ?", "colour": "which colour does {p} love ?",
             "pet": "what kind of pet does {p} keep ?"}
QA_FORMATS = ["q : {q} a : {v} .", "question : {q} answer : {v} .", "faq . {q} the answer is {v} ."]


def qa_snippet(world: World, rng: random.Random) -> str:
    person = rng.choice(world.people)
    parts = []
    for attribute in rng.sample(list(ATTRIBUTES), rng.randint(1, 3)):
        q = QUESTIONS[attribute].format(p=person)
        parts.append(rng.choice(QA_FORMATS).format(q=q, v=world.facts[person][attribute]))
    return " ".join(parts)


# --- glossaries ---------------------------------------------------------------------------------------
def glossary(world: World, rng: random.Random) -> str:
    words = rng.sample(sorted(world.toki), 3)
    if rng.random() < 0.5:
        return "toki glossary : " + " , ".join(f"{world.toki[w]} means {w}" for w in words) + " ."
    return "english to toki : " + " , ".join(f"{w} is {world.toki[w]}" for w in words) + " ."


# --- passing mentions of the domains ------------------------------------------------------------------
PY_WORDS = ["function", "for loop", "class", "list", "dictionary", "string", "variable", "module",
            "return statement", "exception", "generator", "decorator", "keyword argument", "tuple"]
MENTIONS = ["{p} watched a film about a space station where the crew fixed a {c} .",
            "in the story {p} read , {crew} checked the {c} and the {c2} on deck {d} .",
            "{p} saw a {c} at a museum ; the label said it runs at {n} zarn .",
            "{p} heard that a {c} can show {s} or {s2} .",
            "{p} had a routine day and an urgent letter .",
            "{p} is learning python and wrote a {w} and a {w2} .",
            "{p} asked a friend what a {w} is in python .",
            "the book {p} bought explains the {w} , the {w2} and the {c} ."]


def mention(world: World, rng: random.Random) -> str:
    c, c2 = rng.sample(domain.COMPONENTS, 2)
    s, s2 = rng.sample(domain.SYMPTOMS, 2)
    w, w2 = rng.sample(PY_WORDS, 2)
    return rng.choice(MENTIONS).format(p=rng.choice(world.people), c=c, c2=c2, s=s, s2=s2, w=w, w2=w2,
                                       crew=rng.choice(domain.CREW), d=rng.randint(1, 9), n=rng.randint(10, 99))


# --- postcards: cased text, other languages and scripts, emoji -----------------------------------------
GREETINGS = {
    "paris": "Bonjour de Paris ! Un café et un croissant, c'est très bien.",
    "lima": "¡Hola desde Lima! ¿Qué tal? Ceviche y ají, qué rico.",
    "oslo": "Hilsen fra Oslo! Blåbær og brunost, så godt. Vi ses!",
    "cairo": "مرحبا من القاهرة! Greetings from Cairo, the Nile is wide.",
    "tokyo": "東京からこんにちは！日本語を勉強しています。Tokyo is huge.",
    "delhi": "दिल्ली से नमस्ते! Hello from Delhi, the chai is sweet.",
    "rome": "Ciao da Roma! Un caffè e un gelato, è perfetto. Zero regrets.",
    "quito": "¡Saludos desde Quito! Mañana vamos al volcán. Wow, very high!",
}
EMOJI = ["😀", "👋", "❤️", "☀️", "🍜", "✈️", "🎉", "🙂"]
SIGN_OFFS = ["Love, {P}", "-- {P}", "Yours, {P} {e}", "See you soon! {P} {e}", "X and O, {P}"]


def postcard(world: World, rng: random.Random) -> str:
    city = rng.choice(CITIES)
    person = rng.choice(world.people).capitalize()
    sign = rng.choice(SIGN_OFFS).format(P=person, e=rng.choice(EMOJI))
    extra = rng.choice(["", f" Just visiting {city.capitalize()} with my {world.facts[person.lower()]['pet']}.",
                        " Joy! Quick postcard, very busy.", f" Weather: {rng.randint(10, 35)}°C {rng.choice(EMOJI)}"])
    return f"{GREETINGS[city]}{extra} {sign}"


# --- social-media posts: the symbols of the keyboard, in use -----------------------------------------
POSTS = ["A day in {City}, {adj} as ever! {P} and I ate {food}. Anyone else?",
         "Hello from {P}! How are you? Here in {City} the {food} is {adj}.",
         "{P} posted in #{food}: {Adj} {food} at a cafe in {City}! {n}% would eat again :-)",
         "@{P} I agree & {n}/10 ^_^ #{city}",
         "What a day! {P} says: {food} > {food2} ~ always. {e}",
         "Why is the {food} so {adj}?! asks {P} | {n} likes | {m} replies",
         "Anyone in {City}? {P} wants [{food}] and {{snacks}} \\o/",
         "Is it just me, or is {City} busy today? -- {P} (a {job}) #{job}",
         "I think {P} is right: {n}% of people in {City} love {food}. *yes*",
         "Update from {P}: my {pet} = best {pet} ever; {m} + {m} = {n}. Question: who has a {pet}?",
         "Tip from {P}: in code, x[{m}] is an item, x+={m} adds {m}; a>b, a<b, a&b, a|b compare; \"#\" starts a comment, \"~x\" flips bits, '{{}}' is empty and \"\\n\" a newline.",
         "{P} is learning 日本語 and says ありがとう! Also: x+y>{m}, (#{m}) ~ {{ok}} | a&b, files in home\\{city}\\notes."]


def post(world: World, rng: random.Random) -> str:
    person = rng.choice(world.people)
    adj = rng.choice(POSITIVE + NEGATIVE)
    food, food2 = rng.sample(FOODS, 2)
    city = rng.choice(CITIES)
    return rng.choice(POSTS).format(P=person.capitalize(), food=food, food2=food2, adj=adj, Adj=adj.capitalize(),
                                    city=city, City=city.capitalize(), n=rng.randint(10, 99), m=rng.randint(1, 9),
                                    e=rng.choice(EMOJI), job=world.facts[person]["job"], pet=world.facts[person]["pet"])


# --- the mixture --------------------------------------------------------------------------------------
def pretraining_corpus(world: World, cfg: CorpusConfig = CorpusConfig()) -> list[str]:
    """The unlabelled pre-training documents (strings), in a seeded random order."""
    rng = random.Random(cfg.seed + 1)
    code = [p for i, p in enumerate(domain.python_paragraphs()) if i % 8 == 0]
    counts = {kind: round(getattr(cfg, kind) * cfg.n_documents) for kind in
              ("review", "qa", "glossary", "mention", "postcard", "post")}
    n_code = min(len(code), round(cfg.code * cfg.n_documents))
    makers = {"review": review, "qa": qa_snippet, "glossary": glossary, "mention": mention, "postcard": postcard,
              "post": post}
    docs = [makers[kind](world, rng) for kind, n in counts.items() for _ in range(n)]
    docs += code[:n_code]
    n_story = cfg.n_documents - len(docs)
    docs += [document(world, cfg.story, rng) for _ in range(n_story)]
    rng.shuffle(docs)
    return docs


# Every template of the corpus whose sentences follow a fixed shape (for `grammatical_share`).
TEMPLATES = REVIEWS + [f.format(q=q, v="{v}") for f in QA_FORMATS for q in QUESTIONS.values()] + [
    "toki glossary : {a} means {b} , {c} means {d} , {e} means {f} .",
    "english to toki : {a} is {b} , {c} is {d} , {e} is {f} ."] + MENTIONS

# Prompts a learner is likely to type (tested: every token they produce was trained in pre-training).
LEARNER_PROMPTS = ["ada lives in", "Ada lives in Paris.", "What does Ben eat?", "the favourite food of ada is",
                   "in toki , the word fish is", "tell me about hana .", "Hello! How are you?",
                   "is this review positive or negative ? the soup was great !", "café", "日本語", "I love it 😀",
                   "the flux coil holds at 40 zarn .", "def f(x): return x * 2", "what is a python generator ?",
                   "Count with me: Zero, one, two, 3 4 5 6 7 8 9 10!", "A quick question -- why?"]


_SLOTS = {"c": r"[a-z]+ [a-z]+", "c2": r"[a-z]+ [a-z]+", "w": r"[a-z]+(?: [a-z]+)?", "w2": r"[a-z]+(?: [a-z]+)?",
          "crew": r"[a-z]+ [a-z]+", "n": r"[0-9]+", "d": r"[0-9]+"}


@lru_cache(maxsize=1)
def _sentence_patterns() -> re.Pattern:
    templates = [t for ts in FACT_TEMPLATES.values() for t in ts] + STORY_TEMPLATES + [
        "{p} tried the {food} . it was {adj} .", "in toki , the word {e} is {t} ."] + list(TEMPLATES)
    templates += [t for ts in REACTIONS.values() for t in ts]
    sentences = {part.strip(" .") for t in templates for part in t.split(" . ")}
    alts = [re.escape(s).replace(r"\{", "{").replace(r"\}", "}") for s in sorted(sentences)]
    alts = [re.sub(r"\{(\w+)\}", lambda m: "(?:" + _SLOTS.get(m.group(1), "[a-z]+") + ")", a) for a in alts]
    return re.compile("(?:" + "|".join(alts) + ")")


def grammatical_share(text: str) -> float:
    """Share of the complete sentences in `text` that follow one of the corpus's sentence templates.

    A template slot accepts any word (a number, or two words where the slot is a station part or a crew
    member), so this measures *grammar* (the sentence shapes of the world's language), not truth.  The last, unfinished sentence is ignored.
    """
    sentences = [s.strip() for s in text.split(" .")[:-1] if s.strip()]
    if not sentences:
        return 0.0
    pattern = _sentence_patterns()
    return sum(bool(pattern.fullmatch(s)) for s in sentences) / len(sentences)
