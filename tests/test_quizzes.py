"""Every notebook's quiz: valid data, balanced as displayed, not passable by a test-taking trick.

The quiz cell of a notebook builds its questions (`quiz.Question`) and passes them to `quiz.show`.  This test
runs just that cell (no training; `show` is replaced by a recorder) and checks what would be shown.
"""
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from fmlab import quiz

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _shown_quizzes(path: Path) -> list[list]:
    import nbformat
    shown = []
    recorder = SimpleNamespace(**{name: getattr(quiz, name) for name in quiz.__all__})
    recorder.show = lambda questions, *a, **k: shown.append(list(questions))
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and "quiz.Question" in cell.source and "quiz.show" in cell.source:
            exec(compile(cell.source, f"{path.name} quiz cell", "exec"), {"quiz": recorder})
    return shown


_CACHE: dict = {}


def _all() -> dict[str, list[list]]:
    if not _CACHE:
        _CACHE.update({path.name: _shown_quizzes(path) for path in NOTEBOOKS})
    return _CACHE


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_quiz_is_valid_and_balanced_as_displayed(name):
    quizzes = _all()[name]
    assert quizzes, f"{name} has no self-contained quiz cell (quiz.Question ... quiz.show)"
    questions = [q for qs in quizzes for q in qs]
    assert len(questions) >= 5
    quiz.validate(questions)
    positions = [key for qs in quizzes for _, key in quiz.layout(qs)]
    worst = max(positions.count(p) for p in set(positions))
    assert worst <= 0.4 * len(positions), f"{name}: {worst} of {len(positions)} answers in one position"


ABSOLUTE = {"always", "never", "only", "all", "none", "every", "must", "cannot", "impossible", "guarantees",
            "guaranteed", "entirely", "completely"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _pick(options, key) -> list[str]:
    """The options a trick picks: those with the best key (a tie splits the point among them)."""
    best = max(key(o) for o in options)
    return [o for o in options if key(o) == best]


TRICKS = {
    "pick the longest": lambda q: _pick(q.options, len),
    "pick the shortest": lambda q: _pick(q.options, lambda o: -len(o)),
    "pick the most words shared with the question": lambda q: _pick(
        q.options, lambda o: len(_words(o) & _words(q.question))),
    "avoid absolute words": lambda q: _pick(q.options, lambda o: -len(_words(o) & ABSOLUTE)),
}


def trick_score(questions, trick) -> float:
    """Expected number of right answers when a learner follows `trick` (ties broken at random)."""
    score = 0.0
    for q in questions:
        picked = trick(q)
        score += (q.answer in picked) / len(picked)
    return score


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_no_test_taking_trick_beats_chance(name):
    """In every notebook's quiz, no trick scores more than guessing does, rounded up to a whole question."""
    questions = [q for qs in _all()[name] for q in qs]
    chance = sum(1 / len(q.options) for q in questions)
    for trick_name, trick in TRICKS.items():
        got = trick_score(questions, trick)
        assert got <= math.ceil(chance) + 1e-9, (
            f"{name}: '{trick_name}' scores {got:.2f} of {len(questions)}; guessing scores {chance:.2f}")


def test_trick_scoring_counts_ties_fairly():
    qs = [quiz.Question("Which city is big?", "rome is big", ("oslo", "a", "b"), "explained here"),
          quiz.Question("Which one?", "xx", ("yy", "zz", "ww"), "explained here")]
    assert trick_score(qs, TRICKS["pick the longest"]) == 1 + 1 / 4
    assert trick_score(qs, TRICKS["pick the shortest"]) == 1 / 4
    assert trick_score(qs, TRICKS["pick the most words shared with the question"]) == 1 + 1 / 4


def test_final_quiz_covers_the_exam_items():
    final = max((qs for name, quizzes in _all().items() if name.startswith("09") for qs in quizzes), key=len)
    assert len(final) >= 25
    text = " ".join(f"{q.question} {q.answer} {q.explanation}".lower() for q in final)
    for item in ["pre-training", "fine-tuning", "continuous pre-training", "distillation", "instruction",
                 "domain adaptation", "transfer learning", "curation", "governance", "size", "label",
                 "representativ", "rlhf", "lora", "reft", "multitask", "forgetting"]:
        assert item in text, f"the final quiz never mentions {item!r}"


def test_unanswered_questions_reveal_nothing():
    q = quiz.Question("Which?", "right one", ("wrong one", "other one"), "because of section 1.")
    text = quiz.feedback([q], [None])
    assert "right one" not in text and "section 1" not in text and "0 / 1" in text
    assert "section 1" in quiz.feedback([q], ["wrong one"])
    assert quiz.score([q], ["right one"]) == 1.0 and quiz.score([q], [None]) == 0.0
    with pytest.raises(ValueError, match="not an option"):
        quiz.score([q], ["made up"])
    with pytest.raises(ValueError, match="distractors"):
        quiz.Question("Q?", "a", ("b",), "an explanation")


def test_layout_is_deterministic_and_balanced():
    qs = [quiz.Question(f"question {i}?", f"yes {i}", (f"no {i}", f"maybe {i}", f"never {i}"), "explained here")
          for i in range(8)]
    assert quiz.layout(qs) == quiz.layout(list(qs))
    keys = [k for _, k in quiz.layout(qs)]
    assert sorted(keys) == [0, 0, 1, 1, 2, 2, 3, 3]
    for (shown, k), q in zip(quiz.layout(qs), qs):
        assert shown[k] == q.answer and sorted(shown) == sorted(q.options)
