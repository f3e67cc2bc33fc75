"""Lesson 05 exercise: the explained variance of the critic. ``ppo_loss`` is in
``lesson05_ppo_loss.py``.
"""

from __future__ import annotations

import torch

from ... import diagnostics, returns
from ..grading import Case, Exercise, compare, register
from .cases import Known, T, graded_case, mistakes_of


# ---------------------------------------------------------------------------------------
# explained_variance(values, returns) -> float

def _ev_swapped(values, returns):
    return diagnostics.explained_variance(returns, values)


def _ev_mse(values, returns):
    return (1 - ((returns - values) ** 2).mean() / returns.var(unbiased=False)).item()


def _ev_no_nan_guard(values, returns):
    with torch.no_grad():
        return (1 - (returns - values).var() / returns.var()).item()


def _ev_zero_when_constant(values, returns):
    if returns.var() == 0:
        return 0.0
    return (1 - (returns - values).var() / returns.var()).item()


def _ev_per_env(values, returns):
    if values.dim() == 1:
        return diagnostics.explained_variance(values, returns)
    per_env = [diagnostics.explained_variance(values[:, i], returns[:, i])
               for i in range(values.shape[1])]
    return sum(per_env) / len(per_env)


def _ev_axis0(values, returns):
    return 1 - (returns - values).var(0) / returns.var(0)


def _ev_std(values, returns):
    return (1 - (returns - values).std() / returns.std()).item()


EV_KNOWN = [
    Known("no NaN case (gives -inf)", _ev_no_nan_guard, "missing NaN case",
          "you have no NaN case (missing NaN case): when Var(returns) == 0 return "
          "float('nan')"),
    Known("returns 0 when Var(returns) == 0", _ev_zero_when_constant, "missing NaN case"),
    Known("swapped arguments", _ev_swapped, "Var(returns), the second argument",
          "you swapped the arguments: divide by Var(returns), the second argument"),
    Known("mean squared error instead of variance", _ev_mse, "VARIANCE",
          "you use the mean squared error: use the VARIANCE of returns - values (a constant "
          "offset is explained)"),
    Known("standard deviations instead of variances", _ev_std, "variances, not",
          "you divide standard deviations: EV uses variances, not standard deviations"),
    Known("Var(values) / Var(returns)",
          lambda v, r: (v.double().var() / r.double().var()).item(), "residuals",
          "you compare Var(values) with Var(returns): EV uses the residuals, "
          "1 - Var(returns - values) / Var(returns)"),
    Known("forgets the 1 -", lambda v, r: 1 - diagnostics.explained_variance(v, r), "1 -",
          "you return Var(returns - values) / Var(returns): EV is 1 minus that"),
    Known("clipped at 0", lambda v, r: max(0.0, diagnostics.explained_variance(v, r)),
          "do not clip", "you clip at 0: EV can be below 0 (worse than predicting the mean), "
          "do not clip it"),
    Known("per-env EV, averaged", _ev_per_env, "per env",
          "you compute one EV per env and average: EV is over all T * N samples together"),
    Known("variances over axis 0 (one per env)", _ev_axis0, "single number",
          "you return one value per env: EV is a single number over all samples"),
]


def explained_variance_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, diagnostics.explained_variance, args, hint=hint, known=EV_KNOWN,
                          expected=expected)
    rets = T([1.0, 2.0, 3.0, 4.0])
    tn_rets = T([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0], [3.0, 8.0]])
    tn_values = T([[0.5, 5.5], [1.5, 5.5], [1.5, 7.5], [2.5, 7.5]])
    return [
        case("a perfect critic: 1", (rets.clone(), rets), expected=1.0,
             hint="EV = 1 - Var(returns - values) / Var(returns)"),
        case("predicting the mean: 0", (torch.full((4,), 2.5), rets), expected=0.0,
             hint="EV = 1 - Var(returns - values) / Var(returns)"),
        case("worse than the mean: negative", (T([4.0, 3.0, 2.0, 1.0]), rets), expected=-3.0,
             hint="EV can be below 0; do not clip it"),
        case("off by a constant still explains everything", (rets + 10, rets), expected=1.0,
             hint="use the VARIANCE of returns - values, not the mean squared error"),
        case("arguments in order (values, returns)", (T([1.0, 1.0, 2.0, 2.0]), rets),
             expected=0.6, hint="divide by Var(returns), the second argument"),
        case("(T, N) = (4, 2) rollout: one EV over all samples", (tn_values, tn_rets),
             hint="a (T, N) rollout: the variances run over all T * N samples together "
                  "(not one EV per env)"),
        case("constant returns: NaN", (T([1.0, 2.0, 3.0, 4.0]), torch.full((4,), 5.0)),
             expected=float("nan"),
             hint="missing NaN case: when Var(returns) == 0, return float('nan')"),
        case("one sample: NaN", (T([1.0]), T([2.0])), expected=float("nan"),
             hint="one sample has Var(returns) == 0: return float('nan')"),
    ]


register(Exercise(
    id="explained_variance", lesson="05", title="Explained variance of the critic",
    cases=explained_variance_cases, reference=diagnostics.explained_variance,
    mistakes=lambda: mistakes_of(EV_KNOWN)))
