"""Lesson 05 exercises: the total PPO loss that the learner plugs into ``PPO(loss_fn=...)``.

``gae`` and ``explained_variance``, also graded in lesson 05, are registered with the core
exercises (``ppo_lib/exercises/core.py``).
"""

from __future__ import annotations

import torch

from ..grading import Case, Exercise, Mistake, register
from ..losses import ppo_loss

# ---------------------------------------------------------------------------------------
# ppo_loss: L = L^CLIP + vf_coef * L^VF - ent_coef * mean_t H_t (signature of
# ppo_lib.losses.ppo_loss).


def _batch(seed: int, n: int = 8) -> dict:
    """A minibatch whose ratios fall on both sides of the clip range and whose advantages
    have both signs, so that min vs. max and the clip itself matter."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        ratio=torch.exp(0.5 * torch.randn(n, generator=g)),
        advantages=torch.randn(n, generator=g),
        values=torch.randn(n, generator=g),
        returns=2.0 * torch.randn(n, generator=g),
        entropy=0.3 + torch.rand(n, generator=g),
    )


def _differentiable_case() -> Case:
    """The trainer calls ``.backward()`` on the loss: the learner's loss must be a 0-d tensor
    whose gradients w.r.t. ratio, values and entropy equal the reference's."""
    inputs = {k: v.requires_grad_(k in ("ratio", "values", "entropy"))
              for k, v in _batch(3).items()}
    coefs = dict(clip_range=0.2, vf_coef=0.5, ent_coef=0.01)

    def verify(loss) -> str | None:
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""
            return f"expected a 0-d tensor (a scalar loss), got {type(loss).__name__}{shape}"
        if not loss.requires_grad:
            return "the loss carries no gradient (.item(), .detach() or float() somewhere?)"
        names = ("ratio", "values", "entropy")
        got = torch.autograd.grad(loss, [inputs[k] for k in names], allow_unused=True)
        fresh = {k: v.detach().clone().requires_grad_(k in names) for k, v in inputs.items()}
        want = torch.autograd.grad(ppo_loss(**fresh, **coefs), [fresh[k] for k in names])
        for name, g, w in zip(names, got, want):
            if g is None:
                return f"no gradient flows to {name}"
            if not torch.allclose(g, w, atol=1e-6, rtol=1e-4):
                return f"the gradient w.r.t. {name} is {g}, expected {w}"
        return None

    return Case("a differentiable scalar with the right gradients",
                kwargs=dict(inputs, **coefs), verify=verify,
                hint="build the loss from the inputs with torch operations (no .item(), "
                     "no .detach()), so the trainer can call .backward() on it")


def _ppo_loss_cases() -> list[Case]:
    b = _batch(0)
    old_values = b["values"] + 0.5 * torch.randn(8, generator=torch.Generator().manual_seed(9))
    exact_critic = dict(b, returns=b["values"].clone())  # value loss 0: policy term alone
    return [
        Case("policy term only (returns == values, ent_coef=0)",
             kwargs=dict(exact_critic, clip_range=0.2, vf_coef=0.5, ent_coef=0.0),
             hint="with returns == values and ent_coef=0 the loss is the clipped surrogate "
                  "-mean(min(r*A, clip(r, 1-eps, 1+eps)*A)): use min (the pessimistic "
                  "bound), not max, and mind the minus sign (a loss to minimise)"),
        Case("another clip range",
             kwargs=dict(exact_critic, clip_range=0.1, vf_coef=0.5, ent_coef=0.0),
             hint="clip the ratio to [1 - clip_range, 1 + clip_range] with the argument, "
                  "not a fixed 0.2"),
        Case("value term weighted by vf_coef = 0.5",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.0),
             hint="add vf_coef * mean((returns - values)^2): the value loss is weighted by "
                  "vf_coef, and it has no 1/2 in front (SB3's form, ppo_lib.losses."
                  "value_loss)"),
        Case("vf_coef = 1.3",
             kwargs=dict(b, clip_range=0.2, vf_coef=1.3, ent_coef=0.0),
             hint="multiply the value loss by the vf_coef argument (you forgot it, or fixed "
                  "it at 0.5)"),
        Case("entropy bonus, ent_coef = 0.01",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.01),
             hint="the entropy is a bonus: subtract ent_coef * mean(entropy), so that "
                  "minimising the loss raises the entropy; `entropy` holds one entropy per "
                  "state: average it over the batch (mean, not sum)"),
        Case("ent_coef = 0.5",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.5),
             hint="- ent_coef * entropy.mean(): check the sign and the mean"),
        Case("clipped value loss (clip_range_vf = 0.2)",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.0,
                         old_values=old_values, clip_range_vf=0.2),
             hint="when clip_range_vf is set, clip the prediction first: values = "
                  "old_values + clamp(values - old_values, -clip_range_vf, clip_range_vf), "
                  "then take the squared error (SB3's value clipping)"),
        _differentiable_case(),
    ]


def _ppo_loss_mistakes() -> list[Mistake]:
    def surrogate(ratio, advantages, clip_range, pick=torch.min):
        clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages
        return -pick(ratio * advantages, clipped).mean()

    def squared_error(values, returns, old_values, clip_range_vf):
        if clip_range_vf is not None:
            values = old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
        return ((returns - values) ** 2).mean()

    def make(policy=surrogate, value=squared_error, bonus=lambda h, c: -c * h.mean(),
             use_vf_coef=True):
        def loss(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
                 ent_coef=0.0, old_values=None, clip_range_vf=None):
            c1 = vf_coef if use_vf_coef else 1.0
            return (policy(ratio, advantages, clip_range)
                    + c1 * value(values, returns, old_values, clip_range_vf)
                    + bonus(entropy, ent_coef))
        return loss

    def fixed_vf_coef(*args, **kwargs):
        return make()(*args, **{**kwargs, "vf_coef": 0.5})

    return [
        Mistake("entropy bonus with the wrong sign (+ent_coef * H)",
                make(bonus=lambda h, c: c * h.mean())),
        Mistake("forgot vf_coef", make(use_vf_coef=False)),
        Mistake("vf_coef fixed at 0.5", fixed_vf_coef),
        Mistake("entropy summed instead of averaged", make(bonus=lambda h, c: -c * h.sum())),
        Mistake("max instead of min in the clipped surrogate",
                make(policy=lambda r, a, eps: surrogate(r, a, eps, pick=torch.max))),
        Mistake("value loss with 1/2 in front",
                make(value=lambda v, g, ov, c: 0.5 * squared_error(v, g, ov, c))),
        Mistake("objective not negated", make(policy=lambda r, a, eps: -surrogate(r, a, eps))),
        Mistake("clip_range fixed at 0.2", make(policy=lambda r, a, eps: surrogate(r, a, 0.2))),
        Mistake("clip_range_vf ignored",
                make(value=lambda v, g, ov, c: squared_error(v, g, None, None))),
        Mistake("returns a Python float (no gradient)",
                lambda *args, **kwargs: ppo_loss(*args, **kwargs).item()),
        Mistake("ratio detached (no policy gradient)",
                lambda ratio, *args, **kwargs: ppo_loss(ratio.detach(), *args, **kwargs)),
    ]


register(Exercise(
    id="ppo_loss", lesson="05",
    title="The total PPO loss: clipped surrogate + vf_coef * value loss - ent_coef * entropy",
    cases=_ppo_loss_cases, reference=ppo_loss, mistakes=_ppo_loss_mistakes))
