"""Plots the lessons reuse (matplotlib, like every module of ``ppo_lib.lab``; no module of
ppo_lib outside the lab imports it).

Every function draws onto an ``Axes`` it is given and returns what it drew (numbers, not
artists), so a lesson or a test can check the picture without looking at pixels:

    fig, (ax_a, ax_b) = plt.subplots(1, 2)
    plot_clip_objective(ax_a, +1, 0.2)   # L^CLIP and dL/dr for A > 0, flat part shaded
    plot_clip_objective(ax_b, -1, 0.2)

Symbols: ratio r, advantage A, clip_range eps (lesson 03).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from ..validation import check_in_range
from ..losses import clipped_surrogate_loss

FLAT_COLOR = "tab:red"
TRUST_COLOR = "tab:green"


def _check_sign(advantage_sign: float) -> float:
    if advantage_sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"advantage_sign must be +1 or -1, got {advantage_sign!r}")
    return float(advantage_sign)


def clip_objective(ratio: np.ndarray, advantage: float, clip_range: float) -> np.ndarray:
    """Per-sample PPO-Clip objective min(r A, clip(r, 1 - eps, 1 + eps) A) (to maximise)."""
    ratio = np.asarray(ratio, dtype=np.float64)
    clipped = np.clip(ratio, 1 - clip_range, 1 + clip_range)
    return np.minimum(ratio * advantage, clipped * advantage)


def clip_objective_gradient(ratio: np.ndarray, advantage: float,
                            clip_range: float) -> np.ndarray:
    """dL^CLIP/dr for every ratio, by autograd through ``ppo_lib.losses``.

    ``clipped_surrogate_loss`` is the loss (minus the mean objective), so the per-sample
    gradient of the objective is ``-n * d loss / d r_i``. Computed, not derived by hand, so
    that the plot shows what the library's loss really does.
    """
    r = torch.tensor(np.asarray(ratio, dtype=np.float64), requires_grad=True)
    a = torch.full_like(r, float(advantage))
    loss = clipped_surrogate_loss(r, a, clip_range)
    (grad,) = torch.autograd.grad(loss, r)
    return (-grad * r.numel()).numpy()


def flat_regions(advantage_sign: float, clip_range: float,
                 r_range: tuple[float, float] = (0.0, 2.0)) -> list[tuple[float, float]]:
    """Intervals of r where L^CLIP is flat (zero gradient) for an advantage of this sign.

    A > 0: only r > 1 + eps is flat (the gain is capped); r < 1 - eps is *not* clipped.
    A < 0: only r < 1 - eps is flat; for r > 1 + eps the penalty r A keeps growing.
    """
    sign = _check_sign(advantage_sign)
    check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
    lo, hi = r_range
    if sign > 0:
        return [(1 + clip_range, hi)] if hi > 1 + clip_range else []
    return [(lo, 1 - clip_range)] if lo < 1 - clip_range else []


def clip_readout(clip_range: float) -> str:
    """The one-line summary a clip plot prints, e.g.
    ``eps = 0.20: A > 0 flat for r > 1.20; A < 0 flat for r < 0.80``."""
    return (f"eps = {clip_range:.2f}: A > 0 flat for r > {1 + clip_range:.2f}; "
            f"A < 0 flat for r < {1 - clip_range:.2f}")


def plot_clip_objective(ax: Axes, advantage_sign: float, clip_range: float,
                        ax_grad: Axes | None = None, r_range: tuple[float, float] = (0.0, 2.0),
                        advantage: float = 1.0, num: int = 401) -> dict:
    """Draw L^CLIP(r) = min(r A, clip(r) A) for A = advantage_sign * |advantage|.

    Draws the unclipped r A (dashed), the clipped objective (solid), the region
    [1 - eps, 1 + eps] (green) and the flat regions (red, zero gradient). With ``ax_grad``
    the gradient dL/dr is drawn there too, with the same shading. Returns
    ``{"ratio", "objective", "gradient", "flat"}`` (arrays and the flat intervals).
    """
    sign = _check_sign(advantage_sign)
    adv = sign * abs(advantage)
    r = np.linspace(r_range[0], r_range[1], num)
    objective = clip_objective(r, adv, clip_range)
    gradient = clip_objective_gradient(r, adv, clip_range)
    flat = flat_regions(sign, clip_range, r_range)
    name = "A > 0" if sign > 0 else "A < 0"

    axes = [ax] if ax_grad is None else [ax, ax_grad]
    for a in axes:
        a.axvspan(1 - clip_range, 1 + clip_range, color=TRUST_COLOR, alpha=0.10)
        for lo, hi in flat:
            a.axvspan(lo, hi, color=FLAT_COLOR, alpha=0.18, label="flat: zero gradient")
        a.axvline(1.0, color="grey", lw=0.8, ls=":")
        a.set_xlim(*r_range)
        a.set_xlabel("ratio r")
    ax.plot(r, r * adv, ls="--", color="grey", label="unclipped r A")
    ax.plot(r, objective, color="tab:blue", lw=2, label="L^CLIP = min(rA, clip(r)A)")
    ax.set_ylabel("objective (maximised)")
    ax.set_title(f"{name}, eps = {clip_range:.2f}")
    ax.legend(loc="upper left" if sign > 0 else "lower left", fontsize=8)
    if ax_grad is not None:
        ax_grad.plot(r, gradient, color="tab:orange", lw=2)
        ax_grad.axhline(0.0, color="grey", lw=0.8)
        ax_grad.set_ylim(-1.5 * abs(adv), 1.5 * abs(adv))
        ax_grad.set_ylabel("dL/dr")
        ax_grad.set_title(f"gradient, {name}, eps = {clip_range:.2f}")
    return {"ratio": r, "objective": objective, "gradient": gradient, "flat": flat}


def plot_ratio_histogram(ax: Axes, ratios: Sequence[float] | np.ndarray, clip_range: float,
                         bins: np.ndarray | int = 40, label: str | None = None,
                         color: str | None = None) -> float:
    """Histogram of ratios with [1 - eps, 1 + eps] shaded. Returns the share outside it."""
    ratios = np.asarray(ratios, dtype=np.float64)
    ax.axvspan(1 - clip_range, 1 + clip_range, color=TRUST_COLOR, alpha=0.12)
    ax.hist(ratios, bins=bins, alpha=0.6, label=label, color=color)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("ratio r = pi_new / pi_old")
    ax.set_ylabel("samples")
    return float(np.mean(np.abs(ratios - 1) > clip_range)) if ratios.size else 0.0


def plot_curves(ax: Axes, x: Sequence[float], curves: Mapping[str, Sequence[float]],
                marker_x: float | None = None, ylabel: str = "", xlabel: str = "",
                logy: bool = False) -> None:
    """Several named curves over one x axis, with an optional vertical marker (the slider's
    current value)."""
    for name, y in curves.items():
        ax.plot(x, y, label=name, lw=1.8)
    if marker_x is not None:
        ax.axvline(marker_x, color="black", lw=1, ls="--")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def new_figure(ncols: int = 2, nrows: int = 1, width: float = 5.0, height: float = 3.4):
    """``plt.subplots`` with a size that suits a notebook cell; axes always a flat array."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False)
    return fig, axes.ravel()
