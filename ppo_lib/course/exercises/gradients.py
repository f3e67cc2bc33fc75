"""Checks shared by the graders whose answers must keep the autograd graph (lesson 05's
``ppo_loss``, lesson 06's Gaussian log-probability and entropy): a gradient reaches every
input that carries one, and it is the reference's. Registers no exercise."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def gradient_flow_problem(output: Tensor, leaves: dict[str, Tensor],
                          detached_by: str) -> str | None:
    """None when d output / d leaf exists and is not all zero for every leaf, else what is
    wrong. ``detached_by`` lists the operations that would have cut the graph."""
    try:
        grads = torch.autograd.grad(output, list(leaves.values()), allow_unused=True)
    except RuntimeError as exc:
        return f"backward fails: {exc}"
    for name, grad in zip(leaves, grads):
        if grad is None or not grad.any():
            return f"no gradient flows to {name}: it was detached ({detached_by}) or left out"
    return None


def gradient_mismatch_problem(names: Sequence[str], got: Sequence[Tensor | None],
                              want: Sequence[Tensor], atol: float, rtol: float) -> str | None:
    """None when every gradient in ``got`` matches the reference's ``want``."""
    for name, g, w in zip(names, got, want):
        if g is None:
            return f"no gradient flows to {name}"
        if not torch.allclose(g, w, atol=atol, rtol=rtol):
            return (f"the gradient w.r.t. {name} differs from the reference's "
                    f"(largest difference {float((g - w).abs().max()):.3g})")
    return None
