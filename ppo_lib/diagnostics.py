"""Training diagnostics (lessons 03, 05 and 07): the numbers to watch and what they mean.

``METRIC_KEYS`` are the keys of one logger row, spelled as Stable-Baselines3 spells them so
that a learner can read either library's logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .validation import check_in_range, check_same_shape

METRIC_KEYS = (
    "rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps", "time/total_timesteps",
    "train/approx_kl", "train/clip_fraction", "train/explained_variance",
    "train/entropy_loss", "train/policy_gradient_loss", "train/value_loss", "train/loss",
    "train/learning_rate", "train/clip_range", "train/n_updates",
)  # plus "train/std" for Gaussian policies

# Thresholds of the troubleshooting guide (source notes, "Metrics to monitor").
APPROX_KL_LOW = 0.001
APPROX_KL_HIGH = 0.05
CLIP_FRACTION_HIGH = 0.5


def clip_fraction(ratio: Tensor, clip_range: float) -> float:
    """Share of samples whose ratio left the clip range: mean(|r_t - 1| > eps) (lesson 03)."""
    check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
    return clipped_share(ratio, clip_range).item()


def clipped_share(ratio: Tensor, clip_range: float) -> Tensor:
    """mean(|r_t - 1| > eps) as a 0-d tensor: the trainer keeps one per minibatch and reads
    them out once per update."""
    return torch.mean((torch.abs(ratio - 1) > clip_range).float())


def explained_variance(values: Tensor, returns: Tensor) -> float:
    """How much of the returns' variance the critic explains (lesson 05).

        EV = 1 - Var(returns - values) / Var(returns)

    1 is a perfect critic, 0 is no better than predicting the mean, below 0 is worse than
    that. NaN when Var(returns) == 0. Population variances, as SB3's ``explained_variance``.
    """
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    returns = torch.as_tensor(returns, dtype=torch.float64).flatten()
    check_same_shape(values=values, returns=returns)
    var_returns = torch.var(returns, unbiased=False)
    if var_returns == 0:
        return float("nan")
    return (1 - torch.var(returns - values, unbiased=False) / var_returns).item()


def _get(metrics: Mapping[str, Any], name: str) -> float | None:
    """A metric by its SB3 key (``train/approx_kl``) or its short name (``approx_kl``)."""
    for key in (name, name.split("/")[-1]):
        if key in metrics and metrics[key] is not None:
            value = float(metrics[key])
            return None if math.isnan(value) else value
    return None


def diagnose(metrics: Mapping[str, Any]) -> list[str]:
    """The troubleshooting rules of the source notes, applied to one set of metrics.

    ``metrics`` maps SB3 keys (``train/approx_kl``) or short names (``approx_kl``) to
    numbers, e.g. the last row of ``model.logger``. Each finding names the metric, its value
    and the fix to try. An empty list means nothing looks wrong.
    """
    findings = []
    ent = _get(metrics, "train/entropy_loss")
    collapsed = ent is not None and -ent < 0.01
    kl = _get(metrics, "train/approx_kl")
    if kl is not None and kl < APPROX_KL_LOW and collapsed:
        # A deterministic policy barely moves whatever the step size: raising the learning
        # rate (the usual fix for a small KL) would only push it further into the collapse.
        findings.append(
            f"approx_kl = {kl:.2g} is below {APPROX_KL_LOW} because the policy has collapsed "
            "(see entropy_loss): a larger learning_rate would only deepen the collapse.")
    elif kl is not None and kl < APPROX_KL_LOW:
        findings.append(
            f"approx_kl = {kl:.2g} is below {APPROX_KL_LOW}: the policy is barely updating. "
            "Fix: raise learning_rate, or raise n_epochs or clip_range; check that advantages "
            "are not all zero.")
    if kl is not None and kl > APPROX_KL_HIGH:
        findings.append(
            f"approx_kl = {kl:.2g} is above {APPROX_KL_HIGH}: updates are too large and "
            "learning may oscillate or collapse. Fix: lower learning_rate, lower n_epochs or "
            "clip_range, or set target_kl (e.g. 0.02) to stop an update early.")
    cf = _get(metrics, "train/clip_fraction")
    if cf is not None and cf > CLIP_FRACTION_HIGH:
        findings.append(
            f"clip_fraction = {cf:.2f} is above {CLIP_FRACTION_HIGH}: most samples are "
            "clipped, so the update goes past the trust region. Fix: lower learning_rate or "
            "n_epochs, or use a larger batch.")
    ev = _get(metrics, "train/explained_variance")
    if ev is not None and ev <= 0:
        findings.append(
            f"explained_variance = {ev:.2f} is at or below 0: the critic predicts the returns "
            "no better than their mean, so advantages are noise. Fix: check the value loss "
            "and vf_coef (0.5), the critic's learning rate, and reward scale (normalise "
            "rewards); give the critic its own network (net_arch=dict(pi=[...], vf=[...])).")
    if collapsed:
        findings.append(
            f"entropy_loss = {ent:.3g}: the entropy is {-ent:.3g}, the policy is (almost) "
            "deterministic, so it stopped exploring. If returns are still low, raise ent_coef "
            "(e.g. 0.01) or lower learning_rate.")
    vl = _get(metrics, "train/value_loss")
    if vl is not None and vl > 1e3:
        findings.append(
            f"value_loss = {vl:.3g} is very large: returns are on a large scale. Fix: "
            "normalise rewards (VecNormalize / NormalizeReward), or use clip_range_vf.")
    return findings
