"""Quizzes and exercise checks, once for the whole course.

A quiz is *data*: a list of `Question` (question, options, index of the one correct option, explanation
that says where in the course the learner saw it happen).  `show` renders it with ipywidgets (7.7-safe:
RadioButtons, Button, Output, VBox only), and `score` grades a list of choices without any widget --
which is what tests and scripts use.

Exercises: the learner assigns an answer to a variable (None until attempted), and `check` compares it
with the measured truth: a green tick, a hint that names what to look at, or "not attempted yet".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["Question", "validate", "score", "show", "check"]


@dataclass(frozen=True)
class Question:
    question: str               # the question as asked
    options: tuple[str, ...]    # 3-5 answer options
    answer: int                 # index of the one correct option
    explanation: str            # why, and where in the course this was measured

    def __post_init__(self):
        validate([self])


def validate(questions: Sequence[Question]) -> None:
    """Every question has >= 2 distinct options, exactly one valid answer index, and an explanation."""
    for q in questions:
        if len(q.options) < 2 or len(set(q.options)) != len(q.options):
            raise ValueError(f"question needs >= 2 distinct options: {q.question!r}")
        if not 0 <= q.answer < len(q.options):
            raise ValueError(f"answer index {q.answer} out of range for {q.question!r}")
        if len(q.explanation.strip()) < 10:
            raise ValueError(f"question lacks an explanation: {q.question!r}")


def score(questions: Sequence[Question], choices: Sequence[int | None]) -> float:
    """Share of questions answered correctly (unanswered = wrong)."""
    if len(choices) != len(questions):
        raise ValueError(f"got {len(choices)} choices for {len(questions)} questions")
    return sum(c == q.answer for q, c in zip(questions, choices)) / len(questions)


def show(questions: Sequence[Question], title: str = "Quiz"):
    """Render the quiz as widgets: pick an option per question, press 'Check' for the score and explanations."""
    import ipywidgets as widgets
    from IPython.display import display

    radios = [widgets.RadioButtons(options=list(q.options), value=None, layout=widgets.Layout(width="auto"))
              for q in questions]
    out = widgets.Output()
    button = widgets.Button(description="Check answers", button_style="primary")

    def on_check(_=None):
        choices = [None if r.value is None else list(q.options).index(r.value) for q, r in zip(questions, radios)]
        out.clear_output()
        with out:
            for i, (q, c) in enumerate(zip(questions, choices), 1):
                mark = "✅" if c == q.answer else ("⬜ (no answer)" if c is None else "❌")
                print(f"{i}. {mark}  answer: {q.options[q.answer]}\n   {q.explanation}\n")
            print(f"score: {score(questions, choices):.0%}")

    button.on_click(on_check)
    items = [widgets.HTML(f"<h3>{title}</h3>")]
    for i, (q, r) in enumerate(zip(questions, radios), 1):
        items += [widgets.HTML(f"<b>{i}. {q.question}</b>"), r]
    box = widgets.VBox(items + [button, out])
    display(box)
    return box


def check(name: str, answer: Any, expected: Any, hint: str, tol: float = 0.0,
          compare: Callable[[Any, Any], bool] | None = None) -> bool:
    """Check an exercise answer; prints the verdict and returns True when correct.

    Numbers match within `tol` (absolute); other values with `compare` or ==.  None means not attempted.
    """
    if answer is None:
        print(f"⏳ {name}: not attempted yet -- write your answer in the cell above and run it again.")
        return False
    if compare is not None:
        ok = compare(answer, expected)
    elif isinstance(expected, (int, float)) and isinstance(answer, (int, float)):
        ok = abs(float(answer) - float(expected)) <= tol
    else:
        ok = answer == expected
    print(f"✅ {name}: correct." if ok else f"❌ {name}: not quite. Hint: {hint}")
    return bool(ok)
