"""Lesson 05 exercises: the total PPO loss that the learner plugs into ``PPO(loss_fn=...)``.

``gae`` (lesson 04) is graded again in lesson 05; ``explained_variance`` is in ``lesson05.py``
(registered first).

How the course calls ``ppo_loss`` (``PPO.minibatch_loss``): ``ratio``, ``values`` and
``entropy`` come out of the policy and the critic, so they are non-leaf tensors that
require grad; ``advantages`` are already standardised by the trainer (when the minibatch
holds more than one sample, as SB3); a minibatch may hold a single sample; and the public
contract allows (T, N) tensors. The cases do the same, and check the gradients.
"""

from __future__ import annotations

import torch

from ..grading import Case, Exercise, Mistake, register
from ...losses import ppo_loss
from .gradients import gradient_flow_problem, gradient_mismatch_problem

# ---------------------------------------------------------------------------------------
# ppo_loss: loss = loss_clip + vf_coef * loss_vf - ent_coef * mean_t H_t, with
# loss_clip = -L^CLIP (lesson 04, eq. 4.6; signature of ppo_lib.losses.ppo_loss).

GRAD_INPUTS = ("ratio", "values", "entropy")  # what the policy and the critic output


def _batch(seed: int, shape: tuple[int, ...] = (8,), ratio_spread: float = 0.5) -> dict:
    """A minibatch whose ratios fall on both sides of the clip range (unless
    ``ratio_spread`` is small) and whose advantages have both signs and a mean far from 0
    (so that normalising them again inside the loss changes the result)."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        ratio=torch.exp(ratio_spread * torch.randn(shape, generator=g)),
        advantages=0.6 + 1.5 * torch.randn(shape, generator=g),
        values=torch.randn(shape, generator=g),
        returns=2.0 * torch.randn(shape, generator=g),
        entropy=0.3 + torch.rand(shape, generator=g),
    )


def _graph_inputs(seed: int, shape: tuple[int, ...] = (8,)) -> tuple[dict, dict]:
    """(inputs, leaves): ratio = exp(log_ratio), values and entropy computed from leaves,
    as the policy and the critic produce them (non-leaf tensors that require grad)."""
    raw = _batch(seed, shape)
    leaves = {
        "ratio": raw["ratio"].log().requires_grad_(True),   # log pi - log pi_old
        "values": raw["values"].clone().requires_grad_(True),
        "entropy": raw["entropy"].clone().requires_grad_(True),
    }
    inputs = dict(raw, ratio=leaves["ratio"].exp(), values=leaves["values"] * 1.0,
                  entropy=leaves["entropy"] * 1.0)
    return inputs, leaves


def _changed_in_place(inputs: dict, pristine: dict) -> str | None:
    for name, before in pristine.items():
        if not torch.equal(inputs[name].detach(), before):
            return (f"your function changed {name} in place; compute into new tensors "
                    "(`x.clamp_()`, `x -= ...`, `x[...] = ...` change the caller's tensor)")
    return None


def _graph_case() -> Case:
    """First: the loss is a 0-d tensor in the autograd graph of ratio, values and entropy
    (non-leaf inputs, as the trainer passes them). Values are graded by the next cases."""
    inputs, leaves = _graph_inputs(3)
    pristine = {k: v.detach().clone() for k, v in inputs.items()}

    def verify(loss) -> str | None:
        problem = _changed_in_place(inputs, pristine)
        if problem:
            return problem
        if not isinstance(loss, torch.Tensor):
            return (f"expected a 0-d tensor (a scalar loss), got {type(loss).__name__}: "
                    "no .item() or float(), the trainer calls loss.backward()")
        if loss.dim() != 0:
            return f"expected a 0-d tensor (a scalar loss), got shape {tuple(loss.shape)}"
        if not loss.requires_grad:
            return ("the loss carries no gradient (.item(), .detach(), .numpy() or "
                    "torch.tensor(...) somewhere?)")
        return gradient_flow_problem(loss, {k: leaves[k] for k in GRAD_INPUTS},
                                     ".detach(), .data, torch.tensor(...), requires_grad_(False)")

    return Case("a scalar loss that the trainer can .backward() through",
                kwargs=dict(inputs, clip_range=0.2, vf_coef=0.5, ent_coef=0.01),
                verify=verify,
                hint="ratio, values and entropy come out of the policy and the critic: they "
                     "are part of the autograd graph. Build the loss from them with torch "
                     "operations, without .item(), float(), .detach(), .numpy() or "
                     "requires_grad_(False) (which raises on such a tensor)")


def _gradient_case() -> Case:
    """Last: the gradients w.r.t. the policy's and the critic's outputs equal the
    reference's, on (T, N) non-leaf inputs with every term switched on."""
    inputs, leaves = _graph_inputs(5, (6, 2))
    old_values = inputs["values"].detach() + 0.4 * torch.randn(
        6, 2, generator=torch.Generator().manual_seed(15))
    coefs = dict(clip_range=0.2, vf_coef=0.5, ent_coef=0.01, old_values=old_values,
                 clip_range_vf=0.2)
    pristine = {k: v.detach().clone() for k, v in inputs.items()}

    def verify(loss) -> str | None:
        problem = _changed_in_place(inputs, pristine)
        if problem:
            return problem
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return "the loss carries no gradient"
        got = torch.autograd.grad(loss, [leaves[k] for k in GRAD_INPUTS], allow_unused=True)
        fresh = {k: v.clone().requires_grad_(True) for k, v in pristine.items()
                 if k in GRAD_INPUTS}
        want = torch.autograd.grad(ppo_loss(**dict(pristine, **fresh), **coefs),
                                   [fresh[k] for k in GRAD_INPUTS])
        chain = {"ratio": pristine["ratio"], "values": 1.0, "entropy": 1.0}  # d input/d leaf
        want = [w * chain[name] for name, w in zip(GRAD_INPUTS, want)]
        return gradient_mismatch_problem(GRAD_INPUTS, got, want, atol=1e-6, rtol=1e-4)

    return Case("gradients w.r.t. ratio, values and entropy",
                kwargs=dict(inputs, **coefs), verify=verify,
                hint="the value is right but the gradient is not: an operation that is "
                     "not differentiable the way the formula is (a detached part, a "
                     "constant put in with torch.tensor(...), an in-place change)")


def _ppo_loss_cases() -> list[Case]:
    b = _batch(0)
    exact_critic = dict(b, returns=b["values"].clone())  # value loss 0: policy term alone
    inside = _batch(1, ratio_spread=0.04)                # every ratio inside [0.8, 1.2]
    inside = dict(inside, returns=inside["values"].clone())
    old_values = b["values"] + 0.5 * torch.randn(8, generator=torch.Generator().manual_seed(9))
    tn = _batch(4, (5, 3))
    tn_old = tn["values"] + 0.5 * torch.randn(5, 3, generator=torch.Generator().manual_seed(8))
    one = _batch(6, (1,))
    one_old = one["values"] + torch.tensor([0.7])
    return [
        _graph_case(),
        Case("policy term only, every ratio inside the clip range",
             kwargs=dict(inside, clip_range=0.2, vf_coef=0.5, ent_coef=0.0),
             hint="inside the clip range loss_clip = -L^CLIP = -mean(r * A): a loss to "
                  "minimise (mind the minus sign), averaged over the batch (mean, not sum), "
                  "with the advantages as given (the trainer has standardised them already: don't "
                  "normalise them again in the loss)"),
        Case("policy term only (returns == values, ent_coef=0)",
             kwargs=dict(exact_critic, clip_range=0.2, vf_coef=0.5, ent_coef=0.0),
             hint="loss_clip = -L^CLIP = -mean(min(r*A, clamp(r, 1-eps, 1+eps)*A)): use "
                  "min (the pessimistic bound), not max, and clamp the ratio before "
                  "multiplying by A"),
        Case("another clip range",
             kwargs=dict(exact_critic, clip_range=0.1, vf_coef=0.5, ent_coef=0.0),
             hint="clip the ratio to [1 - clip_range, 1 + clip_range] with the argument, "
                  "not a fixed 0.2"),
        Case("value term, vf_coef = 1.0",
             kwargs=dict(b, clip_range=0.2, vf_coef=1.0, ent_coef=0.0),
             hint="the value loss loss_vf is the mean squared error mean((returns - values)^2), "
                  "with no 1/2 in front (SB3's form, ppo_lib.losses.value_loss), weighted "
                  "by the vf_coef argument"),
        Case("value term weighted by vf_coef = 0.5",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.0),
             hint="multiply the value loss by vf_coef (here 0.5)"),
        Case("vf_coef = 1.3",
             kwargs=dict(b, clip_range=0.2, vf_coef=1.3, ent_coef=0.0),
             hint="multiply the value loss by the vf_coef argument (you fixed it at some "
                  "value)"),
        Case("entropy bonus, ent_coef = 0.01",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.01),
             hint="the entropy is a bonus: subtract ent_coef * mean(entropy), so that "
                  "minimising the loss raises the entropy; `entropy` holds one entropy per "
                  "state: average it over the batch (mean, not sum)"),
        Case("ent_coef = 0.5",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.5),
             hint="- ent_coef * entropy.mean(): check the sign and the mean"),
        Case("clipped value loss (clip_range_vf = 0.3)",
             kwargs=dict(b, clip_range=0.2, vf_coef=0.5, ent_coef=0.0,
                         old_values=old_values, clip_range_vf=0.3),
             hint="when clip_range_vf is set, clip the prediction around old_values first: "
                  "values = old_values + clamp(values - old_values, -clip_range_vf, "
                  "clip_range_vf), with clip_range_vf (not clip_range), then take the squared "
                  "error (SB3's value clipping, not the max of the clipped and unclipped "
                  "errors of OpenAI Baselines / CleanRL)"),
        Case("(T, N) tensors, as a rollout's",
             kwargs=dict(tn, clip_range=0.2, vf_coef=0.5, ent_coef=0.01, old_values=tn_old,
                         clip_range_vf=0.3),
             hint="the inputs may be (T, N) tensors: average over every element (.mean()), "
                  "not over one axis, and not sum / len(x): len(x) counts the rows only"),
        Case("a minibatch of one sample",
             kwargs=dict(one, clip_range=0.2, vf_coef=0.5, ent_coef=0.01, old_values=one_old,
                         clip_range_vf=0.2),
             hint="a minibatch may hold a single sample: nothing in the loss may need two "
                  "(no std over the batch, no normalising the advantages, no .squeeze() "
                  "that drops the batch axis)"),
        _gradient_case(),
    ]


# ---------------------------------------------------------------------------------------
# classic wrong answers


def _surrogate(ratio, advantages, clip_range, pick=torch.min):
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages
    return -pick(ratio * advantages, clipped).mean()


def _squared_error(values, returns, old_values, clip_range_vf):
    if clip_range_vf is not None:
        values = old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    return ((returns - values) ** 2).mean()


def _make(policy=_surrogate, value=_squared_error, bonus=lambda h, c: -c * h.mean(),
          use_vf_coef=True, prepare=None):
    def loss(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
             ent_coef=0.0, old_values=None, clip_range_vf=None):
        if prepare is not None:
            ratio, advantages, values, entropy = prepare(ratio, advantages, values, entropy)
        c1 = vf_coef if use_vf_coef else 1.0
        return (policy(ratio, advantages, clip_range)
                + c1 * value(values, returns, old_values, clip_range_vf)
                + bonus(entropy, ent_coef))
    return loss


def _fixed_vf_coef(*args, **kwargs):
    args = list(args)
    if len(args) > 6:
        args[6] = 0.5
    else:
        kwargs["vf_coef"] = 0.5
    return _make()(*args, **kwargs)


def _mean_by_len(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
                 ent_coef=0.0, old_values=None, clip_range_vf=None):
    """Every mean written as sum / len(x): right for 1-D tensors only."""
    surrogate = torch.min(ratio * advantages,
                          torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages)
    if clip_range_vf is not None:
        values = old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    n = len(ratio)
    return (-surrogate.sum() / n + vf_coef * ((returns - values) ** 2).sum() / n
            - ent_coef * entropy.sum() / n)


def _normalise(ratio, advantages, values, entropy):
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return ratio, advantages, values, entropy


def _frozen_inputs(ratio, advantages, values, entropy):
    for t in (ratio, values, entropy):
        t.requires_grad_(False)
    return ratio, advantages, values, entropy


def _clamps_ratio_in_place(ratio, advantages, values, returns, entropy, clip_range,
                           vf_coef=0.5, ent_coef=0.0, old_values=None, clip_range_vf=None):
    unclipped = ratio * advantages
    clipped = ratio.clamp_(1 - clip_range, 1 + clip_range) * advantages
    return (-torch.min(unclipped, clipped).mean()
            + vf_coef * _squared_error(values, returns, old_values, clip_range_vf)
            - ent_coef * entropy.mean())


def _rebuilt_as_new_tensor(*args, **kwargs):
    """torch.tensor(a loss): the right number, cut off from the graph."""
    return torch.tensor(float(ppo_loss(*args, **kwargs).detach()), requires_grad=True)


def _ppo_loss_mistakes() -> list[Mistake]:
    return [
        Mistake("entropy bonus with the wrong sign (+ent_coef * H)",
                _make(bonus=lambda h, c: c * h.mean()), hint="bonus"),
        Mistake("forgot vf_coef", _make(use_vf_coef=False),
                hint="multiply the value loss by vf_coef"),
        Mistake("vf_coef fixed at 0.5", _fixed_vf_coef, hint="the vf_coef argument"),
        Mistake("entropy summed instead of averaged", _make(bonus=lambda h, c: -c * h.sum()),
                hint="mean, not sum"),
        Mistake("max instead of min in the clipped surrogate",
                _make(policy=lambda r, a, eps: _surrogate(r, a, eps, pick=torch.max)),
                hint="not max"),
        Mistake("no clipping at all (the plain surrogate -mean(r * A))",
                _make(policy=lambda r, a, eps: -(r * a).mean()), hint="clamp the ratio"),
        Mistake("value loss with 1/2 in front",
                _make(value=lambda v, g, ov, c: 0.5 * _squared_error(v, g, ov, c)),
                hint="no 1/2 in front"),
        Mistake("absolute instead of squared error in the value loss",
                _make(value=lambda v, g, ov, c: (g - v).abs().mean()),
                hint="mean squared error"),
        Mistake("objective not negated",
                _make(policy=lambda r, a, eps: -_surrogate(r, a, eps)), hint="minus sign"),
        Mistake("policy term summed instead of averaged",
                _make(policy=lambda r, a, eps: _surrogate(r, a, eps) * len(r)),
                hint="mean, not sum"),
        Mistake("clip_range fixed at 0.2",
                _make(policy=lambda r, a, eps: _surrogate(r, a, 0.2)), hint="not a fixed 0.2"),
        Mistake("clip_range_vf ignored",
                _make(value=lambda v, g, ov, c: _squared_error(v, g, None, None)),
                hint="clip_range_vf"),
        Mistake("value clipped with clip_range instead of clip_range_vf",
                lambda ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
                ent_coef=0.0, old_values=None, clip_range_vf=None: _make()(
                    ratio, advantages, values, returns, entropy, clip_range, vf_coef,
                    ent_coef, old_values, None if clip_range_vf is None else clip_range),
                hint="not clip_range"),
        Mistake("max of the clipped and unclipped squared errors (Baselines / CleanRL form)",
                _make(value=lambda v, g, ov, c: ((g - v) ** 2).mean() if c is None else
                      torch.max((g - v) ** 2, (g - ov - torch.clamp(v - ov, -c, c)) ** 2)
                      .mean()), hint="not the max of the clipped"),
        Mistake("value clipped around the returns instead of old_values",
                _make(value=lambda v, g, ov, c: _squared_error(v, g, g, c)),
                hint="around old_values"),
        Mistake("advantages normalised again inside the loss", _make(prepare=_normalise),
                hint="don't normalise them again"),
        Mistake("means written as sum / len(x) (wrong for (T, N) tensors)", _mean_by_len,
                hint="len(x) counts the rows only"),
        Mistake("mean over the first axis only (a vector for (T, N) inputs)",
                _make(policy=lambda r, a, eps: -torch.min(
                    r * a, torch.clamp(r, 1 - eps, 1 + eps) * a).mean(0),
                    value=lambda v, g, ov, c: ((g - v) ** 2).mean(0) if c is None else
                    _squared_error(v, g, ov, c), bonus=lambda h, c: -c * h.mean(0)),
                hint="not over one axis"),
        Mistake("returns a Python float (no gradient)",
                lambda *args, **kwargs: ppo_loss(*args, **kwargs).item(), hint=".item()"),
        Mistake("rebuilt with torch.tensor (cut off from the graph)", _rebuilt_as_new_tensor,
                hint="no gradient flows to ratio"),
        Mistake("ratio detached (no policy gradient)",
                lambda ratio, *args, **kwargs: ppo_loss(ratio.detach(), *args, **kwargs),
                hint="no gradient flows to ratio"),
        Mistake("values detached (no critic gradient)",
                _make(prepare=lambda r, a, v, h: (r, a, v.detach(), h)),
                hint="no gradient flows to values"),
        Mistake("requires_grad_(False) on the inputs", _make(prepare=_frozen_inputs),
                hint="requires_grad_(False)"),
        Mistake("clamps the ratio in place (ratio.clamp_)", _clamps_ratio_in_place,
                hint="in place"),
        Mistake("clipped branch built from a detached ratio (right value, half the gradient)",
                _make(policy=lambda r, a, eps: -torch.min(
                    r * a, torch.clamp(r.detach(), 1 - eps, 1 + eps) * a).mean()),
                hint="the gradient is not"),
    ]


register(Exercise(
    id="ppo_loss", lesson="05",
    title="The total PPO loss: clipped surrogate + vf_coef * value loss - ent_coef * entropy",
    cases=_ppo_loss_cases, reference=ppo_loss, mistakes=_ppo_loss_mistakes))
