"""Every notebook's quiz: valid data, balanced as displayed, not passable by a test-taking trick.

The quiz cell of a notebook builds its questions (`quiz.Question`) and passes them to `quiz.show`.  This test
runs just that cell (no training; `show` is replaced by a recorder) and checks what would be shown.
"""
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


def test_longest_option_is_not_a_winning_strategy():
    questions = [q for quizzes in _all().values() for qs in quizzes for q in qs]
    longest = sum(max(q.options, key=len) == q.answer for q in questions)
    assert longest <= 0.35 * len(questions), f"'pick the longest' scores {longest}/{len(questions)}"


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
