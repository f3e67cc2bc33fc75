"""Lesson 03 exercises: PPO's clipped surrogate loss, and the two numbers that watch an update
(``approx_kl``, the k3 estimate of the KL, and ``clip_fraction``). ``clip_gradient`` is in
``lesson03_clip_gradient.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ... import diagnostics, kl, losses, returns
from ..grading import Case, Exercise, compare, register
from .cases import (ITEM_SAYS, Known, T, gradient_is, graded_case, mistakes_of, uniform,
                    verify_like_reference)


# ---------------------------------------------------------------------------------------
# clipped_surrogate_loss(ratio, advantages, clip_range)

def _clamp(r, eps):
    return torch.clamp(r, 1 - eps, 1 + eps)


def _surrogate(r, a, eps):
    return torch.min(r * a, _clamp(r, eps) * a)


def _csl_normalizes(r, a, eps):
    a = (a - a.mean()) / (a.std() + 1e-8)
    return -_surrogate(r, a, eps).mean()


HINT_MIN = "the MINIMUM of r A and clip(r) A (the pessimistic bound)"
HINT_INSIDE = "inside [1 - eps, 1 + eps] the loss is just -r A"

CSL_KNOWN = [
    Known("max instead of min", lambda r, a, eps: -torch.max(r * a, _clamp(r, eps) * a).mean(),
          "MINIMUM", "you take the maximum: the MINIMUM of r A and clip(r) A is the pessimistic "
          "bound"),
    Known("clips the product", lambda r, a, eps: -torch.min(r * a, _clamp(r * a, eps)).mean(),
          "clip the ratio", "you clip the product r A: clip the ratio, clip(r, 1 - eps, 1 + eps) "
          "* A"),
    Known("min of the ratios, then times A",
          lambda r, a, eps: -(torch.min(r, _clamp(r, eps)) * a).mean(), "min of the RATIOS",
          "you take the min of the RATIOS and multiply by A: the min is over the products r A "
          "and clip(r) A (for A < 0 the order flips)"),
    Known("returns the objective, not the loss", lambda r, a, eps: _surrogate(r, a, eps).mean(),
          "sign is flipped", "you return the objective L^CLIP: the loss to minimise is "
          "loss_clip = -L^CLIP = -mean(min(...))"),
    Known("only the clipped term", lambda r, a, eps: -(_clamp(r, eps) * a).mean(),
          "only the clipped term",
          "you use only the clipped term: take min(r A, clip(r) A), the unclipped term "
          "matters where it is smaller"),
    Known("only the unclipped term", lambda r, a, eps: -(r * a).mean(), "no clipping",
          "there is no clipping in your loss: min(r A, clip(r, 1 - eps, 1 + eps) A)"),
    Known("sum instead of mean", lambda r, a, eps: -_surrogate(r, a, eps).sum(), "not .sum()",
          "you sum over the samples: average with .mean() (not .sum())"),
    Known("divides the sum by len(ratio)", lambda r, a, eps: -_surrogate(r, a, eps).sum() / len(r),
          "len(ratio)", "you divide by len(ratio), which is T for (T, N) inputs: .mean() "
          "averages over every entry (ratio.numel())"),
    Known("mean over axis 0 only", lambda r, a, eps: -_surrogate(r, a, eps).mean(0),
          "every entry", "you average over axis 0 only: the loss is one number, the mean "
          "over every entry (.mean() with no dim)"),
    Known("clips to [1 / (1 + eps), 1 + eps]",
          lambda r, a, eps: -torch.min(r * a, r.clamp(1 / (1 + eps), 1 + eps) * a).mean(),
          "1 / (1 + eps)", "your lower bound is 1 / (1 + eps): the range is [1 - eps, 1 + eps] "
          "(r = 0.82 is inside for eps 0.2)"),
    Known("clips log r to [-eps, eps]",
          lambda r, a, eps: -torch.min(r * a, r.log().clamp(-eps, eps).exp() * a).mean(),
          "log r", "you clip log r to [-eps, eps]: the range is on r itself, [1 - eps, 1 + eps] "
          "(r = 1.21 is above 1.2)"),
    Known("hard-coded eps = 0.2", lambda r, a, eps: -_surrogate(r, a, 0.2).mean(), "use clip_range",
          "your clip range stays 0.2: use clip_range"),
    Known("normalises the advantages inside the loss", _csl_normalizes,
          "normalise the advantages inside",
          "you normalise the advantages inside the loss: take them as given (the trainer "
          "standardises each minibatch before the loss)"),
    Known("returns a float (.item())",
          lambda r, a, eps: losses.clipped_surrogate_loss(r, a, eps).item(), "no .item()",
          ITEM_SAYS),
    Known("detached (no gradient)",
          lambda r, a, eps: losses.clipped_surrogate_loss(r.detach(), a, eps), "carries no gradient"),
    Known("detaches the clipped ratio",
          lambda r, a, eps: -torch.min(r * a, _clamp(r.detach(), eps) * a).mean(),
          "the gradient is not"),
    Known("clamps the caller's ratio in place",
          lambda r, a, eps: -torch.min(r * a, r.clamp_(1 - eps, 1 + eps) * a).mean(),
          "in place"),
]


def _csl_gradient(ratio: Tensor, advantages: Tensor, eps: float) -> Tensor:
    """d loss / d ratio of the reference (exact zeros where clipped)."""
    r = ratio.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(losses.clipped_surrogate_loss(r, advantages, eps), r)
    return grad


def _csl_grad_case(name: str, log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor,
                   eps: float, hint: str) -> Case:
    """ratio = exp(log_probs - old_log_probs), a non-leaf tensor as in the PPO update; the
    gradient is checked with respect to the policy's log-probabilities."""
    leaf = log_probs.clone().requires_grad_(True)
    ratio = torch.exp(leaf - old_log_probs)
    want = _csl_gradient(ratio, advantages, eps) * ratio.detach()
    return graded_case(name, losses.clipped_surrogate_loss, (ratio, advantages, eps), hint=hint,
                      known=CSL_KNOWN, then=gradient_is(leaf, want, "ratio (through log pi)"),
                      inputs_with_grad=[ratio])


def clipped_surrogate_loss_cases() -> list[Case]:
    def case(name, args, *, hint):
        return graded_case(name, losses.clipped_surrogate_loss, args, hint=hint, known=CSL_KNOWN)

    def region(name, ratio, advantage, hint):
        clipped = min(max(ratio, 0.8), 1.2)
        worked = (f"here min(r A, clip(r, 0.8, 1.2) A) = min({ratio * advantage:.3g}, "
                  f"{clipped * advantage:.3g}) = {min(ratio, clipped) * advantage if advantage > 0 else max(ratio, clipped) * advantage:.3g}, and "
                  "the loss is minus its mean")
        return case(name, (T([ratio]), T([advantage]), 0.2), hint=f"{hint}: {worked}")
    ratio = T([0.5, 1.0, 1.5, 0.5, 1.0, 1.5])
    adv = T([2.0, 2.0, 2.0, -1.0, -1.0, -1.0])
    leaf_one = T([1.1]).requires_grad_(True)
    return [
        region("A > 0, ratio above 1 + eps (clipped)", 1.5, 2.0, HINT_MIN),
        region("A > 0, ratio inside the range", 1.1, 2.0, HINT_INSIDE),
        region("A > 0, ratio below 1 - eps (not clipped)", 0.5, 2.0, HINT_MIN),
        region("A < 0, ratio below 1 - eps (clipped)", 0.5, -1.0, HINT_MIN),
        region("A < 0, ratio inside the range", 0.9, -1.0, HINT_INSIDE),
        region("A < 0, ratio above 1 + eps (not clipped)", 1.5, -1.0, HINT_MIN),
        case("clip the ratio, not the product r A", (T([1.1, 0.95]), T([3.0, -2.0]), 0.2),
             hint="clip(r, 1 - eps, 1 + eps) * A, not clip(r * A, 1 - eps, 1 + eps)"),
        case("mean over samples, as a loss to minimise", (ratio, adv, 0.2),
             hint=("return the LOSS loss_clip = -L^CLIP = -mean(min(...)) (the objective with a "
                   "minus sign), averaged "
                   "with .mean(), not .sum()")),
        case("clip_range is an argument (0.1 here)", (T([1.15, 0.85]), T([1.0, -1.0]), 0.1),
             hint="use clip_range, not a hard-coded 0.2"),
        case("ratios just inside and outside 0.8 and 1.2: 0.79, 0.81, 0.82, 1.19, 1.21",
             (T([0.79, 0.81, 0.82, 1.19, 1.21, 0.79, 0.81, 0.82, 1.19, 1.21]),
              T([-1.0, -1.0, -1.0, 1.0, 1.0, 2.0, 2.0, -2.0, -2.0, -2.0]), 0.2),
             hint="the bounds are 1 - eps = 0.8 and 1 + eps = 1.2 on r itself: "
                  "torch.clamp(ratio, 1 - clip_range, 1 + clip_range)"),
        case("(T, N) = (4, 3): the mean over every entry", (uniform((4, 3), 91, 0.6, 1.4),
                                                             uniform((4, 3), 92, -2, 2), 0.2),
             hint="one scalar: .mean() over every entry (ratio.numel() of them, not len(ratio))"),
        _csl_grad_case("gradient through ratio = exp(log pi - log pi_old): zero where clipped",
                       torch.log(T([0.5, 1.0, 1.5, 0.5, 1.0, 1.5, 1.1, 0.9])), torch.zeros(8),
                       T([2.0, 2.0, 2.0, -1.0, -1.0, -1.0, 0.5, -0.5]), 0.2,
                       hint="the gradient must flow through ratio: no .item()/.detach() and no "
                            "in-place changes; torch.min and torch.clamp give exactly the zero "
                            "gradients PPO needs"),
        _csl_grad_case("(T, N) = (3, 2) ratio from a policy, with its gradient",
                       torch.log(uniform((3, 2), 93, 0.6, 1.4)), torch.zeros(3, 2),
                       uniform((3, 2), 94, -2, 2), 0.2,
                       hint="the mean over every entry, and the gradient flows through ratio"),
        Case("a batch of one that requires grad (as lesson 03 uses it)",
             args=(leaf_one, T([2.0]), 0.2),
             verify=verify_like_reference(
                 losses.clipped_surrogate_loss, (leaf_one, T([2.0]), 0.2), {}, CSL_KNOWN,
                 then=gradient_is(leaf_one, T([-2.0]), "ratio"), inputs_with_grad=[leaf_one]),
             hint="a 0-d loss from a (1,) ratio; d loss / d r = -A inside the range"),
    ]


register(Exercise(
    id="clipped_surrogate_loss", lesson="03", title="PPO's clipped surrogate loss",
    cases=clipped_surrogate_loss_cases, reference=losses.clipped_surrogate_loss,
    mistakes=lambda: mistakes_of(CSL_KNOWN)))


# ---------------------------------------------------------------------------------------
# approx_kl(log_ratio)

def _k3(lr):
    return (lr.exp() - 1) - lr


AKL_KNOWN = [
    Known("naive estimator -mean(log r)", lambda lr: -lr.mean(), "naive",
          "you use the naive estimator -mean(log r): it is unbiased but noisy and can be "
          "negative; k3 is mean((r - 1) - log r)"),
    Known("k2 estimator 0.5 * mean((log r)^2)", lambda lr: 0.5 * (lr ** 2).mean(), "k2",
          "you use k2 = mean((log r)^2) / 2: this exercise asks for k3 = mean((r - 1) - log r)"),
    Known("forgets the exp (r = log_ratio)", lambda lr: ((lr - 1) - torch.log(lr)).mean(),
          "r = exp(log_ratio)", "you use log_ratio as r: r = exp(log_ratio), and log r is "
          "log_ratio itself"),
    Known("exp of the log again: (r - 1) - r", lambda lr: ((lr.exp() - 1) - lr.exp()).mean(),
          "log of r is log_ratio",
          "you subtract r where log r belongs: the log of r is log_ratio itself"),
    Known("sign flipped on log r", lambda lr: ((lr.exp() - 1) + lr).mean(), "minus log r",
          "your log r enters with a plus: k3 = (r - 1) minus log r"),
    Known("log-ratio reversed: r = exp(-log_ratio)", lambda lr: _k3(-lr).mean(),
          "exp(log_ratio)",
          "you use r = exp(-log_ratio): log_ratio is log pi_new - log pi_old, r = "
          "exp(log_ratio)"),
    Known("sum instead of mean", lambda lr: _k3(lr).sum(), "not .sum()",
          "you sum over the samples: average with .mean() (not .sum())"),
    Known("divides the sum by len(log_ratio)", lambda lr: _k3(lr).sum() / len(lr), "len(log_ratio)",
          "you divide by len(log_ratio), which is T for (T, N) inputs: .mean() averages over "
          "every entry"),
    Known("mean over axis 0 only", lambda lr: _k3(lr).mean(0), "every entry",
          "you average over axis 0 only: one number, the mean over every entry"),
    Known("exp in place on the caller's tensor", lambda lr: ((lr.exp_() - 1) - lr.log()).mean(),
          "compute into new tensors"),
]


def approx_kl_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, kl.approx_kl, args, hint=hint, known=AKL_KNOWN, expected=expected)
    return [
        case("the same policy: log r = 0 gives 0", (torch.zeros(4),), expected=T(0.0),
             hint="(r - 1) - log r with r = exp(0) = 1 is 0"),
        case("a known value", (T([0.5, -0.5]),), expected=T(0.1276260),
             hint="k3: mean((r - 1) - log r) with r = exp(log_ratio)"),
        case("never negative, on 1000 samples", (uniform(1000, 81, -0.3, 0.3),),
             hint="r = exp(log_ratio) (not log_ratio itself); the log of r is log_ratio"),
        case("(T, N) = (4, 3): the mean over every entry", (uniform((4, 3), 82, -0.5, 0.5),),
             hint="one number: .mean() over every entry"),
        case("a batch of one", (T([0.3]),), hint="a (1,) input gives a 0-d tensor"),
    ]


register(Exercise(
    id="approx_kl", lesson="03", title="The k3 estimate of the KL from log-ratios",
    cases=approx_kl_cases, reference=kl.approx_kl, mistakes=lambda: mistakes_of(AKL_KNOWN)))


# ---------------------------------------------------------------------------------------
# clip_fraction(ratio, clip_range) -> float

def _share(mask: Tensor) -> float:
    return mask.float().mean().item()


CF_KNOWN = [
    Known("counts only r > 1 + eps", lambda r, eps: _share(r > 1 + eps), "only one side",
          "you count only one side: |r - 1| > eps counts r below 1 - eps AND above 1 + eps"),
    Known("counts only r < 1 - eps", lambda r, eps: _share(r < 1 - eps), "only one side",
          "you count only one side: |r - 1| > eps counts r below 1 - eps AND above 1 + eps"),
    Known("counts inside instead of outside", lambda r, eps: _share((r - 1).abs() <= eps),
          "inside the range", "you count the ratios inside the range: count those outside, "
          "|r - 1| > eps"),
    Known("a count, not a share", lambda r, eps: float(((r - 1).abs() > eps).sum()),
          "not its sum", "you count: return the share, the mean of the 0/1 indicator (not its "
          "sum)"),
    Known("divides the count by len(ratio)",
          lambda r, eps: float(((r - 1).abs() > eps).sum()) / len(r), "len(ratio)",
          "you divide by len(ratio), which is T for (T, N) inputs: the share over every "
          "entry, .float().mean()"),
    Known("one share per column", lambda r, eps: ((r - 1).abs() > eps).float().mean(0),
          "single number", "you return a share per column: one number over every entry"),
    Known("hard-coded eps = 0.2", lambda r, eps: _share((r - 1).abs() > 0.2), "use clip_range",
          "your clip range stays 0.2: use clip_range"),
    Known("|log r| > eps", lambda r, eps: _share(r.log().abs() > eps), "log r",
          "you compare |log r| with eps: the clip range is on r itself, |r - 1| > eps (r = "
          "0.81 is inside [0.8, 1.2], r = 1.21 outside)"),
    Known("r < 1 / (1 + eps) for the lower side",
          lambda r, eps: _share((r > 1 + eps) | (r < 1 / (1 + eps))), "1 / (1 + eps)",
          "your lower bound is 1 / (1 + eps): the clip range is [1 - eps, 1 + eps] (r = 0.82 "
          "is inside for eps 0.2)"),
    Known("|r - 1| >= eps (the bounds counted as clipped)",
          lambda r, eps: _share((r - 1).abs() >= eps), "strictly",
          "you count r exactly at 1 - eps or 1 + eps: there clip(r) = r and the gradient still "
          "flows, so only |r - 1| strictly greater than eps is clipped (SB3: > clip_range)"),
]


def clip_fraction_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, diagnostics.clip_fraction, args, hint=hint, known=CF_KNOWN,
                          expected=expected)
    return [
        case("no change: all ratios 1", (torch.ones(5), 0.2), expected=0.0,
             hint="|r - 1| = 0 is inside the range"),
        case("both sides count", (T([0.5, 0.9, 1.0, 1.1, 1.5]), 0.2), expected=0.4,
             hint="|r - 1| > eps counts r below 1 - eps AND above 1 + eps"),
        case("a share, not a count", (T([1.3, 1.3, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 0.2),
             expected=0.25, hint="the mean of the 0/1 indicator, not its sum"),
        case("clip_range is an argument", (T([1.15, 0.85, 1.05, 1.0]), 0.1), expected=0.5,
             hint="use clip_range, not a hard-coded 0.2"),
        case("just inside and outside the lower bound: 0.79, 0.81, 0.82 for eps 0.2",
             (T([0.79, 0.81, 0.82, 1.0, 1.0]), 0.2), expected=0.2,
             hint="the bounds are 1 - eps = 0.8 and 1 + eps = 1.2 on r itself: |r - 1| > eps"),
        case("just inside and outside the upper bound: 1.19, 1.21 for eps 0.2",
             (T([1.19, 1.21, 1.0, 1.0]), 0.2), expected=0.25,
             hint="the bounds are 1 - eps = 0.8 and 1 + eps = 1.2 on r itself: |r - 1| > eps"),
        case("exactly on the bounds: r = 0.75 and 1.25 for eps 0.25 are not clipped",
             (T([0.75, 1.25, 0.7, 1.0]), 0.25), expected=0.25,
             hint="at r = 1 - eps or 1 + eps the clip changes nothing: count |r - 1| strictly "
                  "greater than eps"),
        case("(T, N) = (4, 3): the share over every entry",
             (T([[0.5, 1.0, 1.0], [1.0, 1.5, 1.0], [1.0, 1.0, 1.0], [1.1, 1.0, 1.0]]), 0.2),
             expected=1 / 6, hint="one number over every entry (ratio.numel() of them)"),
        case("a batch of one", (T([1.5]), 0.2), expected=1.0,
             hint="a (1,) batch: the share is 0 or 1"),
    ]


register(Exercise(
    id="clip_fraction", lesson="03", title="The share of clipped samples: mean(|r - 1| > eps)",
    cases=clip_fraction_cases, reference=diagnostics.clip_fraction,
    mistakes=lambda: mistakes_of(CF_KNOWN)))
