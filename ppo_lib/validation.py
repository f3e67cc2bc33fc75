"""Argument checks shared by the library: every error names the argument, its value and
what is expected."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor


def _fmt(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return repr(value)


def check_in_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                   high_open: bool = False) -> None:
    """Raise ValueError unless ``low <(=) value <(=) high``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {_fmt(value)}") from None
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if math.isnan(v) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """A ValueError unless ``value`` is an integer >= 1: a Python int or a numpy integer (a
    configuration read back from a DataFrame row has those), not a bool, not a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        hint = (f" (a float: pass int({value!r}); a DataFrame row turns integer columns into "
                f"floats when another column holds floats)"
                if isinstance(value, float) and value.is_integer() and value >= 1 else "")
        raise ValueError(f"{name} must be a positive integer, got {value!r}{hint}")


def as_seed(seed: Any) -> int | None:
    """``seed`` as a Python int (numpy's integers too), or None. Python, numpy, torch and
    gymnasium all take it: a ValueError unless 0 <= seed < 2**32."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32 - 1] or None, got {seed!r}")
    return int(seed)


def check_tensor(name: str, value: Any) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def check_same_shape(axes: str = "time steps x envs", **tensors: Tensor) -> None:
    """All tensors given as keywords must have one shape; ``axes`` names what the axes are
    (rollouts: time steps x envs; lesson 11's language-model tensors: completions x tokens)."""
    for name, t in tensors.items():
        check_tensor(name, t)
    names = list(tensors)
    first = names[0]
    for name in names[1:]:
        if tensors[name].shape != tensors[first].shape:
            raise ValueError(
                f"{name} has shape {tuple(tensors[name].shape)} but {first} has shape "
                f"{tuple(tensors[first].shape)}; they must match ({axes})")


def check_hyperparameters(n_steps, batch_size, n_epochs, gamma, gae_lambda, clip_range,
                          clip_range_vf, learning_rate, ent_coef, vf_coef, max_grad_norm,
                          target_kl) -> None:
    """The ranges PPO's hyperparameters must be in (a ValueError naming the first one
    outside); a schedule (a callable) is checked where it is used."""
    check_positive_int("n_steps", n_steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("n_epochs", n_epochs)
    check_in_range("gamma", gamma, 0.0, 1.0)
    check_in_range("gae_lambda", gae_lambda, 0.0, 1.0)
    if not callable(clip_range):
        check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
    if clip_range_vf is not None and not callable(clip_range_vf):
        check_in_range("clip_range_vf", clip_range_vf, 0.0, float("inf"), low_open=True)
    if not callable(learning_rate):
        check_in_range("learning_rate", learning_rate, 0.0, float("inf"), low_open=True)
    for name, value in (("ent_coef", ent_coef), ("vf_coef", vf_coef),
                        ("max_grad_norm", max_grad_norm)):
        check_in_range(name, value, 0.0, float("inf"))
    if target_kl is not None:
        check_in_range("target_kl", target_kl, 0.0, float("inf"), low_open=True)


def check_finite_parameters(policy, last_loss: float, n_updates: int, num_timesteps: int,
                            learning_rate: float) -> None:
    """After an update: FloatingPointError naming the parameters (or the loss) that are NaN
    or inf, and what to change."""
    bad = [name for name, p in policy.named_parameters() if not torch.isfinite(p).all()]
    if bad or not math.isfinite(last_loss):
        where = f"parameters {bad[:3]}" if bad else f"the loss ({last_loss})"
        raise FloatingPointError(
            f"NaN or inf in {where} after update {n_updates} (num_timesteps={num_timesteps}): "
            f"training diverged. The learning rate ({learning_rate:g}) is most likely too "
            f"high; lower it (3e-4 is PPO's usual value), keep max_grad_norm (0.5), or "
            f"normalise observations / rewards")


def optimizer_arguments(optimizer_kwargs: dict | None) -> dict:
    """Adam's eps and betas from ``policy_kwargs["optimizer_kwargs"]`` (SB3's spelling)."""
    arguments = dict(eps=1e-5)
    if optimizer_kwargs is None:
        return arguments
    if not isinstance(optimizer_kwargs, dict) or set(optimizer_kwargs) - {"eps", "betas"}:
        raise ValueError(f"policy_kwargs['optimizer_kwargs'] must be a dict with keys 'eps' "
                         f"and/or 'betas' (Adam's), got {optimizer_kwargs!r}")
    if "eps" in optimizer_kwargs:
        check_in_range("policy_kwargs['optimizer_kwargs']['eps']", optimizer_kwargs["eps"],
                       0.0, float("inf"), low_open=True, high_open=True)
    return {**arguments, **optimizer_kwargs}
