"""Every notebook's quiz is data: each question has distinct options, exactly one answer and an explanation.

The quiz cell of a notebook builds its questions (`quiz.Question`) and passes them to `quiz.show`.  This test
runs just that cell (no training; `show` is replaced by a recorder) and validates what was shown, so a broken
quiz fails fast, before nbval runs the whole notebook.
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_valid_quiz(path):
    quizzes = _shown_quizzes(path)
    assert quizzes, f"{path.name} has no self-contained quiz cell (quiz.Question ... quiz.show)"
    for questions in quizzes:
        assert len(questions) >= 3
        quiz.validate(questions)
        for q in questions:
            assert isinstance(q, quiz.Question)
            assert sum(i == q.answer for i in range(len(q.options))) == 1 and q.explanation.strip()
