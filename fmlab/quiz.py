"""Quizzes and exercise checks, once for the whole course.

A quiz is *data*: a list of `Question` -- the question, the correct answer written out (by value), the
distractors (plausible misconceptions, not jokes) and an explanation that says where in the course the
learner saw it happen.  The data stays readable because the key is the text of the answer, not a position.

`layout` decides the order in which the options are shown: deterministic (a function of the questions'
text), shuffled, and balanced so that the correct answer sits in every position about equally often across
a quiz -- nobody can pass by always picking "B".  `show` renders the quiz with ipywidgets (7.7-safe:
RadioButtons, Button, Output, HTML, VBox only): a question is graded only once it is answered, and an
unanswered question never reveals its key.  `score` grades chosen option texts without any widget (tests,
scripts).

Exercises: the learner assigns an answer to a variable (None until attempted), and `check` compares it
with what the run measured: a green tick, a hint that names what to look at, or "not attempted yet".
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["Question", "validate", "layout", "score", "feedback", "show", "check"]


@dataclass(frozen=True)
class Question:
    question: str                   # the question as asked (exam style: often a short scenario)
    answer: str                     # the correct option, written out
    distractors: tuple[str, ...]    # 2-4 wrong options: plausible misconceptions
    explanation: str                # why, and where in the course this was measured

    def __post_init__(self):
        validate([self])

    @property
    def options(self) -> tuple[str, ...]:
        """All options, correct first (the display order comes from `layout`)."""
        return (self.answer, *self.distractors)


def validate(questions: Sequence[Question]) -> None:
    """Every question has 3-5 distinct non-empty options and an explanation."""
    for q in questions:
        if not isinstance(q.distractors, tuple) or not 2 <= len(q.distractors) <= 4:
            raise ValueError(f"give 2-4 distractors as a tuple: {q.question!r}")
        opts = [o.strip() for o in q.options]
        if not all(opts) or len(set(opts)) != len(opts):
            raise ValueError(f"options must be distinct and non-empty: {q.question!r}")
        if len(q.explanation.strip()) < 10:
            raise ValueError(f"question lacks an explanation: {q.question!r}")


def _seed(questions: Sequence[Question]) -> int:
    text = "\n".join(q.question for q in questions).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def layout(questions: Sequence[Question]) -> list[tuple[tuple[str, ...], int]]:
    """(options in display order, index of the correct one) per question.

    Deterministic and balanced: each question puts its answer in the position used least so far in this
    quiz (ties broken by a seeded shuffle), and the distractors fill the other places in a seeded order.
    """
    validate(questions)
    rng = random.Random(_seed(questions))
    used: dict[int, int] = {}
    out = []
    for q in questions:
        n = len(q.options)
        places = list(range(n))
        rng.shuffle(places)
        key = min(places, key=lambda p: used.get(p, 0))
        used[key] = used.get(key, 0) + 1
        others = list(q.distractors)
        rng.shuffle(others)
        shown = others[:key] + [q.answer] + others[key:]
        out.append((tuple(shown), key))
    return out


def score(questions: Sequence[Question], choices: Sequence[str | None]) -> float:
    """Share of questions whose chosen option text is the answer (None = unanswered = wrong)."""
    if len(choices) != len(questions):
        raise ValueError(f"got {len(choices)} choices for {len(questions)} questions")
    for q, c in zip(questions, choices):
        if c is not None and c not in q.options:
            raise ValueError(f"{c!r} is not an option of {q.question!r}")
    return sum(c == q.answer for q, c in zip(questions, choices)) / len(questions)


def feedback(questions: Sequence[Question], choices: Sequence[str | None]) -> str:
    """The text `show` prints on 'Check answers': a verdict and the explanation for each answered question;
    an unanswered question gets neither, so checking an empty quiz reveals nothing."""
    lines = []
    for i, (q, c) in enumerate(zip(questions, choices), 1):
        if c is None:
            lines.append(f"{i}. ⬜ not answered yet -- pick an option, then check again.\n")
        elif c == q.answer:
            lines.append(f"{i}. ✅ {q.explanation}\n")
        else:
            lines.append(f"{i}. ❌ not \"{c}\". {q.explanation}\n")
    answered = sum(c is not None for c in choices)
    lines.append(f"score: {sum(c == q.answer for q, c in zip(questions, choices))} / {len(questions)}"
                 f"  ({answered} answered)")
    return "\n".join(lines)


def show(questions: Sequence[Question], title: str = "Quiz") -> None:
    """Render the quiz as widgets: pick an option per question, press 'Check answers' for feedback.

    Displays the quiz and returns None, so a quiz call as a cell's last line shows it once."""
    import ipywidgets as widgets
    from IPython.display import display

    arranged = layout(questions)
    radios = [widgets.RadioButtons(options=list(opts), value=None, layout=widgets.Layout(width="auto"))
              for opts, _ in arranged]
    out = widgets.Output()
    button = widgets.Button(description="Check answers", button_style="primary")

    def on_check(_=None):
        out.clear_output()
        with out:
            print(feedback(questions, [r.value for r in radios]))

    button.on_click(on_check)
    items = [widgets.HTML(f"<h3>{title}</h3>")]
    for i, (q, r) in enumerate(zip(questions, radios), 1):
        items += [widgets.HTML(f"<b>{i}. {q.question}</b>"), r]
    box = widgets.VBox(items + [button, out])
    display(box)


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
    elif isinstance(expected, (int, float)) and isinstance(answer, (int, float)) and not isinstance(answer, bool):
        ok = abs(float(answer) - float(expected)) <= tol
    else:
        ok = answer == expected
    print(f"✅ {name}: correct." if ok else f"❌ {name}: not quite. Hint: {hint}")
    return bool(ok)
