"""Lesson 02 exercise: the natural-gradient step of TRPO with an explicit Fisher matrix.

With the exercises ``kl_categorical`` (the exact KL between categorical distributions) and
``conjugate_gradient`` (solving F x = g with a matrix-vector product), registered first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from ... import kl
from ..grading import Case, Exercise, compare, register
from .cases import Known, T, graded_case, mistakes_of, uniform


# ---------------------------------------------------------------------------------------
# kl_categorical(p, q)

def _kl_terms(p, q):
    return torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))


KL_KNOWN = [
    Known("reversed direction", lambda p, q: kl.kl_categorical(q, p), "KL(q || p)",
          "you compute KL(q || p): KL(p || q) weights log(p / q) by p, the first argument"),
    Known("averages over actions", lambda p, q: _kl_terms(p, q).mean(-1), "average over actions",
          "you average over actions: sum over the last axis (a mean divides the KL by the "
          "number of actions)"),
    Known("NaN for zero probabilities", lambda p, q: (p * (torch.log(p) - torch.log(q))).sum(-1),
          "0 * log 0",
          "0 * log 0 gives NaN in floating point: use torch.where(p > 0, ..., 0) (the limit "
          "of p log p is 0)"),
    Known("sums over every axis", lambda p, q: _kl_terms(p, q).sum(), "last axis only",
          "you sum over every axis: one KL per row, sum over the last axis only (dim=-1)"),
    Known("sums over the first axis", lambda p, q: _kl_terms(p, q).sum(0), "LAST axis",
          "you reduce over axis 0: the actions are on the LAST axis, sum(dim=-1)"),
    Known("F.kl_div with reduction='batchmean' (one number)",
          lambda p, q: torch.nn.functional.kl_div(q.log(), p, reduction="batchmean"),
          "one KL per row",
          "you return one number for the whole batch: return one KL per row, shape (B,)"),
    Known("sign flipped: log(q / p)", lambda p, q: -kl.kl_categorical(p, q), "sign is flipped",
          "your sign is flipped: KL(p || q) = sum_a p(a) (log p(a) - log q(a)) >= 0"),
    Known("squeezes the result", lambda p, q: kl.kl_categorical(p, q).squeeze(), "no squeeze()",
          "you squeeze the result: a batch of one row gives shape (1,) (no squeeze())"),
]


def kl_categorical_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, kl.kl_categorical, args, hint=hint, known=KL_KNOWN,
                           expected=expected)
    p = T([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1]])
    q = T([[0.3, 0.3, 0.4], [0.1, 0.6, 0.3]])
    return [
        case("KL(p, p) = 0", (p, p.clone()), expected=T([0.0, 0.0]),
             hint="log(p / p) = 0 for every action"),
        case("a known value: KL([0.5, 0.5] || [0.9, 0.1])", (T([0.5, 0.5]), T([0.9, 0.1])),
             expected=T(0.5108256), hint=("KL(p || q) = sum_a p(a) log(p(a) / q(a)): weight by "
                                          "p, the first argument, and sum over actions")),
        case("the direction matters: KL(p || q) != KL(q || p)", (p, q),
             hint="KL(p || q) weights log(p / q) by p, the first argument, not by q"),
        case("sum over actions, not mean", (T([0.25, 0.25, 0.25, 0.25]), T([0.7, 0.1, 0.1, 0.1])),
             hint="sum over the last axis (actions)"),
        case("one KL per row for a batch (B, A) = (4, 5)",
             (torch.softmax(uniform((4, 5), 61, -2, 2), -1),
              torch.softmax(uniform((4, 5), 62, -2, 2), -1)),
             hint="reduce over the last axis only: the result has shape (B,)"),
        case("a batch of one: (1, A) gives shape (1,)",
             (torch.softmax(uniform((1, 5), 63, -2, 2), -1),
              torch.softmax(uniform((1, 5), 64, -2, 2), -1)),
             hint="a batch of one row is still a batch: keep the shapes (no squeeze())"),
        case("(T, N, A) = (3, 2, 4): the KL over the last axis, shape (3, 2)",
             (torch.softmax(uniform((3, 2, 4), 65, -2, 2), -1),
              torch.softmax(uniform((3, 2, 4), 66, -2, 2), -1)),
             hint="reduce over the last axis only: the result drops that axis"),
        case("float64, as lesson 02 uses it",
             (T([0.4, 0.3, 0.3], dtype=torch.float64), T([0.9, 0.05, 0.05], dtype=torch.float64)),
             hint="KL(p || q) = sum_a p(a) log(p(a) / q(a))"),
        case("p(a) = 0 contributes 0 (not NaN)", (T([1.0, 0.0]), T([0.5, 0.5])),
             expected=T(0.6931472), hint=("log of zero probs: 0 * log 0 is NaN in floating point; "
                                          "use torch.where(p > 0, ..., 0) (its limit is 0)")),
    ]


register(Exercise(
    id="kl_categorical", lesson="02", title="Exact KL between categorical distributions",
    cases=kl_categorical_cases, reference=kl.kl_categorical,
    mistakes=lambda: mistakes_of(KL_KNOWN)))


# ---------------------------------------------------------------------------------------
# conjugate_gradient(Avp, b, iters=10, tol=1e-10); the reference lives in ppo_lib.trpo

def _conjugate_gradient(Avp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10,
                        tol: float = 1e-10) -> Tensor:
    """ppo_lib.trpo.conjugate_gradient (same signature, so that cases bind to it)."""
    from ...trpo import conjugate_gradient  # lazily: trpo imports more than torch
    return conjugate_gradient(Avp, b, iters, tol)


def _spd(n: int, seed: int) -> Tensor:
    m = uniform((n, n), seed, -1, 1, dtype=torch.float64)
    return m @ m.T + n * torch.eye(n, dtype=torch.float64)


def _matvec(a: Tensor):
    """v -> A v: a plain function of the matrix (module level, so no closures in cases)."""
    return a.__matmul__


def _cg_variant(Avp, b, iters=10, tol=1e-10, *, residual_sign=-1.0, max_iters=None,
                check_tol=True, norm_tol=False):
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    for _ in range(iters if max_iters is None else min(iters, max_iters)):
        if check_tol and ((rr.sqrt() if norm_tol else rr) < tol):
            break
        ap = Avp(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r + residual_sign * alpha * ap
        rr_new = r @ r
        p = r + rr_new / rr * p
        rr = rr_new
    return x


def _cg_from_b(Avp, b, iters=10, tol=1e-10):
    x = b.clone()  # the exercise starts from x = 0
    r = b - Avp(x)
    p, rr = r.clone(), r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = Avp(p)
        alpha = rr / (p @ ap)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = r @ r
        p, rr = r + rr_new / rr * p, rr_new
    return x


def _cg_steepest_descent(Avp, b, iters=10, tol=1e-10):
    x = torch.zeros_like(b)
    for _ in range(iters):
        r = b - Avp(x)
        x = x + (r @ r) / (r @ Avp(r)) * r
    return x


def _cg(**switches):
    return lambda Avp, b, iters=10, tol=1e-10: _cg_variant(Avp, b, iters, tol, **switches)


HINT_CG_STEPS = ("x = 0, r = p = b; alpha = r.r / p.Ap; x += alpha p; r -= alpha Ap; "
                 "beta = r_new.r_new / r.r; p = r + beta p")

CG_KNOWN = [
    Known("one iteration only", _cg(max_iters=1), "one iteration",
          "you stop after one iteration: run up to `iters` iterations"),
    Known("residual updated with + alpha A p", _cg(residual_sign=1.0), "+ alpha A p",
          "you update the residual with + alpha A p: r_{k+1} = r_k - alpha A p_k"),
    Known("ignores iters (always 20)",
          lambda Avp, b, iters=10, tol=1e-10: _cg_variant(Avp, b, 20, tol),
          "exactly `iters` iterations"),
    Known("does not use Avp (returns b)", lambda Avp, b, iters=10, tol=1e-10: b.clone(),
          "b itself", "your answer is b itself: A enters through Avp(p), and x starts at 0"),
    Known("starts from x = b", _cg_from_b, "start from x = 0",
          "you start from x = b: start from x = 0, so r = p = b (after fewer than n "
          "iterations the two starts give different x)"),
    Known("steepest descent, not conjugate directions", _cg_steepest_descent,
          "steepest descent",
          "you step along the residual each time (steepest descent): conjugate gradient "
          "steps along p = r + beta p, conjugate to the previous directions"),
    Known("never stops early (ignores tol)", _cg(check_tol=False), "r.r < tol",
          "you do not stop when r.r < tol: once the residual is exactly 0 the next alpha "
          "is 0 / 0"),
    Known("compares the norm |r|, not r.r, with tol", _cg(norm_tol=True), "not its norm",
          "you compare the residual's norm with tol: stop when r.r (the squared norm, not "
          "its norm) < tol"),
]


def conjugate_gradient_cases() -> list[Case]:
    def case(name, args, kwargs=None, *, hint, expected=None, atol=1e-6):
        return graded_case(name, _conjugate_gradient, args, kwargs, hint=hint, known=CG_KNOWN,
                          expected=expected, atol=atol)
    a2 = T([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    a5 = _spd(5, 71)
    a8 = _spd(8, 72)
    b5 = uniform(5, 73, -1, 1, dtype=torch.float64)
    b8 = uniform(8, 74, -1, 1, dtype=torch.float64)
    two = 2 * torch.eye(3, dtype=torch.float64)
    return [
        case("2 x 2: A = [[4, 1], [1, 3]], b = [1, 2]",
             (_matvec(a2), T([1.0, 2.0], dtype=torch.float64)),
             expected=T([1 / 11, 7 / 11], dtype=torch.float64), atol=1e-8, hint=HINT_CG_STEPS),
        case("5 x 5 SPD, 10 iterations solve it exactly", (_matvec(a5), b5), {"iters": 10},
             expected=torch.linalg.solve(a5, b5),
             hint="r_{k+1} = r_k - alpha A p_k (minus, and with A p, from Avp)"),
        case("8 x 8 SPD, iters = 3: exactly 3 steps", (_matvec(a8), b8), {"iters": 3},
             hint="run exactly `iters` iterations (or stop early when r.r < tol)"),
        case("8 x 8 SPD, default iters (10)", (_matvec(a8), b8),
             hint="the default is iters=10; A enters only through Avp(p)"),
        case("A = 2 I: solved exactly after one step, then stop (r.r = 0 < tol)",
             (_matvec(two), T([1.0, -2.0, 0.5], dtype=torch.float64)), {"iters": 5},
             expected=T([0.5, -1.0, 0.25], dtype=torch.float64),
             hint="stop as soon as r.r < tol: with r = 0 the next alpha would be 0 / 0"),
        case("one unknown: A = [[3]], b = [6]",
             (_matvec(T([[3.0]], dtype=torch.float64)), T([6.0], dtype=torch.float64)),
             expected=T([2.0], dtype=torch.float64), atol=1e-8,
             hint="a 1 x 1 system is solved by the first step: x = (r.r / p.Ap) p = 2"),
        case("tol = 0.0 (as lesson 02 calls it): all iters run", (_matvec(a8), b8),
             {"iters": 4, "tol": 0.0}, hint="with tol = 0 the loop never stops early"),
        case("8 x 8 SPD, tol = 0.01: stop once r.r < tol", (_matvec(a8), b8),
             {"iters": 10, "tol": 0.01},
             hint="tol bounds r.r (the squared norm of the residual), checked before each step"),
    ]


register(Exercise(
    id="conjugate_gradient", lesson="02", title="Conjugate gradient with a matrix-vector product",
    cases=conjugate_gradient_cases, reference=_conjugate_gradient,
    mistakes=lambda: mistakes_of(CG_KNOWN)))


# ---------------------------------------------------------------------------------------
# natural_gradient_step(g, fisher, delta)

def natural_gradient_step(g: Tensor, fisher: Tensor, delta: float) -> Tensor:
    """The step TRPO takes before its line search (lesson 02, eq. 2.4).

        x = F^-1 g,    step = sqrt(2 delta / (g^T F^-1 g)) * x

    It maximises the linear model g^T step subject to the quadratic KL model
    1/2 step^T F step <= delta, which it meets with equality.
    """
    x = torch.linalg.solve(fisher, g)
    return torch.sqrt(2 * delta / torch.dot(g, x)) * x


def _skewed_spd(n: int, seed: int) -> Tensor:
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
          "your step points downhill: TRPO maximises the surrogate L^CPI, the step is +sqrt(...) "
          "F^-1 g (uphill)"),
]


def _natural_step_cases() -> list[Case]:
    def case(name, args, *, hint):
        return graded_case(name, natural_gradient_step, args, hint=hint, known=STEP_KNOWN)
    diagonal = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    f3, g3 = _skewed_spd(3, 1), _vector(3, 2)
    f5, g5 = _skewed_spd(5, 3), _vector(5, 4)
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
