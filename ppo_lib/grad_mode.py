"""``trains``: the library's training calls run with autograd on, in float32, whatever the
caller's mode.

A notebook cell that evaluates under ``torch.no_grad()`` or ``torch.inference_mode()`` may go
on to train. Without this, ``model.learn`` there fails on its reference step with "element 0
of tensors does not require grad and does not have a grad_fn", and in inference mode it
leaves inference tensors in the model (rollout, Adam's state) that no later update outside
may use. As a training loop's ``torch.enable_grad()`` (PyTorch Lightning's ``fit`` does the
same), ``trains`` turns inference mode off and gradients on for the call. ppo_lib computes in
float32 (observations, buffers, networks): a program that made float64 torch's default
(``torch.set_default_dtype``) would otherwise get float64 networks fed float32 observations,
"mat1 and mat2 must have the same dtype"; for the call the default is float32. The caller's
modes are back when it returns. Inside, collection and the written-out update switch
gradients off themselves where they keep nothing, as always: the numbers do not change.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def training_modes():
    """Inference mode off, autograd on and float32 torch's default dtype inside the block;
    the caller's three back after it."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.set_default_dtype(dtype)


def trains(fn: F) -> F:
    """``fn`` called inside ``training_modes()``."""
    @functools.wraps(fn)
    def in_training_modes(*args, **kwargs):
        with training_modes():
            return fn(*args, **kwargs)
    return in_training_modes  # type: ignore[return-value]


def check_trainable(name: str, module: torch.nn.Module | None) -> None:
    """A ValueError if ``module`` has a parameter made inside ``torch.inference_mode()`` (an
    inference tensor, which autograd can never train), naming the argument and the fix."""
    if module is None:
        return
    made_there = [p for p, t in module.named_parameters() if t.is_inference()]
    if made_there:
        raise ValueError(
            f"{name} has parameters created inside torch.inference_mode() ({made_there[0]}"
            f"{' and more' if len(made_there) > 1 else ''}): autograd cannot train those. "
            f"Create the network outside the inference_mode block (torch.no_grad() is fine)")
