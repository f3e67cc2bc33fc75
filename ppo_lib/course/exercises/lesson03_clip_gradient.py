"""Lesson 03 exercise: which side of the clip is flat.

``clip_gradient(ratio, advantages, clip_range)`` returns, per sample, the gradient of the
PPO-Clip objective min(r A, clip(r, 1 - eps, 1 + eps) A) with respect to r. It is the six
cases of the lesson as code, and it catches the source notes' errors 1 and 2 (a symmetric
box instead of a pessimistic bound). ``clipped_surrogate_loss``, ``approx_kl`` and
``clip_fraction`` are in ``lesson03.py`` (registered first).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..grading import Case, Exercise, register
from .cases import Known, graded_case, mistakes_of


def clip_gradient(ratio: Tensor, advantages: Tensor, clip_range: float) -> Tensor:
    """d/dr_t of min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t), one value per sample.

    A_t > 0: A_t for r_t < 1 + eps (below the range too: not clipped), 0 above.
    A_t < 0: A_t for r_t > 1 - eps (above the range too: not clipped), 0 below.
    Computed by autograd, so it is what ``clipped_surrogate_loss`` really does.
    """
    r = ratio.detach().clone().requires_grad_(True)
    objective = torch.min(r * advantages, torch.clamp(r, 1 - clip_range, 1 + clip_range)
                          * advantages).sum()
    (grad,) = torch.autograd.grad(objective, r)
    return grad


def T(values) -> Tensor:  # noqa: N802 (short constructor for the cases)
    return torch.tensor(values, dtype=torch.float32)


HINT_POSITIVE = ("A > 0: only r > 1 + eps is flat. Below the range (r < 1 - eps) the min "
                 "picks r*A, so the gradient is A and still raises the probability of a good "
                 "action (the source notes say 'clipped at 0.8': they are wrong)")
HINT_NEGATIVE = ("A < 0: only r < 1 - eps is flat. Above the range (r > 1 + eps) the min "
                 "picks r*A, the penalty keeps growing and the gradient is A (the notes say "
                 "'clipped at 1.2': they are wrong)")


def _box(ratio, advantages, clip_range):
    """The notes' symmetric box: zero gradient outside [1 - eps, 1 + eps] on both sides."""
    inside = (ratio >= 1 - clip_range) & (ratio <= 1 + clip_range)
    return torch.where(inside, advantages, torch.zeros_like(advantages))


def _never_clipped(ratio, advantages, clip_range):
    return advantages.clone()


def _sides_swapped(ratio, advantages, clip_range):
    flat = torch.where(advantages > 0, ratio < 1 - clip_range, ratio > 1 + clip_range)
    return torch.where(flat, torch.zeros_like(advantages), advantages)


def _flat_where(ratio, advantages, above, below):
    flat = torch.where(advantages > 0, above, below)
    return torch.where(flat, torch.zeros_like(advantages), advantages)


def _log_bounds(ratio, advantages, clip_range):
    log_r = ratio.log()
    return _flat_where(ratio, advantages, log_r > clip_range, log_r < -clip_range)


def _reciprocal_lower_bound(ratio, advantages, clip_range):
    return _flat_where(ratio, advantages, ratio > 1 + clip_range, ratio < 1 / (1 + clip_range))


def _sign_only(ratio, advantages, clip_range):
    return torch.sign(clip_gradient(ratio, advantages, clip_range))


def _fixed_eps(ratio, advantages, clip_range):
    return clip_gradient(ratio, advantages, 0.2)


def _mean(ratio, advantages, clip_range):
    return clip_gradient(ratio, advantages, clip_range).mean()


def _loss_gradient(ratio, advantages, clip_range):
    return -clip_gradient(ratio, advantages, clip_range)


def _squeezed(ratio, advantages, clip_range):
    return clip_gradient(ratio, advantages, clip_range).squeeze()


def _in_place(ratio, advantages, clip_range):
    flat = torch.where(advantages > 0, ratio > 1 + clip_range, ratio < 1 - clip_range)
    return advantages.masked_fill_(flat, 0.0)  # writes into the caller's advantages


CG_KNOWN = [
    Known("the notes' symmetric box (flat on both sides)", _box, "notes",
          "you make both sides flat, the notes' symmetric box: only one side is flat, "
          "r > 1 + eps for A > 0 and r < 1 - eps for A < 0 (the notes are wrong)"),
    Known("never clipped (gradient A everywhere)", _never_clipped, "never flat",
          "your gradient is never flat: for A > 0 it is 0 above 1 + eps, for A < 0 below "
          "1 - eps"),
    Known("flat sides swapped", _sides_swapped, "swapped",
          "your flat sides are swapped: A > 0 is flat above 1 + eps, A < 0 below 1 - eps"),
    Known("|log r| bounds instead of 1 +- eps", _log_bounds, "log r",
          "you compare log r with eps: the bounds are on r itself, 1 - eps and 1 + eps "
          "(r = 1.21 is above 1.2, r = 0.81 inside)"),
    Known("1 / (1 + eps) as the lower bound", _reciprocal_lower_bound, "1 / (1 + eps)",
          "your lower bound is 1 / (1 + eps): it is 1 - eps (r = 0.82 is inside for eps 0.2)"),
    Known("sign of A instead of A", _sign_only, "its size",
          "you return the sign of A: where the min picks r A the gradient is A itself "
          "(its size matters)"),
    Known("hard-coded eps = 0.2", _fixed_eps, "use clip_range",
          "your clip range stays 0.2: use clip_range"),
    Known("averaged over samples", _mean, "shaped like ratio",
          "you average: return one value per sample, a tensor shaped like ratio"),
    Known("gradient of the loss (minus sign)", _loss_gradient, "objective",
          "you return the gradient of the loss: this is d/dr of the objective "
          "min(r A, clip(r) A) (a term of L^CLIP), without the minus sign of loss_clip"),
    Known("squeezes the result", _squeezed, "no squeeze()",
          "you squeeze the result: keep the shape of ratio (no squeeze())"),
    Known("writes into the caller's advantages", _in_place, "compute into new tensors"),
]


def clip_gradient_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, clip_gradient, args, hint=hint, known=CG_KNOWN, expected=expected)
    r = T([0.5, 0.9, 1.1, 1.5])
    return [
        case("A = +1 below, inside and above the range", (r, T([1.0] * 4), 0.2),
             expected=T([1.0, 1.0, 1.0, 0.0]), hint=HINT_POSITIVE),
        case("A = -1 below, inside and above the range", (r, T([-1.0] * 4), 0.2),
             expected=T([0.0, -1.0, -1.0, -1.0]), hint=HINT_NEGATIVE),
        case("the gradient is A itself, not its sign", (r, T([2.5, -0.5, 0.3, -3.0]), 0.2),
             expected=T([2.5, -0.5, 0.3, -3.0]),
             hint="where the min picks r*A, d(r*A)/dr = A (its size matters, not only its "
                  "sign)"),
        case("clip_range is an argument (0.05 here)", (T([1.1, 0.9, 1.02]), T([1.0, -1.0, 1.0]),
                                                        0.05),
             expected=T([0.0, 0.0, 1.0]), hint="use clip_range, not a fixed 0.2"),
        case("just inside and outside each bound: 0.79, 0.81, 0.82, 1.19, 1.21 (eps 0.2)",
             (T([0.79, 0.81, 0.82, 1.19, 1.21, 0.79, 0.81, 0.82, 1.19, 1.21]),
              T([1.0] * 5 + [-1.0] * 5), 0.2),
             expected=T([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0]),
             hint="the bounds are 1 - eps = 0.8 and 1 + eps = 1.2 on r itself: compare r "
                  "with them (not log r, not 1 / (1 + eps))"),
        case("one value per sample, shape (T, N)",
             (T([[0.5, 1.5], [1.5, 0.5]]), T([[1.0, 1.0], [-1.0, -1.0]]), 0.2),
             expected=T([[1.0, 0.0], [-1.0, 0.0]]),
             hint="return a tensor shaped like ratio (no mean, no sum)"),
        case("a batch of one", (T([1.5]), T([2.0]), 0.2), expected=T([0.0]),
             hint="a (1,) ratio gives a (1,) gradient: keep the shape (no squeeze())"),
    ]


register(Exercise(
    id="clip_gradient", lesson="03",
    title="Where the clipped objective is flat: dL/dr per sample",
    cases=clip_gradient_cases, reference=clip_gradient, mistakes=lambda: mistakes_of(CG_KNOWN)))
