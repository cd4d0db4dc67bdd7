"""Specialised domains: text with jargon and knowledge that general pre-training only brushed against.

1. ``station`` -- maintenance notes from an orbital station, generated from a seed.  Its jargon (flux coil,
   plasma valve, zarn, quell ...) is made of sub-word pieces the base model did read: the pre-training corpus
   mentions the station in passing (`fmlab.corpus`), as web text mentions every industry, but never says how
   the station works.  The notes carry the domain's *knowledge*: every symptom is either severe (a fault with
   it is urgent) or mild (routine), stated in general ("smoke is always urgent .") and for specific parts
   ("smoke in the cryo duct is urgent .").  The labelled task ``triage`` asks exactly that for a new log, so a
   model that has read the notes (continued pre-training) needs far fewer labelled logs than one that has
   not.  ``part_task`` asks for the jargon itself ("which part is in this log ?" -> "plasma valve").
2. ``python`` -- real text: the Python language reference that ships with every Python install
   (``pydoc_data.topics``).  No download, and nobody wrote it for this course.  One paragraph in eight goes to
   the pre-training corpus (web text contains documentation); the other seven form the domain corpus.
   The reference changes between Python versions: the shipped data/ was built with Python 3.11
   (`PYTHON_BUILT_WITH`); `python -m fmlab.foundation data` under another version writes different text (and
   then needs a new tokenizer and base model).  The notebooks only read the shipped, hash-checked files.
"""
from __future__ import annotations

import random
import re

__all__ = ["COMPONENTS", "SYMPTOMS", "SEVERE", "CREW", "triage_labels", "station_corpus", "held_out_inputs",
           "verbatim_in", "triage_task", "part_task", "python_paragraphs", "python_corpus", "PART_INSTRUCTION",
           "TRIAGE_INSTRUCTION"]

COMPONENTS = ["flux coil", "plasma valve", "gyro mast", "ion baffle", "cryo duct", "warp spindle",
              "grav plate", "quark pump"]
# Severe symptoms make a fault urgent, mild ones routine, whatever the part: the rule the notes teach.
SEVERE = ["spark", "smoke", "leak", "crack", "surge", "breach", "scorch", "jolt"]
MILD = ["hum", "drift", "flicker", "lag", "creep", "rattle", "frost", "squeak"]
SYMPTOMS = SEVERE + MILD
CREW = ["tech vorn", "tech alize", "chief daro", "mate kesh", "cadet ulo"]
ACTIONS = {"urgent": ["seal the bay", "call the chief", "quell the core", "cut the feed"],
           "routine": ["log it", "recheck next shift", "tighten the mount", "note the reading"]}
_PAIR_STATEMENTS = ["{s} in the {c} is {u} .", "when the {c} shows {s} , the matter is {u} .",
                    "a {c} with {s} counts as {u} ."]
_RULE_STATEMENTS = ["{s} is always {u} .", "the crew treats any {s} as {u} .", "{s} anywhere on deck is {u} ."]
_NOTES = ["{crew} reads the {c} at {n} zarn .", "the {c} holds at {n} zarn after the spool test .",
          "{crew} ran a spool test on the {c} .", "the {c} was rebuilt by {crew} on deck {d} .",
          "deck {d} reports the {c} is nominal ."]
TRIAGE_INSTRUCTION = "is this log urgent or routine ?"
PART_INSTRUCTION = "which part is in this log ?"


def triage_labels() -> dict[tuple[str, str], str]:
    """The domain's knowledge: urgent / routine for each (component, symptom) -- set by the symptom alone, a
    fixed rule (the notes and the task must agree on it)."""
    return {(c, s): "urgent" if s in SEVERE else "routine" for c in COMPONENTS for s in SYMPTOMS}


def _note(rng: random.Random, labels: dict) -> tuple[list[str], list[str]]:
    """One note as (its labelled incident report -- a logged fault and its verdict -- or [], the other sentences)."""
    (c, s), u = rng.choice(sorted(labels.items()))
    statement = rng.choice(_PAIR_STATEMENTS if rng.random() < 0.5 else _RULE_STATEMENTS)
    report = []
    if rng.random() < 0.5:           # a logged fault and what the crew made of it, as a shift report has it
        report = [_log(rng.choice(CREW), s, c, rng.randint(10, 99)), f"it was {u} ."]
    rest = [statement.format(c=c, s=s, u=u)]
    if rng.random() < 0.5:
        rest.append(f"for {s} in the {c} , {rng.choice(ACTIONS[u])} .")
    for _ in range(rng.randint(1, 3)):
        rest.append(rng.choice(_NOTES).format(crew=rng.choice(CREW), c=rng.choice(COMPONENTS),
                                              n=rng.randint(10, 99), d=rng.randint(1, 9)))
    head = [] if report else rest[:1]        # a report opens its note; otherwise the statement does
    tail = rest[len(head):]
    rng.shuffle(tail)
    return report, head + tail


def held_out_inputs(seed: int = 0) -> set[str]:
    """The inputs of the triage task's validation and test logs (``triage_task(seed)``): no note may contain one."""
    return {e["input"] for split, examples in triage_task(seed).items() if split != "train" for e in examples}


def station_corpus(n_documents: int = 3000, seed: int = 0, labelled_reports: bool = True) -> list[str]:
    """Unlabelled station maintenance notes (continued pre-training data).

    Decontaminated: a note that would contain a validation or test input of `triage_task()` verbatim is drawn
    again (the first version of these notes held 3 of the 400 test logs and 4 of the 200 validation logs, each
    with its verdict: a model that read them had seen those answers).  Still, about half the notes open with
    a *labelled incident report* -- a logged fault in the task's own format and its verdict ("... logs smoke in
    the flux coil at 40 zarn . it was urgent .") -- as real domain text holds labelled cases (reports that
    state their outcome): weak supervision inside "unlabelled" text.  ``labelled_reports=False`` writes the
    same notes (same draws) without those two sentences, to measure how much of a gain comes from them.
    """
    rng, labels, held_out = random.Random(f"station-{seed}"), triage_labels(), held_out_inputs()
    notes = []
    while len(notes) < n_documents:
        report, rest = _note(rng, labels)
        if any(log in held_out for log in report):       # contamination: draw this note again
            continue
        notes.append(" ".join((report if labelled_reports else []) + rest))
    return notes


def verbatim_in(inputs, documents: list[str]) -> set[str]:
    """The inputs that occur verbatim (as substrings) in the documents: the contamination check.

    Fast on megabytes: an input is looked for only in the documents holding the rarest word trigram inside it
    (its first and last words may be the ends of longer words); inputs too short for a trigram are searched
    for in the whole text.
    """
    where: dict[tuple, set[int]] = {}
    for i, doc in enumerate(documents):
        words = doc.split()
        for gram in zip(words, words[1:], words[2:]):
            where.setdefault(gram, set()).add(i)
    text, found = None, set()
    for x in set(inputs):
        inner = x.split()[1:-1]
        grams = list(zip(inner, inner[1:], inner[2:]))
        if grams and "\n" not in x:
            hit = any(x in documents[i] for i in min((where.get(g, set()) for g in grams), key=len))
        else:
            text = "\n".join(documents) if text is None else text
            hit = x in text
        if hit:
            found.add(x)
    return found


def _log(crew: str, s: str, c: str, n: int) -> str:
    return f"{crew} logs {s} in the {c} at {n} zarn ."


def triage_task(seed: int = 0) -> dict[str, list[dict]]:
    """Labelled domain task: 'tech vorn logs smoke in the gyro mast at 40 zarn .' -> 'urgent' / 'routine'.

    Splits by (component, symptom) pair: test pairs never appear in train or val, so a model must know the
    symptom's severity -- from the labelled logs of *other* parts with that symptom, or from the notes.
    train holds up to 1 024 examples over 80 pairs, val 200 over 16, test 400 over 32.
    """
    rng, labels = random.Random(f"triage-task-{seed}"), triage_labels()
    pairs = sorted(labels)
    rng.shuffle(pairs)
    n_train, n_val = len(pairs) * 5 // 8, len(pairs) // 8
    split_pairs = {"train": pairs[:n_train], "val": pairs[n_train:n_train + n_val], "test": pairs[n_train + n_val:]}
    out = {}
    for split, ps in split_pairs.items():
        examples = sorted({(_log(crew, s, c, n), labels[(c, s)]) for c, s in ps for crew in CREW
                           for n in range(10, 100, 3)})
        rng.shuffle(examples)
        n_keep = {"train": 1024, "val": 200, "test": 400}[split]
        out[split] = [{"task": "triage", "instruction": TRIAGE_INSTRUCTION, "input": i, "output": o}
                      for i, o in examples[:n_keep]]
    return out


def _part(log: str) -> str:
    """The component named in a triage log '<crew> logs <symptom> in the <component> at <n> zarn .'."""
    return log.split(" in the ", 1)[1].split(" at ", 1)[0]


def part_task(triage: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Labelled jargon task on the triage logs: the answer is the component's name (e.g. 'flux coil').

    Same logs and splits as `triage_task` (pass its output, or ``foundation.load_task("triage")``), so test
    logs pair components and symptoms never seen together in train.
    """
    if not triage or any(e.get("task") != "triage" for split in triage.values() for e in split):
        raise ValueError("part_task needs the triage splits: pass domain.triage_task() or load_task('triage')")
    return {split: [{"task": "part", "instruction": PART_INSTRUCTION, "input": e["input"], "output": _part(e["input"])}
                    for e in examples] for split, examples in triage.items()}


_ASCII = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...", "\u2014": "--",
          "\u2013": "-"}


PYTHON_BUILT_WITH = (3, 11)      # the Python whose pydoc_data.topics made the shipped data/


def python_paragraphs() -> list[str]:
    """The Python language reference shipped with CPython, as lower-cased paragraphs of plain ASCII.

    Typographic quotes and dashes become their ASCII forms; the few paragraphs with other non-ASCII
    characters (a 'ß', a '°') and exact repeats are dropped -- curation, so every character of the domain is
    common and no paragraph is both pre-training text and domain text.
    """
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    for a, b in _ASCII.items():
        text = text.replace(a, b)
    paragraphs = [re.sub(r"\s+", " ", p).strip().lower() for p in text.split("\n\n")]
    unique = dict.fromkeys(p for p in paragraphs if len(p) > 40 and p.isascii())     # the reference repeats some
    return list(unique)


def python_corpus(max_chars: int | None = None) -> list[str]:
    """The Python domain corpus: seven paragraphs in eight (the eighth is pre-training text, `corpus`)."""
    docs = [p for i, p in enumerate(python_paragraphs()) if i % 8]
    if max_chars is None:
        return docs
    out, total = [], 0
    for d in docs:
        if total >= max_chars:
            break
        out.append(d)
        total += len(d)
    return out
