"""Plots in one style.  Every function returns the matplotlib Figure (and draws nothing it did not measure).

- `curves`: training histories (loss and any metric columns) against step.
- `LiveCurve`: a loss curve that redraws in place while `train` runs (pass `live.update` as callback).
- `bars`: a comparison bar chart from a mapping or a pandas Series.
- `stacked_bars`: e.g. a memory breakdown per method.
- `heatmap`: e.g. a forgetting matrix.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["curves", "LiveCurve", "bars", "stacked_bars", "heatmap", "style"]

PALETTE = ["#3b6ea8", "#e07b39", "#4c9a5f", "#b54a4a", "#8a6bb1", "#8c6d46", "#d17fb3", "#7f7f7f"]


def style() -> None:
    """The course's plot style (called on import)."""
    plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
                         "font.size": 10, "axes.titlesize": 11, "legend.frameon": False})


style()


def curves(histories: Mapping[str, pd.DataFrame] | pd.DataFrame, columns: Sequence[str] = ("loss",),
           smooth: int = 10, logy: Sequence[str] = ()) -> plt.Figure:
    """One panel per column; one line per history.  Loss is smoothed with a rolling mean of `smooth` steps."""
    if isinstance(histories, pd.DataFrame):
        histories = {"": histories}
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2), squeeze=False)
    for ax, col in zip(axes[0], columns):
        for label, h in histories.items():
            d = h[["step", col]].dropna()
            y = d[col].rolling(smooth, min_periods=1).mean() if col == "loss" and smooth > 1 else d[col]
            ax.plot(d["step"], y, marker="o" if len(d) < 30 else None, ms=3, label=label or None)
        ax.set(xlabel="step", title=col.replace("_", " "))
        if col in logy:
            ax.set_yscale("log")
        if any(histories):
            ax.legend()
    fig.tight_layout()
    return fig


class LiveCurve:
    """A loss (and metric) plot that updates in place during training -- in Jupyter and in nbval alike."""

    def __init__(self, columns: Sequence[str] = ("loss",), smooth: int = 10):
        from IPython.display import HTML, display
        self.columns, self.smooth = columns, smooth
        self.handle = display(HTML("<i>training ...</i>"), display_id=True)
        self.fig = None

    def update(self, history: pd.DataFrame) -> None:
        if self.fig is not None:
            plt.close(self.fig)
        self.fig = curves(history, self.columns, self.smooth)
        self.handle.update(self.fig)
        plt.close(self.fig)


def bars(values: Mapping[str, float] | pd.Series, title: str = "", ylabel: str = "",
         fmt: str = "{:.2f}", ax: plt.Axes | None = None) -> plt.Figure:
    values = pd.Series(values)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(values) + 1.5), 3.2))
    else:
        fig = ax.figure
    rects = ax.bar(values.index.astype(str), values.values, color=PALETTE[: len(values)])
    ax.bar_label(rects, [fmt.format(v) for v in values.values], fontsize=9)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def stacked_bars(table: pd.DataFrame, title: str = "", ylabel: str = "", ax: plt.Axes | None = None) -> plt.Figure:
    """Rows are bars, columns are the stacked parts (e.g. weights, gradients, optimizer, activations)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(table) + 2.5), 3.4))
    else:
        fig = ax.figure
    bottom = np.zeros(len(table))
    for i, col in enumerate(table.columns):
        ax.bar(table.index.astype(str), table[col].values, bottom=bottom, label=col, color=PALETTE[i % len(PALETTE)])
        bottom += table[col].values
    ax.set(title=title, ylabel=ylabel)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def heatmap(table: pd.DataFrame, title: str = "", fmt: str = "{:.2f}", cmap: str = "viridis",
            vmin: float | None = None, vmax: float | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """A labelled heatmap of a DataFrame (rows x columns) with the numbers written in each cell."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.6 * table.shape[0] + 1.5))
    else:
        fig = ax.figure
    im = ax.imshow(table.values.astype(float), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=20)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.grid(False)
    lo, hi = im.get_clim()
    for (r, c), v in np.ndenumerate(table.values.astype(float)):
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=9,
                color="white" if v < (lo + hi) / 2 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
