"""Lesson 06 exercises: the log-probability and the entropy of a diagonal Gaussian policy.

The expected values come from ``torch.distributions.Normal`` (an independent implementation),
so these cases also test ``ppo_lib.distributions``.

How the course calls them: ``GaussianActorCritic`` passes the network's mean (a non-leaf
tensor that requires grad, (B, D)) and its ``log_std`` parameter (a leaf, (D,)); lesson 06
differentiates the log-probability w.r.t. both; rollouts are (T, N, D). The cases do the
same, and a wrong value that matches a classic slip is named in the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Normal

from ...distributions import gaussian_entropy, gaussian_log_prob
from ..grading import Case, Exercise, Mistake, compare, register
from .gradients import gradient_flow_problem, gradient_mismatch_problem

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
HALF_LOG_2PIE = 0.5 * math.log(2 * math.pi * math.e)


def _has_shape(shape: tuple[int, ...]):
    def verify(out) -> str | None:
        if not isinstance(out, torch.Tensor):
            return f"expected a torch.Tensor, got {type(out).__name__}"
        if tuple(out.shape) != shape:
            return f"expected shape {shape}, got shape {tuple(out.shape)}"
        return None
    return verify


def diagnosing(want: Any, variants: Callable[[], dict[str, Any]], atol: float = 1e-5,
               rtol: float = 1e-4):
    """``verify`` comparing with ``want``; a wrong answer equal to one of ``variants``
    (description -> the value that slip gives) is told which slip it looks like."""
    def verify(got: Any) -> str | None:
        problem = compare(got, want, atol, rtol)
        if problem is None:
            return None
        matches = []
        for description, value in variants().items():
            try:
                if compare(got, value, atol, rtol) is None:
                    matches.append(description)
            except Exception:  # a variant that cannot be compared is no diagnosis
                continue
        return f"{problem}; that is what {' or '.join(matches)} gives" if matches else problem
    return verify


def _graph_verify(inputs: dict[str, torch.Tensor], leaves: dict[str, torch.Tensor],
                  shape: tuple[int, ...]):
    """The output keeps the autograd graph of the leaves (structure only; values are graded
    by the other cases)."""
    pristine = {k: v.detach().clone() for k, v in inputs.items()}

    def verify(out) -> str | None:
        for name, before in pristine.items():
            if not torch.equal(inputs[name].detach(), before):
                return f"your function changed {name} in place; compute into new tensors"
        for name, leaf in leaves.items():
            if not leaf.requires_grad:
                return (f"your function switched off requires_grad of {name} (the policy's "
                        "parameter): never call requires_grad_(False) on an input")
        if not isinstance(out, torch.Tensor):
            return f"expected a torch.Tensor, got {type(out).__name__} (no .item(), .numpy())"
        if tuple(out.shape) != shape:
            return f"expected shape {shape}, got shape {tuple(out.shape)}"
        if not out.requires_grad:
            return ("the result carries no gradient (.detach(), .data, .numpy() or "
                    "torch.tensor(...) somewhere?)")
        return gradient_flow_problem(out.sum(), leaves,
                                     ".detach(), .data, torch.tensor(...), math.* on a tensor")
    return verify


def _gradients_verify(fn_ref: Callable, inputs: dict[str, torch.Tensor],
                      leaves: dict[str, torch.Tensor], build: Callable):
    """The gradients of sum(output) w.r.t. the leaves equal the reference's."""
    pristine_leaves = {k: v.detach().clone() for k, v in leaves.items()}

    def verify(out) -> str | None:
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return "the result carries no gradient"
        got = torch.autograd.grad(out.sum(), list(leaves.values()), allow_unused=True)
        fresh = {k: v.clone().requires_grad_(True) for k, v in pristine_leaves.items()}
        want = torch.autograd.grad(fn_ref(**build(fresh)).sum(), list(fresh.values()))
        return gradient_mismatch_problem(list(leaves), got, want, atol=1e-5, rtol=1e-4)
    return verify


# ---------------------------------------------------------------------------------------
# gaussian_log_prob(mean, log_std, actions) -> (B,):
#   log pi(a|s) = sum_j [ -(a_j - mu_j)^2 / (2 sigma_j^2) - log sigma_j - log(2 pi) / 2 ]


def _normal_log_prob(mean, log_std, actions):
    return Normal(mean, torch.exp(log_std).expand_as(mean)).log_prob(actions).sum(-1)


def _log_prob_slips(mean, log_std, actions) -> Callable[[], dict[str, torch.Tensor]]:
    def variants() -> dict[str, torch.Tensor]:
        m, s, a = mean.detach(), log_std.detach().expand_as(mean), actions.detach()
        std = s.exp()
        return {
            "leaving out the -log(2 pi)/2 constant":
                (-0.5 * ((a - m) / std) ** 2 - s).sum(-1),
            "using log_std as if it were std":
                (-0.5 * ((a - m) / s) ** 2 - torch.log(s.abs()) - HALF_LOG_2PI).sum(-1),
            "subtracting std instead of log_std":
                (-0.5 * ((a - m) / std) ** 2 - std - HALF_LOG_2PI).sum(-1),
            "dividing (a - mu) by the variance instead of by std":
                (-0.5 * ((a - m) / std ** 2) ** 2 - s - HALF_LOG_2PI).sum(-1),
            "leaving out the 1/2 in the exponent":
                (-((a - m) / std) ** 2 - s - HALF_LOG_2PI).sum(-1),
            "writing (a - mu)**2 / 2 * std**2, which multiplies by std^2 (mind the brackets)":
                (-(a - m) ** 2 / 2 * std ** 2 - s - HALF_LOG_2PI).sum(-1),
            "a mean over the action dimensions instead of the SUM":
                (-0.5 * ((a - m) / std) ** 2 - s - HALF_LOG_2PI).mean(-1),
        }
    return variants


def _log_prob_case(name: str, mean, log_std, actions, hint: str) -> Case:
    return Case(name, args=(mean, log_std, actions), hint=hint,
                verify=diagnosing(_normal_log_prob(mean, log_std, actions),
                                  _log_prob_slips(mean, log_std, actions)))


def _log_prob_graph_inputs(seed: int, shape: tuple[int, ...]):
    g = torch.Generator().manual_seed(seed)
    dim = shape[-1]
    weights = torch.randn(dim, generator=g).requires_grad_(True)      # "the network"
    log_std = (0.3 * torch.randn(dim, generator=g)).requires_grad_(True)
    features = torch.randn(shape, generator=g)
    actions = features + torch.randn(shape, generator=g)
    leaves = {"mean": weights, "log_std": log_std}
    return (lambda ls: dict(mean=features * ls["mean"], log_std=ls["log_std"],
                            actions=actions)), leaves


def _log_prob_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 3, generator=g)
    actions = mean + 1.5 * torch.randn(5, 3, generator=g)
    log_std = torch.tensor([-0.5, 0.0, 0.7])
    mean1 = torch.randn(4, 1, generator=g)
    actions1 = mean1 + torch.randn(4, 1, generator=g)
    per_state_log_std = 0.3 * torch.randn(5, 3, generator=g)
    mean_tn = torch.randn(4, 2, 3, generator=g)
    actions_tn = mean_tn + torch.randn(4, 2, 3, generator=g)
    mean_one = torch.randn(1, 3, generator=g)
    actions_one = mean_one + torch.randn(1, 3, generator=g)

    build, leaves = _log_prob_graph_inputs(1, (6, 2))
    graph_inputs = build(leaves)
    build2, leaves2 = _log_prob_graph_inputs(2, (3, 4, 2))
    return [
        Case("one log-probability per state: (B, D) -> (B,)",
             args=(mean, log_std, actions), verify=_has_shape((5,)),
             hint="the action dimensions are independent: the log-probability of the action "
                  "vector is the SUM over the last axis (dim=-1, no keepdim), one number per "
                  "state; the std is exp(log_std) (Normal's scale is std, not log_std)"),
        Case("the mean from a network, log_std a parameter (both require grad)",
             kwargs=graph_inputs, verify=_graph_verify(graph_inputs, leaves, (6,)),
             hint="the policy gradient flows through this log-probability into the network "
                  "(mean) and log_std: use torch operations only (torch.exp, torch.log, not "
                  "math.exp or numpy), without .detach(), .item() or requires_grad_(False)"),
        _log_prob_case("one action dimension, log_std = 0 (std = 1)",
                       mean1, torch.zeros(1), actions1,
                       hint="with std = 1: -(a - mu)^2 / 2 - log(2 pi) / 2"),
        _log_prob_case("one action dimension, log_std = 0.5",
                       mean1, torch.full((1,), 0.5), actions1,
                       hint="std = exp(log_std): divide (a - mu) by std (not by the variance, "
                            "not by log_std) and subtract log_std (not std)"),
        _log_prob_case("three action dimensions: one log-probability per state, shape (B,)",
                       mean, log_std, actions,
                       hint="the action dimensions are independent: the log-probability of "
                            "the action vector is the SUM over the last axis, shape (B,)"),
        _log_prob_case("log_std given per state, shape (B, D)", mean, per_state_log_std,
                       actions, hint="log_std may have the shape of mean; use broadcasting, "
                                     "not indexing"),
        Case("the action at the mean, log_std = -1",
             args=(torch.zeros(2, 2), torch.full((2,), -1.0), torch.zeros(2, 2)),
             expected=torch.full((2,), 2 * (1.0 - HALF_LOG_2PI)),
             hint="at a = mu: sum_j (-log sigma_j - log(2 pi) / 2) = 2 * (1 - 0.919)"),
        _log_prob_case("a batch of one state, (1, D) -> (1,)", mean_one, log_std, actions_one,
                       hint="a batch of one keeps its batch axis: sum over dim=-1 only, no "
                            ".squeeze() and no sum over every axis"),
        _log_prob_case("a rollout, (T, N, D) -> (T, N)", mean_tn, log_std, actions_tn,
                       hint="sum over the LAST axis (dim=-1), not dim=1: a rollout's means "
                            "are (T, N, D)"),
        Case("gradients w.r.t. the mean and log_std", kwargs=build2(leaves2),
             verify=_gradients_verify(gaussian_log_prob, build2(leaves2), leaves2, build2),
             hint="the value is right but the gradient is not: a part of the formula is "
                  "detached or computed outside torch"),
    ]


def _per_dim(mean, log_std, actions):
    return -0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std - HALF_LOG_2PI


def _log_prob_mistakes() -> list[Mistake]:
    return [
        Mistake("not summed over the action dimensions", _per_dim,
                hint="SUM over the last axis"),
        Mistake("mean over the action dimensions instead of sum",
                lambda m, s, a: _per_dim(m, s, a).mean(-1), hint="instead of the SUM"),
        Mistake("log_std used as if it were std",
                lambda m, s, a: (-0.5 * ((a - m) / s) ** 2 - torch.log(s.abs())
                                 - HALF_LOG_2PI).sum(-1), hint="log_std as if it were std"),
        Mistake("std subtracted instead of log_std",
                lambda m, s, a: (-0.5 * ((a - m) / s.exp()) ** 2 - s.exp()
                                 - HALF_LOG_2PI).sum(-1), hint="std instead of log_std"),
        Mistake("missing the -log(2 pi)/2 constant",
                lambda m, s, a: (_per_dim(m, s, a) + HALF_LOG_2PI).sum(-1),
                hint="log(2 pi)/2 constant"),
        Mistake("variance instead of std in the square",
                lambda m, s, a: (-0.5 * ((a - m) / (2 * s).exp()) ** 2 - s
                                 - HALF_LOG_2PI).sum(-1), hint="by the variance"),
        Mistake("missing the 1/2 in the exponent",
                lambda m, s, a: (-((a - m) / s.exp()) ** 2 - s - HALF_LOG_2PI).sum(-1),
                hint="the 1/2 in the exponent"),
        Mistake("(a - mu)**2 / 2 * std**2 (precedence: multiplies by the variance)",
                lambda m, s, a: (-(a - m) ** 2 / 2 * s.exp() ** 2 - s - HALF_LOG_2PI).sum(-1),
                hint="mind the brackets"),
        Mistake("summed over dim=1 (wrong for (T, N, D) rollouts)",
                lambda m, s, a: _per_dim(m, s, a).sum(1), hint="not dim=1"),
        Mistake(".squeeze() after the sum (a batch of one loses its axis)",
                lambda m, s, a: _per_dim(m, s, a).sum(-1).squeeze(), hint="no .squeeze()"),
        Mistake("log_std detached (no gradient to the policy's log_std)",
                lambda m, s, a: _per_dim(m, s.detach(), a).sum(-1),
                hint="no gradient flows to log_std"),
        Mistake("math.exp / numpy on the tensors (no gradient)",
                lambda m, s, a: torch.as_tensor(_per_dim(m, s, a).sum(-1).detach().numpy()),
                hint="carries no gradient"),
        Mistake("requires_grad_(False) on log_std",
                lambda m, s, a: _per_dim(m, s.requires_grad_(False), a).sum(-1),
                hint="requires_grad_(False)"),
        Mistake("torch Normal with log_std as its scale",
                lambda m, s, a: Normal(m, s).log_prob(a).sum(-1), hint="not log_std"),
        Mistake("summed with keepdim=True, shape (B, 1)",
                lambda m, s, a: _per_dim(m, s, a).sum(-1, keepdim=True), hint="no keepdim"),
        Mistake("std from log_std.data (a detached copy)",
                lambda m, s, a: (-0.5 * ((a - m) / s.data.exp()) ** 2 - s
                                 - HALF_LOG_2PI).sum(-1),
                hint="the gradient is not"),
    ]


register(Exercise(
    id="gaussian_log_prob", lesson="06",
    title="Log-probability of a diagonal Gaussian, summed over action dimensions",
    cases=_log_prob_cases, reference=gaussian_log_prob, mistakes=_log_prob_mistakes))


# ---------------------------------------------------------------------------------------
# gaussian_entropy(log_std) -> sums over the last axis:
#   H = sum_j [ 0.5 * log(2 pi e) + log sigma_j ]


def _normal_entropy(log_std):
    return Normal(torch.zeros_like(log_std), log_std.exp()).entropy().sum(-1)


def _entropy_slips(log_std) -> Callable[[], dict[str, torch.Tensor]]:
    def variants() -> dict[str, torch.Tensor]:
        s = log_std.detach()
        d = s.shape[-1]
        return {
            "leaving out the 0.5 log(2 pi e) constant": s.sum(-1),
            "0.5 log(2 pi) without the e": (HALF_LOG_2PI + s).sum(-1),
            "log(2 pi e) without the 1/2": (2 * HALF_LOG_2PIE + s).sum(-1),
            "using std instead of log_std": (HALF_LOG_2PIE + s.exp()).sum(-1),
            "a mean over the dimensions instead of the SUM": (HALF_LOG_2PIE + s).mean(-1),
            "the constant times len(log_std), the number of rows, not of dimensions":
                len(s) * HALF_LOG_2PIE + s.sum(-1) if d != len(s) else s.sum(-1) * float("nan"),
        }
    return variants


def _entropy_case(name: str, log_std: torch.Tensor, hint: str) -> Case:
    return Case(name, args=(log_std,), hint=hint,
                verify=diagnosing(_normal_entropy(log_std), _entropy_slips(log_std)))


def _entropy_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    batch = 0.5 * torch.randn(4, 3, generator=g)
    rollout = 0.5 * torch.randn(5, 2, 3, generator=g)
    one = 0.5 * torch.randn(1, 3, generator=g)
    parameter = (0.4 * torch.randn(2, generator=g)).requires_grad_(True)
    graph_inputs = {"log_std": parameter.expand(6, 2)}     # as a batch sees the parameter
    parameter2 = (0.4 * torch.randn(3, generator=g)).requires_grad_(True)
    return [
        Case("one entropy per state: (D,) -> () and (B, D) -> (B,)",
             args=(batch,), verify=_has_shape((4,)),
             hint="the dimensions are independent: the entropy of the action vector is the "
                  "SUM over the last axis (dim=-1) of the per-dimension entropies"),
        Case("log_std a parameter that requires grad (the entropy bonus trains it)",
             kwargs=graph_inputs,
             verify=_graph_verify(graph_inputs, {"log_std": parameter}, (6,)),
             hint="the entropy bonus pushes log_std up through this function: use torch "
                  "operations on log_std (no .item(), .detach(), math.* or numpy)"),
        _entropy_case("one dimension, log_std = 0", torch.zeros(1),
                      hint="H of N(mu, 1) is 0.5 * log(2 pi e) = 1.419"),
        _entropy_case("one dimension, log_std = -1.2", torch.tensor([-1.2]),
                      hint="H = 0.5 * log(2 pi e) + log_std: it grows with log_std, not "
                           "with std"),
        _entropy_case("three dimensions: a sum over the last axis",
                      torch.tensor([-0.5, 0.0, 0.7]),
                      hint="the dimensions are independent: the entropy of the action vector "
                           "is the SUM of the per-dimension entropies (shape (), not (D,))"),
        _entropy_case("a batch of log_stds, shape (B, D) -> (B,)", batch,
                      hint="sum over the last axis only (dim=-1), so a batch gives one "
                           "entropy per state; the number of dimensions is "
                           "log_std.shape[-1], not len(log_std)"),
        _entropy_case("a batch of one, (1, D) -> (1,)", one,
                      hint="a batch of one keeps its batch axis: no .squeeze(); and "
                           "len(log_std) is 1 here, not the number of dimensions"),
        _entropy_case("a rollout, (T, N, D) -> (T, N)", rollout,
                      hint="sum over the LAST axis (dim=-1), not dim=1"),
        Case("the gradient w.r.t. log_std", args=(parameter2,),
             verify=_gradients_verify(gaussian_entropy, {"log_std": parameter2},
                                      {"log_std": parameter2}, lambda ls: ls),
             hint="dH/dlog_std_j = 1: the value is right but the gradient is not"),
    ]


def _entropy_mistakes() -> list[Mistake]:
    const = HALF_LOG_2PIE
    return [
        Mistake("not summed over dimensions", lambda s: const + s, hint="SUM over the last axis"),
        Mistake("mean over dimensions instead of sum", lambda s: (const + s).mean(-1),
                hint="instead of the SUM"),
        Mistake("summed over every axis", lambda s: (const + s).sum(),
                hint="SUM over the last axis"),
        Mistake("missing the 0.5 log(2 pi e) constant", lambda s: s.sum(-1),
                hint="0.5 log(2 pi e) constant"),
        Mistake("0.5 log(2 pi) without the e", lambda s: (HALF_LOG_2PI + s).sum(-1),
                hint="without the e"),
        Mistake("log(2 pi e) without the 1/2", lambda s: (2 * const + s).sum(-1),
                hint="without the 1/2"),
        Mistake("std instead of log_std", lambda s: (const + s.exp()).sum(-1),
                hint="std instead of log_std"),
        Mistake("constant times len(log_std) (right for a 1-D log_std only)",
                lambda s: len(s) * const + s.sum(-1), hint="len(log_std)"),
        Mistake("summed over dim=1 (wrong for (T, N, D))", lambda s: (const + s).sum(1)
                if s.dim() > 1 else (const + s).sum(-1), hint="not dim=1"),
        Mistake(".squeeze() after the sum", lambda s: (const + s).sum(-1).squeeze(),
                hint="no .squeeze()"),
        Mistake("computed with math / floats (no gradient)",
                lambda s: torch.tensor([[const * s.shape[-1] + float(x) for x in row]
                                        for row in s.detach().reshape(-1, s.shape[-1]).sum(-1,
                                        keepdim=True)]).reshape(s.shape[:-1]),
                hint="carries no gradient"),
        Mistake("log_std detached", lambda s: (const + s.detach()).sum(-1),
                hint="carries no gradient"),
    ]


register(Exercise(
    id="gaussian_entropy", lesson="06",
    title="Entropy of a diagonal Gaussian, summed over action dimensions",
    cases=_entropy_cases, reference=gaussian_entropy, mistakes=_entropy_mistakes))
