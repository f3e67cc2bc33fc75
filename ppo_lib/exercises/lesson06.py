"""Lesson 06 exercises: the log-probability and the entropy of a diagonal Gaussian policy.

The expected values come from ``torch.distributions.Normal`` (an independent implementation),
so these cases also test ``ppo_lib.distributions``.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal

from ..distributions import gaussian_entropy, gaussian_log_prob
from ..grading import Case, Exercise, Mistake, register

# ---------------------------------------------------------------------------------------
# gaussian_log_prob(mean, log_std, actions) -> (B,):
#   log pi(a|s) = sum_j [ -(a_j - mu_j)^2 / (2 sigma_j^2) - log sigma_j - log(2 pi) / 2 ]


def _has_shape(shape: tuple[int, ...]):
    def verify(out) -> str | None:
        if not isinstance(out, torch.Tensor):
            return f"expected a torch.Tensor, got {type(out).__name__}"
        if tuple(out.shape) != shape:
            return f"expected shape {shape}, got shape {tuple(out.shape)}"
        return None
    return verify


def _normal_log_prob(mean, log_std, actions):
    return Normal(mean, torch.exp(log_std).expand_as(mean)).log_prob(actions).sum(-1)


def _log_prob_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 3, generator=g)
    actions = mean + 1.5 * torch.randn(5, 3, generator=g)
    log_std = torch.tensor([-0.5, 0.0, 0.7])
    mean1 = torch.randn(4, 1, generator=g)
    actions1 = mean1 + torch.randn(4, 1, generator=g)
    per_state_log_std = 0.3 * torch.randn(5, 3, generator=g)
    return [
        Case("one log-probability per state: (B, D) -> (B,)",
             args=(mean, log_std, actions), verify=_has_shape((5,)),
             hint="the action dimensions are independent: the log-probability of the action "
                  "vector is the SUM over the last axis (dim=-1), one number per state"),
        Case("one action dimension, log_std = 0 (std = 1)",
             args=(mean1, torch.zeros(1), actions1),
             expected=_normal_log_prob(mean1, torch.zeros(1), actions1),
             hint="with std = 1: -(a - mu)^2 / 2 - log(2 pi) / 2; did you leave out the "
                  "normalising constant -0.5 * log(2 pi)?"),
        Case("one action dimension, log_std = 0.5",
             args=(mean1, torch.full((1,), 0.5), actions1),
             expected=_normal_log_prob(mean1, torch.full((1,), 0.5), actions1),
             hint="std = exp(log_std); divide (a - mu) by std (not by the variance, not by "
                  "log_std) and subtract log_std (not std)"),
        Case("three action dimensions: one log-probability per state, shape (B,)",
             args=(mean, log_std, actions),
             expected=_normal_log_prob(mean, log_std, actions),
             hint="the action dimensions are independent: the log-probability of the "
                  "action vector is the SUM over the last axis, giving shape (B,)"),
        Case("log_std given per state, shape (B, D)",
             args=(mean, per_state_log_std, actions),
             expected=_normal_log_prob(mean, per_state_log_std, actions),
             hint="log_std may have the shape of mean; use broadcasting, not indexing"),
        Case("the action at the mean, log_std = -1",
             args=(torch.zeros(2, 2), torch.full((2,), -1.0), torch.zeros(2, 2)),
             expected=torch.full((2,), 2 * (1.0 - 0.5 * math.log(2 * math.pi))),
             hint="at a = mu: sum_j (-log sigma_j - log(2 pi) / 2) = 2 * (1 - 0.919)"),
    ]


def _log_prob_mistakes() -> list[Mistake]:
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def per_dim(mean, log_std, actions):
        return -0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std - half_log_2pi

    return [
        Mistake("not summed over the action dimensions", per_dim),
        Mistake("mean over the action dimensions instead of sum",
                lambda m, s, a: per_dim(m, s, a).mean(-1)),
        Mistake("log_std used as if it were std",
                lambda m, s, a: (-0.5 * ((a - m) / s) ** 2 - torch.log(s.abs())
                                 - half_log_2pi).sum(-1)),
        Mistake("std subtracted instead of log_std",
                lambda m, s, a: (-0.5 * ((a - m) / s.exp()) ** 2 - s.exp()
                                 - half_log_2pi).sum(-1)),
        Mistake("missing the -log(2 pi)/2 constant",
                lambda m, s, a: (per_dim(m, s, a) + half_log_2pi).sum(-1)),
        Mistake("variance instead of std in the square",
                lambda m, s, a: (-0.5 * ((a - m) / (2 * s).exp()) ** 2 - s
                                 - half_log_2pi).sum(-1)),
        Mistake("missing the 1/2 in the exponent",
                lambda m, s, a: (-((a - m) / s.exp()) ** 2 - s - half_log_2pi).sum(-1)),
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


def _entropy_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    batch = 0.5 * torch.randn(4, 3, generator=g)
    return [
        Case("one entropy per state: (D,) -> () and (B, D) -> (B,)",
             args=(batch,), verify=_has_shape((4,)),
             hint="the dimensions are independent: the entropy of the action vector is the "
                  "SUM over the last axis (dim=-1) of the per-dimension entropies"),
        Case("one dimension, log_std = 0", args=(torch.zeros(1),),
             expected=torch.tensor(0.5 * math.log(2 * math.pi * math.e)),
             hint="H of N(mu, 1) is 0.5 * log(2 pi e) = 1.419: did you leave out the "
                  "constant?"),
        Case("one dimension, log_std = -1.2", args=(torch.tensor([-1.2]),),
             expected=_normal_entropy(torch.tensor([-1.2])),
             hint="H = 0.5 * log(2 pi e) + log_std: it grows with log_std, not with std"),
        Case("three dimensions: a sum over the last axis",
             args=(torch.tensor([-0.5, 0.0, 0.7]),),
             expected=_normal_entropy(torch.tensor([-0.5, 0.0, 0.7])),
             hint="the dimensions are independent: the entropy of the action vector is the "
                  "SUM of the per-dimension entropies (shape (), not (D,))"),
        Case("a batch of log_stds, shape (B, D) -> (B,)", args=(batch,),
             expected=_normal_entropy(batch),
             hint="sum over the last axis only (dim=-1), so a batch gives one entropy per "
                  "state"),
    ]


def _entropy_mistakes() -> list[Mistake]:
    const = 0.5 * math.log(2 * math.pi * math.e)
    return [
        Mistake("not summed over dimensions", lambda s: const + s),
        Mistake("mean over dimensions instead of sum", lambda s: (const + s).mean(-1)),
        Mistake("summed over every axis", lambda s: (const + s).sum()),
        Mistake("missing the 0.5 log(2 pi e) constant", lambda s: s.sum(-1)),
        Mistake("0.5 log(2 pi) without the e", lambda s: (0.5 * math.log(2 * math.pi) + s).sum(-1)),
        Mistake("std instead of log_std", lambda s: (const + s.exp()).sum(-1)),
    ]


register(Exercise(
    id="gaussian_entropy", lesson="06",
    title="Entropy of a diagonal Gaussian, summed over action dimensions",
    cases=_entropy_cases, reference=gaussian_entropy, mistakes=_entropy_mistakes))
