import pandas as pd
import pytest

from fmlab import plots, quiz
from fmlab.quiz import Question


def test_question_validation():
    with pytest.raises(ValueError, match="distractors"):
        Question("q?", "a", ("b",), "because of reasons")
    with pytest.raises(ValueError, match="explanation"):
        Question("q?", "a", ("b", "c"), "")
    with pytest.raises(ValueError, match="distinct"):
        Question("q?", "a", ("a", "b"), "because of reasons")


def test_score_and_check(capsys):
    qs = [Question("q1?", "a", ("b", "c"), "because of a"), Question("q2?", "b", ("a", "c"), "because of b")]
    assert quiz.score(qs, ["a", "b"]) == 1.0 and quiz.score(qs, ["b", None]) == 0.0
    assert quiz.check("ex", 0.5, 0.52, "look", tol=0.05)
    assert not quiz.check("ex", 0.5, 0.9, "look at the plot", tol=0.05)
    assert not quiz.check("ex", None, 1, "h")
    out = capsys.readouterr().out
    assert "look at the plot" in out and "not attempted" in out


def test_plots_return_figures():
    h = pd.DataFrame({"step": [0, 1, 2], "loss": [float("nan"), 2.0, 1.0], "acc": [0.1, None, 0.9]})
    assert plots.curves({"a": h}, ["loss", "acc"]).axes
    assert plots.bars({"x": 1.0, "y": 2.0}).axes
    assert plots.stacked_bars(pd.DataFrame({"w": [1, 2], "g": [1, 1]}, index=["a", "b"])).axes
    assert plots.heatmap(pd.DataFrame([[0.1, 0.9]], index=["r"], columns=["a", "b"])).axes
