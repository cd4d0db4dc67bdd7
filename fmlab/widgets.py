"""Interactive widgets for the notebooks.

Only ipywidgets APIs present in 7.7 are used (Colab ships 7.7.1): Text, Textarea, FloatSlider, IntSlider,
Dropdown, Button, Output, HTML, HBox, VBox, Layout, interactive_output.  Every widget computes its first
result when it is created, so a notebook run with nobody clicking (nbval, a script) still shows real
output, and the function behind each widget is an ordinary fmlab function you can call yourself.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .evaluate import complete
from .gpt import MiniGPT
from .tokenizer import Tokenizer

__all__ = ["playground", "function_box", "labelling_widget"]


def function_box(fn: Callable[..., str], controls: dict, title: str = "", button: str = "Run"):
    """Widgets `controls` (name -> widget) feeding fn(**values) -> str, shown in an Output; runs once now."""
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))
    run = widgets.Button(description=button, button_style="primary")

    def on_run(_=None):
        out.clear_output()
        with out:
            try:
                print(fn(**{name: w.value for name, w in controls.items()}))
            except ValueError as e:        # bad input gets the message, not a traceback
                print(f"⚠️ {e}")

    run.on_click(on_run)
    head = [widgets.HTML(f"<b>{title}</b>")] if title else []
    box = widgets.VBox(head + list(controls.values()) + [run, out])
    display(box)
    on_run()
    return box


def playground(model: MiniGPT, tokenizer: Tokenizer, prompt: str = "ada lives in", temperature: float = 0.8,
               max_new_tokens: int = 20, n_samples: int = 3, seed: int = 0):
    """Type a prompt, pick temperature and length, see `n_samples` continuations."""
    import ipywidgets as widgets

    def sample(prompt: str, temperature: float, max_new_tokens: int) -> str:
        lines = [f"[{i + 1}] {prompt} ▸ " + complete(model, tokenizer, prompt, max_new_tokens, temperature,
                                                    seed=seed + i) for i in range(n_samples)]
        return "\n".join(lines)

    controls = {
        "prompt": widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="60%")),
        "temperature": widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, description="temperature"),
        "max_new_tokens": widgets.IntSlider(value=max_new_tokens, min=1, max=60, description="length"),
    }
    return function_box(sample, controls, "Generation playground", "Generate")


def labelling_widget(prompts: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str], labels: list):
    """Two completions side by side; click the better one.  Appends (pair index, a_is_better) to `labels`."""
    import html

    import ipywidgets as widgets
    from IPython.display import display

    state = {"i": 0}
    head, info = widgets.HTML(), widgets.HTML()
    panes = [widgets.HTML(layout=widgets.Layout(width="45%", border="1px solid #ccc", padding="6px"))
             for _ in range(2)]
    buttons = [widgets.Button(description=d, layout=widgets.Layout(width="45%")) for d in ("A is better", "B is better")]

    def show():
        i = state["i"]
        info.value = f"labels so far: {len(labels)}"
        if i >= len(prompts):
            head.value = "<b>all pairs labelled -- thank you!</b>"
            for b in buttons:
                b.disabled = True
            return
        head.value = f"<b>pair {i + 1}/{len(prompts)}</b> &nbsp; prompt: <code>{html.escape(prompts[i])}</code>"
        for pane, name, text in zip(panes, "AB", (texts_a[i], texts_b[i])):
            pane.value = f"<b>{name}</b>: {html.escape(text)}"

    def choose(a_better: bool):
        labels.append((state["i"], a_better))
        state["i"] += 1
        show()

    buttons[0].on_click(lambda _: choose(True))
    buttons[1].on_click(lambda _: choose(False))
    show()
    box = widgets.VBox([head, widgets.HBox(panes), widgets.HBox(buttons), info])
    display(box)
    return box
