"""Every notebook's quiz is data: each question has distinct options, exactly one answer and an explanation.

The quiz cell of a notebook assigns a list of `quiz.Question` to a name ending in QUESTIONS (any case); this test runs
just that assignment (no training) and validates it, so a broken quiz fails fast, before nbval.
"""
import ast
from pathlib import Path

import pytest

from fmlab import quiz

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _quiz_lists(path: Path) -> list[list]:
    import nbformat
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or "quiz.Question(" not in cell.source:
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and any(
                    isinstance(t, ast.Name) and t.id.upper().endswith("QUESTIONS") for t in node.targets):
                found.append(eval(compile(ast.Expression(node.value), str(path), "eval"), {"quiz": quiz}))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_valid_quiz(path):
    lists = _quiz_lists(path)
    assert lists, f"{path.name} has no QUESTIONS = [quiz.Question(...), ...] cell"
    for questions in lists:
        assert len(questions) >= 3
        quiz.validate(questions)
        for q in questions:
            assert sum(i == q.answer for i in range(len(q.options))) == 1
