"""Interactive plots for the lessons (ipywidgets and matplotlib, like the other modules of
``ppo_lib.lab``; no module of ppo_lib outside the lab imports them).

The course convention (CONTRIBUTING.md, rule 7): every redraw prints one line stating the
slider values and what they changed (the browser tests read it), then shows the figure,
whose title states the values too. ``interact_with_readout`` does the printing and the
showing, so a lesson only writes the drawing:

    def draw(clip_range):
        fig, axes = new_figure(2)
        plot_clip_objective(axes[0], +1, clip_range)
        plot_clip_objective(axes[1], -1, clip_range)
        return fig, clip_readout(clip_range)

    w = interact_with_readout(draw, clip_range=float_slider(0.2, 0.05, 0.5, 0.05, "eps"))

Use the inline backend (``%matplotlib inline``): figures are closed after each redraw, so
moving a slider never piles up figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from ..validation import check_in_range


def float_slider(value: float, min: float, max: float, step: float,  # noqa: A002
                 description: str = "", readout_format: str = ".2f") -> widgets.FloatSlider:
    """A FloatSlider with an explicit step (the default 0.1 would snap 0.2 to 0.25 on a
    0.05..0.5 range) that updates only on release (a drag would redraw many times)."""
    check_in_range("step", step, 0.0, float("inf"), low_open=True)
    if not min <= value <= max:
        raise ValueError(f"value must be within [min, max] = [{min}, {max}], got {value!r}")
    return widgets.FloatSlider(value=value, min=min, max=max, step=step,
                               description=description, readout_format=readout_format,
                               continuous_update=False)


def options_slider(options: Sequence[Any], value: Any = None, description: str = "",
                   ) -> widgets.SelectionSlider:
    """A slider over precomputed values (e.g. the epsilons a sweep was run for)."""
    options = list(options)
    if not options:
        raise ValueError("options must not be empty")
    if value is None:
        value = options[0]
    if value not in options:
        raise ValueError(f"value must be one of options {options}, got {value!r}")
    return widgets.SelectionSlider(options=options, value=value, description=description,
                                   continuous_update=False)


def int_slider(value: int, min: int, max: int, step: int = 1,  # noqa: A002
               description: str = "") -> widgets.IntSlider:
    """An IntSlider that updates only on release."""
    return widgets.IntSlider(value=value, min=min, max=max, step=step,
                             description=description, continuous_update=False)


def _show(draw: Callable[..., Any], **values: Any) -> None:
    """Call ``draw``, print its readout line, show and close its figure."""
    result = draw(**values)
    fig, readout = result if isinstance(result, tuple) else (None, result)
    if readout is not None:
        print(readout)
    if fig is not None:
        fig.tight_layout()
        plt.show()
        plt.close(fig)


def interact_with_readout(draw: Callable[..., Any], **controls: widgets.Widget,
                          ) -> widgets.interactive:
    """Display ``controls`` and redraw on every change.

    ``draw(**values)`` returns ``(figure, readout)`` or just a readout string: the readout
    line is printed first, then the figure is shown and closed. Returns the ``interactive``
    widget (assign it: ``w = interact_with_readout(...)``); ``w.children`` are the controls
    followed by the output area.
    """
    if not controls:
        raise ValueError("interact_with_readout needs at least one control, got none")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets value widget (e.g. "
                            f"float_slider(...)), got {type(control).__name__}")

    def redraw(**values: Any) -> None:
        _show(draw, **values)

    w = widgets.interactive(redraw, **controls)
    display(w)
    return w
