"""Lesson 02 exercise: the natural-gradient step of TRPO with an explicit Fisher matrix.

``kl_categorical`` and ``conjugate_gradient``, also graded in lesson 02, are registered
with the core exercises (``ppo_lib/exercises/core.py``).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..grading import Case, Exercise, Mistake, register


def natural_gradient_step(g: Tensor, fisher: Tensor, delta: float) -> Tensor:
    """The step TRPO takes before its line search (lesson 02, eq. 2.4).

        x = F^-1 g,    step = sqrt(2 delta / (g^T F^-1 g)) * x

    It maximises the linear model g^T step subject to the quadratic KL model
    1/2 step^T F step <= delta, which it meets with equality.
    """
    x = torch.linalg.solve(fisher, g)
    return torch.sqrt(2 * delta / torch.dot(g, x)) * x


def _spd(n: int, seed: int) -> Tensor:
    """An SPD matrix far from the identity, so that F^-1 g and g point different ways."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return m @ m.T + 0.5 * torch.eye(n, dtype=torch.float64)


def _vector(n: int, seed: int) -> Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _verify_on_kl_boundary(fisher: Tensor, delta: float, got) -> str | None:
    """1/2 step^T F step must equal delta: the step ends on the (quadratic) trust region."""
    if not isinstance(got, Tensor) or got.shape != (fisher.shape[0],):
        return f"expected a vector of shape ({fisher.shape[0]},), got {got!r}"
    quadratic_kl = 0.5 * got.double() @ fisher @ got.double()
    if not torch.isclose(quadratic_kl, torch.tensor(delta, dtype=torch.float64), rtol=1e-4):
        return (f"1/2 step^T F step = {quadratic_kl.item():.6g}, but the step should end on "
                f"the trust region's edge, delta = {delta}")
    return None


def _natural_step_cases() -> list[Case]:
    diagonal = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    f3, g3 = _spd(3, 1), _vector(3, 2)
    f5, g5 = _spd(5, 3), _vector(5, 4)
    return [
        Case("F = diag(4, 1), g = (1, 1), delta = 0.02",
             args=(torch.tensor([1.0, 1.0], dtype=torch.float64), diagonal, 0.02),
             hint="x = F^-1 g = (0.25, 1); g^T x = 1.25; step = sqrt(2 * 0.02 / 1.25) * x "
                  "(the square root of 2 delta / g^T F^-1 g, times F^-1 g)"),
        Case("3 parameters: the step ends on the KL edge", args=(g3, f3, 0.01),
             verify=functools.partial(_verify_on_kl_boundary, f3, 0.01),
             hint="the length sqrt(2 delta / g^T F^-1 g) makes 1/2 step^T F step = delta: "
                  "mind the 2, the square root, and g^T F^-1 g (not g^T g)"),
        Case("3 parameters: direction F^-1 g", args=(g3, f3, 0.01),
             hint="the direction is the natural gradient F^-1 g "
                  "(torch.linalg.solve(F, g)), not g itself"),
        Case("5 parameters, delta = 0.05", args=(g5, f5, 0.05),
             hint="step = sqrt(2 delta / (g^T x)) x with x = F^-1 g"),
    ]


def _step_plain_gradient(g, fisher, delta):
    return torch.sqrt(2 * delta / torch.dot(g, g)) * g


def _step_no_sqrt(g, fisher, delta):
    x = torch.linalg.solve(fisher, g)
    return (2 * delta / torch.dot(g, x)) * x


def _step_no_two(g, fisher, delta):
    x = torch.linalg.solve(fisher, g)
    return torch.sqrt(delta / torch.dot(g, x)) * x


def _step_g_dot_g(g, fisher, delta):
    x = torch.linalg.solve(fisher, g)
    return torch.sqrt(2 * delta / torch.dot(g, g)) * x


def _step_times_fisher(g, fisher, delta):
    x = fisher @ g
    return torch.sqrt(2 * delta / torch.dot(g, x)) * x


def _step_unit_direction(g, fisher, delta):
    x = torch.linalg.solve(fisher, g)
    return delta * x / x.norm()


def _natural_step_mistakes() -> list[Mistake]:
    return [
        Mistake("plain gradient direction g", _step_plain_gradient),
        Mistake("no square root", _step_no_sqrt),
        Mistake("missing factor 2", _step_no_two),
        Mistake("g^T g instead of g^T F^-1 g", _step_g_dot_g),
        Mistake("F g instead of F^-1 g", _step_times_fisher),
        Mistake("unit direction scaled by delta", _step_unit_direction),
    ]


register(Exercise(
    id="natural_gradient_step", lesson="02",
    title="TRPO's step sqrt(2 delta / g^T F^-1 g) F^-1 g",
    cases=_natural_step_cases, reference=natural_gradient_step,
    mistakes=_natural_step_mistakes))
