"""Lesson 02 exercise: the natural-gradient step of TRPO with an explicit Fisher matrix.

``kl_categorical`` and ``conjugate_gradient``, also graded in lesson 02, are registered
with the core exercises (``ppo_lib/course/exercises/core.py``).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..grading import Case, Exercise, register
from .core import Known, _case, mistakes_of


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


def _step_sqrt_of_numerator(g, fisher, delta):
    x = torch.linalg.solve(fisher, g)
    return (2 * delta) ** 0.5 / torch.dot(g, x) * x


def _step_descent(g, fisher, delta):
    return -natural_gradient_step(g, fisher, delta)


STEP_KNOWN = [
    Known("plain gradient direction g", _step_plain_gradient, "F^-1 g",
          "you step along g: the direction is the natural gradient F^-1 g "
          "(torch.linalg.solve(F, g))"),
    Known("F g instead of F^-1 g", _step_times_fisher, "solve",
          "you multiply by F: the direction is F^-1 g, torch.linalg.solve(F, g), not F @ g"),
    Known("no square root", _step_no_sqrt, "square root",
          "there is no square root: the length is sqrt(2 delta / g^T F^-1 g)"),
    Known("square root of the numerator only", _step_sqrt_of_numerator, "whole fraction",
          "your square root covers the numerator only: sqrt of the whole fraction, "
          "sqrt(2 delta / g^T F^-1 g)"),
    Known("missing factor 2", _step_no_two, "factor 2",
          "the factor 2 is missing: sqrt(2 delta / g^T F^-1 g), from 1/2 step^T F step = delta"),
    Known("g^T g instead of g^T F^-1 g", _step_g_dot_g, "g^T F^-1 g (not g^T g)",
          "you divide by g^T g: the length uses g^T F^-1 g (not g^T g)"),
    Known("unit direction scaled by delta", _step_unit_direction, "not a unit",
          "you scale a unit vector by delta: the length is sqrt(2 delta / g^T F^-1 g), not a "
          "unit direction times delta"),
    Known("steps downhill (minus sign)", _step_descent, "uphill",
          "your step points downhill: TRPO maximises the surrogate, the step is +sqrt(...) "
          "F^-1 g (uphill)"),
]


def _natural_step_cases() -> list[Case]:
    def case(name, args, *, hint):
        return _case(name, natural_gradient_step, args, hint=hint, known=STEP_KNOWN)
    diagonal = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    f3, g3 = _spd(3, 1), _vector(3, 2)
    f5, g5 = _spd(5, 3), _vector(5, 4)
    return [
        case("F = diag(4, 1), g = (1, 1), delta = 0.02",
             (torch.tensor([1.0, 1.0], dtype=torch.float64), diagonal, 0.02),
             hint="x = F^-1 g = (0.25, 1); g^T x = 1.25; step = sqrt(2 * 0.02 / 1.25) * x "
                  "(the square root of 2 delta / g^T F^-1 g, times F^-1 g)"),
        Case("3 parameters: the step ends on the KL edge", args=(g3, f3, 0.01),
             verify=functools.partial(_verify_on_kl_boundary, f3, 0.01),
             hint="the length sqrt(2 delta / g^T F^-1 g) makes 1/2 step^T F step = delta: "
                  "mind the 2, the square root, and g^T F^-1 g (not g^T g)"),
        case("3 parameters: direction F^-1 g", (g3, f3, 0.01),
             hint="the direction is the natural gradient F^-1 g "
                  "(torch.linalg.solve(F, g)), not g itself"),
        case("5 parameters, delta = 0.05", (g5, f5, 0.05),
             hint="step = sqrt(2 delta / (g^T x)) x with x = F^-1 g"),
        case("one parameter: F = [[2]], g = (3), delta = 0.04",
             (torch.tensor([3.0], dtype=torch.float64),
              torch.tensor([[2.0]], dtype=torch.float64), 0.04),
             hint="with one parameter, step = sqrt(2 * 0.04 / (3 * 1.5)) * 1.5 = 0.2"),
    ]


register(Exercise(
    id="natural_gradient_step", lesson="02",
    title="TRPO's step sqrt(2 delta / g^T F^-1 g) F^-1 g",
    cases=_natural_step_cases, reference=natural_gradient_step,
    mistakes=lambda: mistakes_of(STEP_KNOWN)))
