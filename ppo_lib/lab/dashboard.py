"""A live training dashboard for notebooks (lessons 05-07): a callback that redraws the
numbers to watch after each update.

    model.learn(50_000, callback=TrainingDashboard(), progress_bar=True)

Five panels against environment steps: the mean episode return, ``approx_kl`` (with the
troubleshooting band 0.001-0.05), ``clip_fraction`` (0.5 line), ``explained_variance``
(0 line) and the policy entropy (``-train/entropy_loss``), a sixth with ``train/std`` for
Gaussian policies, plus one text line with the
latest values and, at the end, the findings of ``ppo_lib.diagnostics.diagnose``.

Cheap and headless-safe: the text line updates after every update, the figure at most
every ``min_interval`` seconds and never more than ``max_cost`` of the time (drawing takes
~0.1 s), plus once at the end. Output goes through IPython display handles
(``display(..., display_id=True).update(...)``), which JupyterLab updates live and which
nbclient / nbconvert store as ordinary outputs (no widget state, no hang); ``mode="widget"``
uses an ipywidgets ``Image`` and ``HTML`` instead. Figures are bare matplotlib ``Figure``
objects rendered to PNG, so the inline backend never shows or leaks them.
"""

from __future__ import annotations

import html
import io
import math
import time
from collections.abc import Callable, Sequence

from matplotlib.figure import Figure

from ..callbacks import BaseCallback
from ..diagnostics import APPROX_KL_HIGH, APPROX_KL_LOW, CLIP_FRACTION_HIGH, diagnose

# (logger key, panel title, sign): entropy is logged as the entropy *loss*, -H.
PANELS = (
    ("rollout/ep_rew_mean", "mean episode return", 1.0),
    ("train/approx_kl", "approx_kl", 1.0),
    ("train/clip_fraction", "clip_fraction", 1.0),
    ("train/explained_variance", "explained_variance", 1.0),
    ("train/entropy_loss", "entropy", -1.0),
)
# Gaussian policies (lesson 06) also log the policy's standard deviation: a sixth panel.
STD_PANEL = ("train/std", "policy std", 1.0)


def panels_for(rows: Sequence[dict]) -> tuple:
    """The panels to draw: the five above, plus ``policy std`` when the rows have it."""
    return PANELS + ((STD_PANEL,) if any("train/std" in row for row in rows) else ())
# Reference lines from the troubleshooting guide (source notes, "Metrics to monitor").
GUIDES = {
    "train/approx_kl": (APPROX_KL_LOW, APPROX_KL_HIGH),
    "train/clip_fraction": (CLIP_FRACTION_HIGH,),
    "train/explained_variance": (0.0, 1.0),
}


def _column(rows: Sequence[dict], key: str, sign: float = 1.0) -> list[float]:
    return [sign * float(row[key]) if row.get(key) is not None else math.nan for row in rows]


def plot_dashboard(rows: Sequence[dict], title: str = "", width: float = 13.0,
                   height: float = 2.6) -> Figure:
    """The five panels for logger ``rows`` (dicts with SB3's keys), as a bare Figure."""
    panels = panels_for(rows)
    fig = Figure(figsize=(width * len(panels) / len(PANELS), height), dpi=72)
    axes = fig.subplots(1, len(panels))
    steps = [row.get("time/total_timesteps", i + 1) for i, row in enumerate(rows)]
    for ax, (key, label, sign) in zip(axes, panels):
        values = _column(rows, key, sign)
        for level in GUIDES.get(key, ()):
            ax.axhline(level, color="0.6", lw=0.8, ls="--")
        ax.plot(steps, values, color="C0", lw=1.5, marker="." if len(rows) < 30 else None)
        last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
        ax.set_title(f"{label}\n{last:.4g}" if not math.isnan(last) else label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("env steps", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def summary_line(row: dict, n_updates: int | None = None) -> str:
    """One line with the latest values of the dashboard's metrics."""
    parts = []
    if n_updates is not None:
        parts.append(f"update {n_updates}")
    if "time/total_timesteps" in row:
        parts.append(f"steps {int(row['time/total_timesteps']):,}")
    for key, label, sign in panels_for([row]):
        if row.get(key) is not None and not math.isnan(float(row[key])):
            parts.append(f"{label.replace('mean episode ', '')} {sign * float(row[key]):.4g}")
    return " | ".join(parts)


class TrainingDashboard(BaseCallback):
    """Callback: live plots of return, approx_kl, clip_fraction, explained_variance and
    entropy after each update.

    min_interval: least number of seconds between two redraws of the figure.
    max_cost:     largest share of wall time spent drawing (redraws wait longer if needed).
    mode:         "display" (IPython display handles, stored in the notebook) or "widget"
                  (an ipywidgets Image and HTML).
    diagnose:     print the troubleshooting findings for the last update at the end.
    """

    def __init__(self, min_interval: float = 2.0, max_cost: float = 0.1, mode: str = "display",
                 title: str = "", diagnose: bool = True,
                 clock: Callable[[], float] = time.perf_counter, verbose: int = 0):
        super().__init__(verbose)
        if mode not in ("display", "widget"):
            raise ValueError(f"mode must be 'display' or 'widget', got {mode!r}")
        if not min_interval >= 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval!r}")
        if not 0 < max_cost <= 1:
            raise ValueError(f"max_cost must be in (0, 1], got {max_cost!r}")
        self.min_interval, self.max_cost, self.mode = min_interval, max_cost, mode
        self.title, self.show_diagnosis, self.clock = title, diagnose, clock
        self.rows: list[dict] = []
        self.n_draws = 0
        self.draw_seconds = 0.0
        self.findings: list[str] = []
        self._last_draw: float | None = None
        self._last_cost = 0.0
        self._text = self._image = None
        self._headless = False

    # --- output ------------------------------------------------------------------------
    def _open(self) -> None:
        from IPython.display import HTML, display
        if self.mode == "widget":
            import ipywidgets as widgets
            self._text = widgets.HTML("waiting for the first update ...")
            self._image = widgets.Image(format="png")
            display(widgets.VBox([self._text, self._image]))
        else:
            self._text = display(HTML("<code>waiting for the first update ...</code>"),
                                 display_id=True)
            self._image = None  # created at the first draw
            # Outside IPython (a script, pytest) display() returns None: draw, show nothing,
            # and print the final summary.
            self._headless = self._text is None

    def _show_text(self, text: str) -> None:
        from IPython.display import HTML
        body = "<br>".join(f"<code>{html.escape(line)}</code>" for line in text.splitlines())
        if self.mode == "widget":
            self._text.value = body
        elif not self._headless:
            self._text.update(HTML(body))

    def _show_png(self, png: bytes) -> None:
        from IPython.display import Image, display
        if self.mode == "widget":
            self._image.value = png
        elif self._headless:
            return
        elif self._image is None:
            self._image = display(Image(data=png, format="png"), display_id=True)
        else:
            self._image.update(Image(data=png, format="png"))

    def redraw(self) -> None:
        """Draw the figure now (ignores the throttle)."""
        start = self.clock()
        fig = plot_dashboard(self.rows, title=self.title)
        self._show_png(figure_png(fig))
        end = self.clock()
        self._last_cost = end - start
        self.draw_seconds += self._last_cost
        self._last_draw = end
        self.n_draws += 1

    def _due(self) -> bool:
        if self._last_draw is None:
            return True
        wait = max(self.min_interval, self._last_cost / self.max_cost)
        return self.clock() - self._last_draw >= wait

    # --- hooks -------------------------------------------------------------------------
    def _on_training_start(self) -> None:
        self._open()

    def _on_update_end(self) -> None:
        self.rows.append(dict(self.model.logger.rows[-1]))
        self._show_text(summary_line(self.rows[-1], len(self.rows)))
        if self._due():
            self.redraw()

    def _on_training_end(self) -> None:
        if not self.rows:
            self._show_text("no update finished (total_timesteps < n_steps * n_envs?)")
            return
        self.redraw()
        text = summary_line(self.rows[-1], len(self.rows))
        if self.show_diagnosis:
            self.findings = diagnose(self.rows[-1])
            text += "\n" + ("\n".join("diagnose: " + f for f in self.findings)
                            if self.findings else "diagnose: nothing looks wrong")
        self._show_text(text)
        if self._headless:
            print(text)
