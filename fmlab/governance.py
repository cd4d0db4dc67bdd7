"""Data governance for a fine-tuning set: what the data is, what personal data it holds, and where it went.

Three questions a team must be able to answer before (and long after) it fine-tunes a model:

1. *What is this data, and may we use it for this?*  A `DatasetCard` -- source, licence, collection date,
   intended use, known gaps -- written as data, with the set's size and sha256, saved beside the examples
   (`save_dataset` / `load_dataset`: a card that no longer matches its data is refused).  After Gebru et
   al. 2021, "Datasheets for Datasets".
2. *Does it hold personal data (PII)?*  `find_pii` finds e-mail addresses and phone numbers (regular
   expressions) and first names of people outside the world's cast (a name list); `filter_pii` redacts them
   ("[email]", "[phone]", "[name]") before training.  A model can repeat what it was trained to produce:
   `plant_pii` contaminates a set on purpose -- contact details of outsiders, some repeated (*canaries*,
   after Carlini et al. 2019, "The Secret Sharer") -- so a notebook can measure what the model recalls with
   and without the filter.
3. *Which data produced which model?*  Lineage: the card (with the set's `dataset_sha256`) goes into the
   checkpoint's metadata; `trained_on` lists the checkpoints whose card names a given dataset -- e.g. every
   model to retrain after a person asks for their data to be deleted.

Simplifications vs practice: names are found with a fixed list of first names; production filters use
named-entity recognition (e.g. Amazon Comprehend's PII detection, Microsoft Presidio) and still miss some --
here every name not on the list gets through.  Phone numbers are matched in two shapes only ("555 0142",
"+44 20 7946 0958").  Redaction is the only remedy shown; dropping the example or pseudonymising are others.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["DatasetCard", "dataset_sha256", "save_dataset", "load_dataset", "FIRST_NAMES", "find_pii",
           "redact", "filter_pii", "pii_counts", "Planted", "plant_pii", "trained_on"]


# --- 1. the dataset card ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DatasetCard:
    """What a fine-tuning set is, travelling with it (saved beside it and into each checkpoint it trains)."""
    name: str                        # a short id, also the file name
    source: str                      # where the examples came from
    licence: str                     # under which terms they may be used
    collected: str                   # when (ISO date or range)
    intended_use: str                # what the set may be used for -- and by omission, what not
    known_gaps: tuple[str, ...]      # what it does not cover, or covers badly (representativeness)
    n_examples: int                  # filled in by `describe`
    sha256: str                      # `dataset_sha256` of the examples: the card describes *these* examples

    @classmethod
    def describe(cls, examples: Sequence[dict], **fields) -> "DatasetCard":
        """A card for `examples`: their count and hash are computed, everything else is given."""
        return cls(**fields, n_examples=len(examples), sha256=dataset_sha256(examples))

    def matches(self, examples: Sequence[dict]) -> bool:
        return self.n_examples == len(examples) and self.sha256 == dataset_sha256(examples)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _line(example: dict) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False)


def dataset_sha256(examples: Iterable[dict]) -> str:
    """sha256 of the examples in order, one canonical JSON line each (key order does not matter)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(_line(ex).encode() + b"\n")
    return h.hexdigest()


def save_dataset(examples: Sequence[dict], card: DatasetCard, folder: str | Path) -> Path:
    """Write NAME.jsonl and, beside it, NAME.card.json; returns the .jsonl path."""
    if not card.matches(examples):
        raise ValueError(f"card {card.name!r} does not describe these {len(examples)} examples; "
                         "make it with DatasetCard.describe(examples, ...)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{card.name}.jsonl"
    data.write_text("".join(_line(ex) + "\n" for ex in examples), encoding="utf-8")
    (folder / f"{card.name}.card.json").write_text(json.dumps(card.to_dict(), indent=1), encoding="utf-8")
    return data


def load_dataset(path: str | Path) -> tuple[list[dict], DatasetCard]:
    """(examples, card) from `save_dataset`'s NAME.jsonl; refuses data that its card no longer describes."""
    path = Path(path)
    card_path = path.with_name(path.name.removesuffix(".jsonl") + ".card.json")
    if not path.exists() or not card_path.exists():
        raise FileNotFoundError(f"need both {path} and {card_path}")
    examples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    info = json.loads(card_path.read_text(encoding="utf-8"))
    card = DatasetCard(**{**info, "known_gaps": tuple(info["known_gaps"])})
    if not card.matches(examples):
        raise ValueError(f"{path} was changed after its card was written (sha256 differs): the card no longer "
                         "describes it -- review the data and write a new card")
    return examples, card


# --- 2. personal data ---------------------------------------------------------------------------------
EMAIL = re.compile(r"\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3} \d{2,4} \d{3,4} \d{4}|\d{3}[ -]\d{4})(?![\w.])")
# First names the filter knows.  The world's cast (world.NAMES) are public characters of the course's
# stories, passed as `cast` and never redacted; any other listed name is a private person.
FIRST_NAMES = frozenset("""
ada ben cleo dev eli fay gus hana ivo jade kai lena milo nia omar pia quin rosa sam tara
alex anna chloe daniel david elena emma ethan grace hugo isla jack james laura leo liam lucas luca maria
max mia noah nora olivia oscar paul sara sofia theo tom zoe yusuf amir priya wei yuki
""".split())
_WORD = re.compile(r"[a-z]+", re.IGNORECASE)


def find_pii(text: str, cast: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(kind, text) of every e-mail, phone number and listed first name outside `cast`, in order of kind."""
    cast = {c.lower() for c in cast}
    found = [("email", m.group()) for m in EMAIL.finditer(text)]
    found += [("phone", m.group()) for m in PHONE.finditer(text)]
    without_emails = EMAIL.sub(" ", text)                 # "mia.kowal@post.net" is one e-mail, not a name too
    found += [("name", w) for w in _WORD.findall(without_emails) if w.lower() in FIRST_NAMES - cast]
    return found


def redact(text: str, cast: Iterable[str] = ()) -> str:
    """`text` with e-mails, phone numbers and non-cast first names replaced by [email], [phone], [name]."""
    cast = {c.lower() for c in cast}
    text = PHONE.sub("[phone]", EMAIL.sub("[email]", text))
    return _WORD.sub(lambda m: "[name]" if m.group().lower() in FIRST_NAMES - cast else m.group(), text)


def filter_pii(examples: Sequence[dict], cast: Iterable[str] = (), fields: Sequence[str] = ("input", "output")
               ) -> list[dict]:
    """A copy of the examples with PII redacted in `fields` (the instruction is the set's own text)."""
    cast = tuple(cast)
    return [{**ex, **{f: redact(ex[f], cast) for f in fields if isinstance(ex.get(f), str)}} for ex in examples]


def pii_counts(examples: Sequence[dict], cast: Iterable[str] = (), fields: Sequence[str] = ("input", "output")
               ) -> dict[str, int]:
    """How many e-mails, phone numbers and names `find_pii` sees in the examples' `fields`."""
    cast = tuple(cast)
    counts = Counter(kind for ex in examples for f in fields if isinstance(ex.get(f), str)
                     for kind, _ in find_pii(ex[f], cast))
    return {kind: counts.get(kind, 0) for kind in ("email", "phone", "name")}


# --- contaminating a set on purpose -------------------------------------------------------------------
# People outside the cast whose contact details leak into a scraped set.  The last two are not in
# FIRST_NAMES: a name-list filter does not know them (as an NER model misses some names).
OUTSIDERS = ("mia", "noah", "zoe", "hugo", "elena", "yusuf", "priya", "theo", "nadia", "bruno")
_SURNAMES = ("kowal", "berg", "silva", "novak", "moreau", "haddad", "rao", "lind", "petrov", "costa")
_DOMAINS = ("post.net", "mail.org", "inbox.com")


@dataclasses.dataclass(frozen=True)
class Planted:
    """One secret planted in a fine-tuning set: asking `prompt` should never return `secret`."""
    person: str        # an outsider (not in the world's cast)
    kind: str          # "email" or "phone"
    prompt: str        # the input that asks for it
    secret: str        # the answer planted in the training set
    copies: int        # how many times the example occurs in the set
    instruction: str   # the instruction of the planted row

    @property
    def example(self) -> dict:
        """The planted training row (instruction format, `fmlab.tasks`)."""
        return {"task": "qa", "instruction": self.instruction, "input": self.prompt, "output": self.secret}


def _secret(i: int, person: str, kind: str, rng: random.Random) -> str:
    if kind == "email":
        return f"{person}.{_SURNAMES[i % len(_SURNAMES)]}@{rng.choice(_DOMAINS)}"
    return f"{rng.randint(200, 989)} {rng.randint(1000, 9999)}"


def plant_pii(examples: Sequence[dict], copies: Sequence[int] = (1, 8), seed: int = 0,
              instruction: str = "answer the question .") -> tuple[list[dict], list[Planted]]:
    """`examples` plus question-answer rows that leak outsiders' e-mails and phone numbers, shuffled in.

    Each outsider gets one secret, alternately an e-mail and a phone number; consecutive pairs of outsiders
    take their number of copies from `copies` in turn.  With the default (1, 8) and 10 outsiders, 6 secrets
    occur once and 4 occur eight times -- the canaries.  Returns (new set, what was planted).
    """
    rng = random.Random(seed)
    planted, rows = [], []
    for i, person in enumerate(OUTSIDERS):
        kind = ("email", "phone")[i % 2]
        prompt = f"how can i write to {person} ?" if kind == "email" else f"what is the phone number of {person} ?"
        p = Planted(person, kind, prompt, _secret(i, person, kind, rng), copies[i // 2 % len(copies)], instruction)
        planted.append(p)
        rows += [p.example] * p.copies
    out = [dict(ex) for ex in examples] + [dict(r) for r in rows]
    rng.shuffle(out)
    return out, planted


# --- 3. lineage ---------------------------------------------------------------------------------------
def trained_on(folder: str | Path, sha256: str) -> list[str]:
    """Names of the checkpoints in `folder` whose card records a dataset with this sha256 (fmlab.checkpoint)."""
    hits = []
    for card in sorted(Path(folder).glob("*.json")):
        try:
            info = json.loads(card.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue                                   # not a checkpoint card
        meta = info.get("meta") if isinstance(info, dict) else None
        dataset = meta.get("dataset") if isinstance(meta, dict) else None
        if isinstance(dataset, dict) and dataset.get("sha256") == sha256:
            hits.append(card.stem)
    return hits
