"""Specialised domains: text with jargon the base model never read.

1. ``station`` -- maintenance notes from an orbital station, generated from a seed.  It has its own
   vocabulary (flux coil, plasma valve, zarn, quell ...), its own style, and its own *knowledge*: for every
   (component, symptom) pair the notes say whether it is urgent or routine.  The labelled domain task
   ``triage`` asks exactly that, so a model that has read the notes (continued pre-training) needs far
   fewer labelled examples than one that has not.  ``part_task`` asks for the jargon itself ("which part is
   in this log ?" -> "plasma valve"), on the same logs and splits.
2. ``python`` -- real text: the Python language reference that ships with every Python install
   (``pydoc_data.topics``, ~465 k characters).  No download, and nobody wrote it for this course.
"""
from __future__ import annotations

import random
import re

__all__ = ["COMPONENTS", "SYMPTOMS", "triage_labels", "station_corpus", "triage_task", "part_task", "python_corpus"]

COMPONENTS = ["flux coil", "plasma valve", "gyro mast", "ion baffle", "cryo duct", "warp spindle",
              "grav plate", "quark pump"]
SYMPTOMS = ["drift", "flicker", "hum", "frost", "spark", "lag", "creep", "rattle"]
CREW = ["tech vorn", "tech alize", "chief daro", "mate kesh", "cadet ulo"]
ACTIONS = {"urgent": ["seal the bay", "call the chief", "quell the core", "cut the feed"],
           "routine": ["log it", "recheck next shift", "tighten the mount", "note the reading"]}
_STATEMENTS = ["{s} in the {c} is {u} .", "when the {c} shows {s} , the matter is {u} .",
               "a {c} with {s} counts as {u} ."]
_NOTES = ["{crew} reads the {c} at {n} zarn .", "the {c} holds at {n} zarn after the spool test .",
          "{crew} ran a spool test on the {c} .", "the {c} was rebuilt by {crew} on deck {d} .",
          "deck {d} reports the {c} is nominal ."]


def triage_labels(seed: int = 0) -> dict[tuple[str, str], str]:
    """The domain's knowledge: urgent / routine for each (component, symptom), balanced, seeded."""
    rng = random.Random(f"triage-{seed}")
    pairs = [(c, s) for c in COMPONENTS for s in SYMPTOMS]
    labels = ["urgent", "routine"] * (len(pairs) // 2)
    rng.shuffle(labels)
    return dict(zip(pairs, labels))


def _note(rng: random.Random, labels: dict) -> str:
    (c, s), u = rng.choice(sorted(labels.items()))
    sentences = [rng.choice(_STATEMENTS).format(c=c, s=s, u=u)]
    if rng.random() < 0.5:
        sentences.append(f"for {s} in the {c} , {rng.choice(ACTIONS[u])} .")
    for _ in range(rng.randint(1, 3)):
        sentences.append(rng.choice(_NOTES).format(crew=rng.choice(CREW), c=rng.choice(COMPONENTS),
                                                   n=rng.randint(10, 99), d=rng.randint(1, 9)))
    rng.shuffle(sentences)
    return " ".join(sentences)


def station_corpus(n_documents: int = 3000, seed: int = 0) -> list[str]:
    """Unlabelled station maintenance notes (continued pre-training data)."""
    rng, labels = random.Random(f"station-{seed}"), triage_labels(seed)
    return [_note(rng, labels) for _ in range(n_documents)]


def triage_task(seed: int = 0) -> dict[str, list[dict]]:
    """Labelled domain task: 'log : the gyro mast shows frost .' -> 'urgent' / 'routine'.

    Splits by (component, symptom) pair: test pairs never appear in train, so only a model that knows
    the domain can answer them; train holds up to 1 024 examples over the remaining pairs.
    """
    rng, labels = random.Random(f"triage-task-{seed}"), triage_labels(seed)
    pairs = sorted(labels)
    rng.shuffle(pairs)
    split_pairs = {"train": pairs[:40], "val": pairs[40:48], "test": pairs[48:]}
    out = {}
    for split, ps in split_pairs.items():
        examples = set()
        for c, s in ps:
            for crew in CREW:
                for n in range(10, 100, 3):
                    examples.add((f"{crew} logs {s} in the {c} at {n} zarn .", labels[(c, s)]))
        examples = sorted(examples)
        rng.shuffle(examples)
        n_keep = {"train": 1024, "val": 200, "test": 400}[split]
        out[split] = [{"task": "triage", "instruction": "is this log urgent or routine ?", "input": i,
                       "output": o} for i, o in examples[:n_keep]]
    return out


PART_INSTRUCTION = "which part is in this log ?"


def _part(log: str) -> str:
    """The component named in a triage log '<crew> logs <symptom> in the <component> at <n> zarn .'."""
    return log.split(" in the ", 1)[1].split(" at ", 1)[0]


def part_task(triage: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Labelled jargon task on the triage logs: the answer is the component's name (e.g. 'flux coil').

    Same logs and splits as `triage_task` (pass its output, or ``foundation.load_task("triage")``), so test
    logs pair components and symptoms never seen together in train.  The answers are jargon words: a model
    must be able to *produce* them, which a model that never read the domain cannot do from a few examples.
    """
    if not triage or any(e.get("task") != "triage" for split in triage.values() for e in split):
        raise ValueError("part_task needs the triage splits: pass domain.triage_task() or load_task('triage')")
    return {split: [{"task": "part", "instruction": PART_INSTRUCTION, "input": e["input"], "output": _part(e["input"])}
                    for e in examples] for split, examples in triage.items()}


def python_corpus(max_chars: int = 465_000) -> list[str]:
    """The Python language reference shipped with CPython, as lower-cased paragraphs."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))[:max_chars]
    paragraphs = [re.sub(r"\s+", " ", p).strip().lower() for p in text.split("\n\n")]
    return [p for p in paragraphs if len(p) > 40]
