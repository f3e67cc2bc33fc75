"""Lesson 03 exercise beyond the core ones: which side of the clip is flat.

``clip_gradient(ratio, advantages, clip_range)`` returns, per sample, the gradient of the
PPO-Clip objective min(r A, clip(r, 1 - eps, 1 + eps) A) with respect to r. It is the six
cases of the lesson as code, and it catches the source notes' errors 1 and 2 (a symmetric
box instead of a pessimistic bound). ``clipped_surrogate_loss``, ``approx_kl`` and
``clip_fraction`` are registered in ``core.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..grading import Case, Exercise, Mistake, register


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


def clip_gradient_cases() -> list[Case]:
    r = T([0.5, 0.9, 1.1, 1.5])
    return [
        Case("A = +1 below, inside and above the range", args=(r, T([1.0] * 4), 0.2),
             expected=T([1.0, 1.0, 1.0, 0.0]), hint=HINT_POSITIVE),
        Case("A = -1 below, inside and above the range", args=(r, T([-1.0] * 4), 0.2),
             expected=T([0.0, -1.0, -1.0, -1.0]), hint=HINT_NEGATIVE),
        Case("the gradient is A itself, not its sign", args=(r, T([2.5, -0.5, 0.3, -3.0]), 0.2),
             expected=T([2.5, -0.5, 0.3, -3.0]),
             hint="where the min picks r*A, d(r*A)/dr = A (its size matters, not only its "
                  "sign)"),
        Case("clip_range is an argument (0.05 here)", args=(T([1.1, 0.9, 1.02]),
                                                             T([1.0, -1.0, 1.0]), 0.05),
             expected=T([0.0, 0.0, 1.0]), hint="use clip_range, not a fixed 0.2"),
        Case("one value per sample, shape (T, N)",
             args=(T([[0.5, 1.5], [1.5, 0.5]]), T([[1.0, 1.0], [-1.0, -1.0]]), 0.2),
             expected=T([[1.0, 0.0], [-1.0, 0.0]]),
             hint="return a tensor shaped like ratio (no mean, no sum)"),
    ]


def _box(ratio, advantages, clip_range):
    """The notes' symmetric box: zero gradient outside [1 - eps, 1 + eps] on both sides."""
    inside = (ratio >= 1 - clip_range) & (ratio <= 1 + clip_range)
    return torch.where(inside, advantages, torch.zeros_like(advantages))


def _never_clipped(ratio, advantages, clip_range):
    return advantages.clone()


def _sides_swapped(ratio, advantages, clip_range):
    flat = torch.where(advantages > 0, ratio < 1 - clip_range, ratio > 1 + clip_range)
    return torch.where(flat, torch.zeros_like(advantages), advantages)


def _sign_only(ratio, advantages, clip_range):
    return torch.sign(clip_gradient(ratio, advantages, clip_range))


def _fixed_eps(ratio, advantages, clip_range):
    return clip_gradient(ratio, advantages, 0.2)


def _mean(ratio, advantages, clip_range):
    return clip_gradient(ratio, advantages, clip_range).mean()


def _loss_gradient(ratio, advantages, clip_range):
    return -clip_gradient(ratio, advantages, clip_range)


def clip_gradient_mistakes() -> list[Mistake]:
    return [
        Mistake("the notes' symmetric box (flat on both sides)", _box),
        Mistake("never clipped (gradient A everywhere)", _never_clipped),
        Mistake("flat sides swapped", _sides_swapped),
        Mistake("sign of A instead of A", _sign_only),
        Mistake("hard-coded eps = 0.2", _fixed_eps),
        Mistake("averaged over samples", _mean),
        Mistake("gradient of the loss (minus sign)", _loss_gradient),
    ]


register(Exercise(
    id="clip_gradient", lesson="03",
    title="Where the clipped objective is flat: dL/dr per sample",
    cases=clip_gradient_cases, reference=clip_gradient, mistakes=clip_gradient_mistakes))
