"""Plots of lesson 10's statistics (``ppo_lib.stats``), in the style of rliable's figures:
interval estimates as one bar per variant spanning its confidence interval, with a tick at
the point estimate, and performance profiles as curves with their confidence bands.

    estimates = stats.stratified_bootstrap_ci(scores)
    ax = plot_interval_estimates(estimates, xlabel="IQM of normalised return")
    taus = np.linspace(0, 1, 41)
    plot_performance_profiles(taus, stats.performance_profile(scores, taus))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

BAR_HEIGHT = 0.6


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_interval_estimates(estimates: Mapping[Any, Sequence[float]], ax: Axes | None = None,
                            xlabel: str = "IQM", highlight: Any = None) -> Axes:
    """One horizontal bar per variant from its CI's low to high end, a black tick at its
    point estimate; variants sorted by point estimate, the best at the top. ``estimates``
    is ``stats.stratified_bootstrap_ci``'s {name: (point, low, high)}; ``highlight`` names
    one variant (e.g. the base) drawn in another colour with a dotted line at its CI's
    low end, the line a clearly worse variant's whole bar stays left of."""
    if not estimates:
        raise ValueError("estimates must hold at least one variant, got none")
    order = sorted(estimates, key=lambda name: estimates[name][0])
    ax = _axes(ax, (6, 0.4 * len(order) + 1))
    for y, name in enumerate(order):
        point, low, high = map(float, estimates[name])
        color = "tab:orange" if name == highlight else "tab:blue"
        ax.barh(y, high - low, left=low, height=BAR_HEIGHT, color=color, alpha=0.6)
        ax.plot([point, point], [y - BAR_HEIGHT / 2, y + BAR_HEIGHT / 2], color="black", lw=2)
    if highlight is not None:
        if highlight not in estimates:
            raise ValueError(f"highlight {highlight!r} is not one of {list(estimates)}")
        ax.axvline(float(estimates[highlight][1]), color="tab:orange", ls=":", lw=1)
    ax.set_yticks(range(len(order)), [str(name) for name in order])
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_performance_profiles(taus: Sequence[float], profiles: Mapping[Any, Any],
                              ax: Axes | None = None,
                              xlabel: str = "normalised score tau") -> Axes:
    """One curve per variant: the fraction of runs scoring above tau, against tau, with a
    shaded band for its confidence interval. ``profiles`` is
    ``stats.performance_profile``'s {name: (profile, low, high)} (or {name: profile})."""
    if not profiles:
        raise ValueError("profiles must hold at least one variant, got none")
    taus = np.asarray(taus, dtype=np.float64)
    ax = _axes(ax, (6, 4))
    for name, value in profiles.items():
        curve, band = (value[0], value[1:]) if isinstance(value, tuple) else (value, None)
        curve = np.asarray(curve, dtype=np.float64)
        if curve.shape != taus.shape:
            raise ValueError(f"profiles[{name!r}] has shape {curve.shape}, taus {taus.shape}: "
                             "one value per threshold")
        (line,) = ax.plot(taus, curve, label=str(name))
        if band is not None:
            ax.fill_between(taus, band[0], band[1], color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax
