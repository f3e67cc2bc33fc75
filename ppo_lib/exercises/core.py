"""The core exercises: the maths PPO is built from.

Each exercise grades a function with the library's name and signature against the
library's reference, on cases chosen so that each classic mistake fails one of them with a
hint naming it. The ``Mistake`` entries are those classic wrong versions; the tests prove
``check`` rejects every one of them.

Decisions: ``clip_fraction`` and ``explained_variance`` return a Python float in ppo_lib
(as the API says); the grader also accepts a one-element tensor, since the number is what
is taught. The maths tests (tests/test_returns.py, ...) use the same hand-computed cases.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import diagnostics, kl, losses, returns
from ..grading import Case, Exercise, Mistake, register

T = torch.tensor


def _random(shape, seed, low=0.0, high=1.0, dtype=torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g, dtype=dtype)


def _dones(shape, seed, p=0.2) -> Tensor:
    return (_random(shape, seed) < p).float()


# ---------------------------------------------------------------------------------------
# discounted_returns(rewards, dones, gamma, last_values=None)

HINT_BACKWARDS = "G_t = r_t + gamma * G_{t+1}: loop backwards over time, from the last step"
HINT_DONES = ("ignoring episode ends: multiply the next step's term by (1 - d_t) so that "
              "returns do not flow across an episode boundary")
HINT_LAST = ("last_values ignored: the return after the last step starts from "
             "G_T = last_values (the critic's estimate of the unfinished episode)")
HINT_DONE_LAST = ("the last step ended its episode, so nothing is bootstrapped past it: "
                  "G_{T-1} = r_{T-1} + gamma * (1 - d_{T-1}) * last_values")
HINT_TN = ("(T, N) inputs: loop over time (axis 0) only, each step works on all N envs at "
           "once; allocate with torch.zeros_like(rewards)")


def discounted_returns_cases() -> list[Case]:
    return [
        Case("one episode, no ends, gamma 0.9", args=(T([1.0, 1.0, 1.0]), T([0.0, 0.0, 0.0]), 0.9),
             expected=T([2.71, 1.9, 1.0]), hint=HINT_BACKWARDS),
        Case("gamma 0 gives the rewards", args=(T([1.0, 2.0, 3.0]), T([0.0, 0.0, 0.0]), 0.0),
             expected=T([1.0, 2.0, 3.0]), hint="with gamma = 0 only the immediate reward counts"),
        Case("an episode ends at step 1", args=(T([1.0, 2.0, 3.0, 4.0]), T([0.0, 1.0, 0.0, 0.0]), 0.5),
             expected=T([2.0, 2.0, 5.0, 4.0]), hint=HINT_DONES),
        Case("bootstrap from last_values", args=(T([1.0, 1.0]), T([0.0, 0.0]), 0.5),
             kwargs={"last_values": T(4.0)}, expected=T([2.5, 3.0]), hint=HINT_LAST),
        Case("no bootstrap after an end at the last step", args=(T([1.0, 1.0]), T([0.0, 1.0]), 0.5),
             kwargs={"last_values": T(4.0)}, expected=T([1.5, 1.0]), hint=HINT_DONE_LAST),
        Case("(T, N) = (6, 3) with episode ends and last_values",
             args=(_random((6, 3), 1, -1, 1), _dones((6, 3), 2, 0.3), 0.9),
             kwargs={"last_values": _random((3,), 3, 0, 5)}, hint=HINT_TN),
    ]


def _dr_ignores_dones(rewards, dones, gamma, last_values=None):
    return returns.discounted_returns(rewards, torch.zeros_like(dones), gamma, last_values)


def _dr_ignores_last_values(rewards, dones, gamma, last_values=None):
    return returns.discounted_returns(rewards, dones, gamma)


def _dr_masks_the_return(rewards, dones, gamma, last_values=None):
    # (1 - d) applied to the finished return instead of inside the recursion
    out = torch.zeros_like(rewards)
    g = torch.zeros_like(rewards[0]) if last_values is None else last_values
    for t in reversed(range(len(rewards))):
        g = (rewards[t] + gamma * g) * (1 - dones[t])
        out[t] = g
    return out


def _dr_forward(rewards, dones, gamma, last_values=None):
    out = torch.zeros_like(rewards)
    g = torch.zeros_like(rewards[0])
    for t in range(len(rewards)):  # forwards: sums the past, not the future
        g = rewards[t] + gamma * (1 - dones[t]) * g
        out[t] = g
    return out


def _dr_only_1d(rewards, dones, gamma, last_values=None):
    out = torch.zeros(len(rewards))
    g = 0.0 if last_values is None else float(last_values)
    for t in reversed(range(len(rewards))):
        g = float(rewards[t]) + gamma * (1 - float(dones[t])) * g
        out[t] = g
    return out


def discounted_returns_mistakes() -> list[Mistake]:
    return [
        Mistake("ignores episode ends", _dr_ignores_dones),
        Mistake("ignores last_values", _dr_ignores_last_values),
        Mistake("masks the return instead of the recursion", _dr_masks_the_return),
        Mistake("accumulates forwards in time", _dr_forward),
        Mistake("works for (T,) only", _dr_only_1d),
    ]


register(Exercise(
    id="discounted_returns", lesson="00", title="Discounted returns with episode ends",
    cases=discounted_returns_cases, reference=returns.discounted_returns,
    mistakes=discounted_returns_mistakes))


# ---------------------------------------------------------------------------------------
# gae(rewards, values, dones, last_values, gamma, gae_lambda) -> (advantages, returns)

HINT_GAE_CONST = ("SB3's check: rewards 1 and a constant V. delta_t = r_t + gamma V_{t+1} "
                  "(1 - d_t) - V_t, then A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}, "
                  "backwards from the last step")
HINT_NEXT_STATE = ("bootstrap from the NEXT state: delta_t uses V(s_{t+1}) (values[t + 1], "
                   "and last_values after the last step), not V(s_t)")
HINT_GAE_DONES = ("mask both places with (1 - d_t): the bootstrap gamma V_{t+1} in delta_t "
                  "AND the recursion gamma lambda A_{t+1}")
HINT_LAMBDA0 = "lambda = 0: A_t must equal delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t"
HINT_LAMBDA1 = ("lambda = 1: A_t must equal the discounted return minus V_t; is lambda "
                "in the recursion (and gamma in both delta and the recursion)?")
HINT_GAMMA_LAMBDA = ("gamma and lambda mixed up: gamma discounts V_{t+1} in delta_t; the "
                     "recursion uses gamma * lambda")
HINT_RETURNS = "returns = advantages + values (the critic's target): add the values back"


def gae_cases() -> list[Case]:
    ones = torch.ones(4)
    return [
        Case("constant V = 2, rewards 1, no ends, last V = 2, gamma 0.5, lambda 1",
             args=(ones, 2 * ones, 0 * ones, T(2.0), 0.5, 1.0),
             expected=(torch.zeros(4), 2 * ones), hint=HINT_GAE_CONST),
        Case("V(s_{t+1}) not V(s_t): values 0, 1, 2, gamma 1, lambda 0",
             args=(torch.zeros(3), T([0.0, 1.0, 2.0]), torch.zeros(3), T(3.0), 1.0, 0.0),
             expected=(T([1.0, 1.0, 1.0]), T([1.0, 2.0, 3.0])), hint=HINT_NEXT_STATE),
        Case("last_values bootstraps the last step",
             args=(torch.zeros(2), torch.zeros(2), torch.zeros(2), T(10.0), 0.5, 1.0),
             expected=(T([2.5, 5.0]), T([2.5, 5.0])), hint=HINT_LAST),
        Case("an episode ends at step 1 (rewards 1, V = 1, gamma 0.5, lambda 1)",
             args=(torch.ones(3), torch.ones(3), T([0.0, 1.0, 0.0]), T(1.0), 0.5, 1.0),
             expected=(T([0.5, 0.0, 0.5]), T([1.5, 1.0, 1.5])), hint=HINT_GAE_DONES),
        Case("lambda = 0 gives delta", args=(_random(5, 11, -1, 1), _random(5, 12), _dones(5, 13, 0.3),
                                             T(0.7), 0.9, 0.0), hint=HINT_LAMBDA0),
        Case("lambda = 1 gives the discounted return minus V",
             args=(_random(5, 21, -1, 1), _random(5, 22), _dones(5, 23, 0.3), T(0.7), 0.9, 1.0),
             hint=HINT_LAMBDA1),
        Case("gamma 0.9, lambda 0.5 (not interchangeable)",
             args=(_random(6, 31, -1, 1), _random(6, 32, 0, 2), T([0.0, 0, 1, 0, 0, 0]),
                   T(1.5), 0.9, 0.5), hint=HINT_GAMMA_LAMBDA),
        Case("(T, N) = (7, 4) with episode ends",
             args=(_random((7, 4), 41, -1, 1), _random((7, 4), 42), _dones((7, 4), 43, 0.25),
                   _random(4, 44, 0, 2), 0.99, 0.95), hint=HINT_TN),
        Case("returns = advantages + values",
             args=(_random(4, 51), _random(4, 52, 1, 3), torch.zeros(4), T(2.0), 0.9, 0.8),
             hint=HINT_RETURNS),
    ]


def _gae_loop(rewards, values, dones, last_values, gamma, gae_lambda, *, mask_delta=True,
              mask_recursion=True, same_state=False, use_last=True, add_values=True,
              delta_discount=None, recursion_discount=None):
    """One GAE implementation with switches to introduce each classic mistake."""
    delta_discount = gamma if delta_discount is None else delta_discount
    recursion_discount = gamma * gae_lambda if recursion_discount is None else recursion_discount
    not_done = 1.0 - dones
    last = torch.as_tensor(last_values, dtype=values.dtype).reshape(values[0].shape)
    next_values = torch.cat([values[1:], (last if use_last else 0 * last).unsqueeze(0)])
    if same_state:
        next_values = values
    deltas = rewards + delta_discount * next_values * (not_done if mask_delta else 1) - values
    advantages = torch.zeros_like(rewards)
    a = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        a = deltas[t] + recursion_discount * (not_done[t] if mask_recursion else 1) * a
        advantages[t] = a
    return advantages, advantages + values if add_values else advantages


def gae_mistakes() -> list[Mistake]:
    def variant(**switches):
        return lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, **switches)
    return [
        Mistake("ignores episode ends", variant(mask_delta=False, mask_recursion=False)),
        Mistake("masks the TD error but not the recursion", variant(mask_recursion=False)),
        Mistake("masks the recursion but not the TD error", variant(mask_delta=False)),
        Mistake("bootstraps from V(s_t) instead of V(s_{t+1})", variant(same_state=True)),
        Mistake("ignores last_values", variant(use_last=False)),
        Mistake("forgets to add the values back (returns = advantages)",
                variant(add_values=False)),
        Mistake("lambda discounts V_{t+1} in delta (gamma and lambda swapped)",
                lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, delta_discount=lam)),
        Mistake("recursion without lambda",
                lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, recursion_discount=g)),
        Mistake("returns only the advantages",
                lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam)[0]),
    ]


register(Exercise(
    id="gae", lesson="04", title="Generalised Advantage Estimation",
    cases=gae_cases, reference=returns.gae, mistakes=gae_mistakes))


# ---------------------------------------------------------------------------------------
# kl_categorical(p, q)

def kl_categorical_cases() -> list[Case]:
    p = T([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1]])
    q = T([[0.3, 0.3, 0.4], [0.1, 0.6, 0.3]])
    return [
        Case("KL(p, p) = 0", args=(p, p.clone()), expected=T([0.0, 0.0]),
             hint="log(p / p) = 0 for every action"),
        Case("a known value: KL([0.5, 0.5] || [0.9, 0.1])", args=(T([0.5, 0.5]), T([0.9, 0.1])),
             expected=T(0.5108256), hint=("KL(p || q) = sum_a p(a) log(p(a) / q(a)): weight by "
                                          "p, the first argument, and sum over actions")),
        Case("the direction matters: KL(p || q) != KL(q || p)", args=(p, q),
             hint="reversed direction? KL(p || q) weights log(p / q) by p, not by q"),
        Case("sum over actions, not mean", args=(T([0.25, 0.25, 0.25, 0.25]), T([0.7, 0.1, 0.1, 0.1])),
             hint="averaging instead of summing over the last axis divides the KL by n_actions"),
        Case("one KL per row for a batch (B, A) = (4, 5)",
             args=(torch.softmax(_random((4, 5), 61, -2, 2), -1), torch.softmax(_random((4, 5), 62, -2, 2), -1)),
             hint="reduce over the last axis only: the result has shape (B,)"),
        Case("p(a) = 0 contributes 0 (not NaN)", args=(T([1.0, 0.0]), T([0.5, 0.5])),
             expected=T(0.6931472), hint=("log of zero probs: 0 * log 0 is NaN in floating point; "
                                          "use torch.where(p > 0, ..., 0) (its limit is 0)")),
    ]


def kl_categorical_mistakes() -> list[Mistake]:
    return [
        Mistake("reversed direction", lambda p, q: kl.kl_categorical(q, p)),
        Mistake("averages over actions", lambda p, q: (p * torch.log(p / q)).nan_to_num().mean(-1)),
        Mistake("NaN for zero probabilities", lambda p, q: (p * (torch.log(p) - torch.log(q))).sum(-1)),
        Mistake("sums over every axis", lambda p, q: kl.kl_categorical(p, q).sum()),
        Mistake("sign flipped: log(q / p)", lambda p, q: -kl.kl_categorical(p, q)),
    ]


register(Exercise(
    id="kl_categorical", lesson="02", title="Exact KL between categorical distributions",
    cases=kl_categorical_cases, reference=kl.kl_categorical, mistakes=kl_categorical_mistakes))


# ---------------------------------------------------------------------------------------
# conjugate_gradient(Avp, b, iters=10, tol=1e-10); the reference lives in ppo_lib.trpo

def _conjugate_gradient(*args, **kwargs):
    from ..trpo import conjugate_gradient  # lazily: trpo imports more than torch
    return conjugate_gradient(*args, **kwargs)


def _spd(n: int, seed: int) -> Tensor:
    m = _random((n, n), seed, -1, 1, dtype=torch.float64)
    return m @ m.T + n * torch.eye(n, dtype=torch.float64)


def _matvec(a: Tensor):
    """v -> A v: a plain function of the matrix (module level, so no closures in cases)."""
    return a.__matmul__


def conjugate_gradient_cases() -> list[Case]:
    a2 = T([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    a5 = _spd(5, 71)
    a8 = _spd(8, 72)
    b5 = _random(5, 73, -1, 1, dtype=torch.float64)
    b8 = _random(8, 74, -1, 1, dtype=torch.float64)
    return [
        Case("2 x 2: A = [[4, 1], [1, 3]], b = [1, 2]",
             args=(_matvec(a2), T([1.0, 2.0], dtype=torch.float64)),
             expected=T([1 / 11, 7 / 11], dtype=torch.float64), atol=1e-8,
             hint=("x = 0, r = p = b; alpha = r.r / p.Ap; x += alpha p; r -= alpha Ap; "
                   "beta = r_new.r_new / r.r; p = r + beta p")),
        Case("5 x 5 SPD, 10 iterations solve it exactly", args=(_matvec(a5), b5),
             kwargs={"iters": 10}, expected=torch.linalg.solve(a5, b5), atol=1e-6,
             hint=("wrong residual update? r_{k+1} = r_k - alpha A p_k (minus, and with A p, "
                   "from Avp)")),
        Case("8 x 8 SPD, iters = 3: exactly 3 steps", args=(_matvec(a8), b8), kwargs={"iters": 3},
             atol=1e-6, hint="run exactly `iters` iterations (or stop early when r.r < tol)"),
        Case("8 x 8 SPD, default iters (10)", args=(_matvec(a8), b8), atol=1e-6,
             hint=("too few iterations? the default is iters=10; and A enters only through "
                   "Avp(p)")),
    ]


def _cg_variant(Avp, b, iters=10, tol=1e-10, *, residual_sign=-1.0, max_iters=None):
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    for _ in range(iters if max_iters is None else min(iters, max_iters)):
        if rr < tol:
            break
        ap = Avp(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r + residual_sign * alpha * ap
        rr_new = r @ r
        p = r + rr_new / rr * p
        rr = rr_new
    return x


def _cg_steepest_descent(Avp, b, iters=10, tol=1e-10):
    x = torch.zeros_like(b)
    for _ in range(iters):
        r = b - Avp(x)
        x = x + (r @ r) / (r @ Avp(r)) * r
    return x


def conjugate_gradient_mistakes() -> list[Mistake]:
    return [
        Mistake("one iteration only", lambda Avp, b, iters=10, tol=1e-10: _cg_variant(Avp, b, iters, tol, max_iters=1)),
        Mistake("residual updated with + alpha A p",
                lambda Avp, b, iters=10, tol=1e-10: _cg_variant(Avp, b, iters, tol, residual_sign=1.0)),
        Mistake("ignores iters (always 20)", lambda Avp, b, iters=10, tol=1e-10: _cg_variant(Avp, b, 20, tol)),
        Mistake("does not use Avp (returns b)", lambda Avp, b, iters=10, tol=1e-10: b.clone()),
        Mistake("steepest descent, not conjugate directions", _cg_steepest_descent),
    ]


register(Exercise(
    id="conjugate_gradient", lesson="02", title="Conjugate gradient with a matrix-vector product",
    cases=conjugate_gradient_cases, reference=_conjugate_gradient,
    mistakes=conjugate_gradient_mistakes))


# ---------------------------------------------------------------------------------------
# clipped_surrogate_loss(ratio, advantages, clip_range)

def _leaves(output: Tensor) -> list[Tensor]:
    """The leaf tensors an output was computed from (its autograd graph's inputs)."""
    found, stack, seen = [], [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if hasattr(node, "variable"):
            found.append(node.variable)
        stack.extend(n for n, _ in node.next_functions)
    return found


def _gradient_matches(expected_grad: Tensor):
    """verify: the loss is a differentiable scalar whose d loss / d ratio is expected_grad."""
    def verify(loss: Tensor) -> str | None:
        if not isinstance(loss, Tensor):
            return f"expected a scalar tensor (a loss to backpropagate), got {type(loss).__name__}"
        if loss.dim() != 0:
            return f"expected a scalar loss, got shape {tuple(loss.shape)}"
        if loss.grad_fn is None:
            return ("the loss has no gradient: keep it a tensor computed from ratio "
                    "(no .item(), .detach() or torch.tensor(...))")
        leaves = [t for t in _leaves(loss) if t.shape == expected_grad.shape]
        if not leaves:
            return "the loss does not depend on ratio"
        (grad,) = torch.autograd.grad(loss, leaves[0])
        if not torch.allclose(grad, expected_grad, atol=1e-6):
            return f"d loss / d ratio: expected {expected_grad.tolist()}, got {grad.tolist()}"
        return None
    return verify


def _region_case(name: str, ratio: float, advantage: float, hint: str) -> Case:
    return Case(name, args=(T([ratio]), T([advantage]), 0.2), hint=hint)


def clipped_surrogate_loss_cases() -> list[Case]:
    ratio = T([0.5, 1.0, 1.5, 0.5, 1.0, 1.5])
    adv = T([2.0, 2.0, 2.0, -1.0, -1.0, -1.0])
    # d loss / d r_i = -A_i / n inside the range or on the unclipped side, 0 where clipped
    grad = T([-2.0, -2.0, 0.0, 0.0, 1.0, 1.0]) / 6
    hint_min = ("take the MINIMUM of r A and clip(r) A (the pessimistic bound), not the "
                "maximum")
    return [
        _region_case("A > 0, ratio above 1 + eps (clipped)", 1.5, 2.0, hint_min),
        _region_case("A > 0, ratio inside the range", 1.1, 2.0,
                     "inside [1 - eps, 1 + eps] the loss is just -r A"),
        _region_case("A > 0, ratio below 1 - eps (not clipped)", 0.5, 2.0, hint_min),
        _region_case("A < 0, ratio below 1 - eps (clipped)", 0.5, -1.0, hint_min),
        _region_case("A < 0, ratio inside the range", 0.9, -1.0,
                     "inside [1 - eps, 1 + eps] the loss is just -r A"),
        _region_case("A < 0, ratio above 1 + eps (not clipped)", 1.5, -1.0, hint_min),
        Case("clip the ratio, not the product r A", args=(T([1.1, 0.95]), T([3.0, -2.0]), 0.2),
             hint="clip(r, 1 - eps, 1 + eps) * A, not clip(r * A, 1 - eps, 1 + eps)"),
        Case("mean over samples, as a loss to minimise", args=(ratio, adv, 0.2),
             hint=("return the LOSS -mean(min(...)) (the objective with a minus sign), averaged "
                   "with .mean(), not .sum()")),
        Case("gradients: zero where clipped, -A / n elsewhere",
             args=(ratio.clone().requires_grad_(), adv, 0.2), verify=_gradient_matches(grad),
             hint="the gradient must flow through ratio: no .item()/.detach(); torch.min and "
                  "torch.clamp give exactly the zero gradients PPO needs"),
        Case("clip_range is an argument (0.1 here)", args=(T([1.15, 0.85]), T([1.0, -1.0]), 0.1),
             hint="use clip_range, not a hard-coded 0.2"),
    ]


def clipped_surrogate_loss_mistakes() -> list[Mistake]:
    def clamp(r, eps):
        return torch.clamp(r, 1 - eps, 1 + eps)
    return [
        Mistake("max instead of min", lambda r, a, eps: -torch.max(r * a, clamp(r, eps) * a).mean()),
        Mistake("clips the product", lambda r, a, eps: -torch.min(r * a, clamp(r * a, eps)).mean()),
        Mistake("returns the objective, not the loss", lambda r, a, eps: torch.min(r * a, clamp(r, eps) * a).mean()),
        Mistake("only the clipped term", lambda r, a, eps: -(clamp(r, eps) * a).mean()),
        Mistake("only the unclipped term", lambda r, a, eps: -(r * a).mean()),
        Mistake("sum instead of mean", lambda r, a, eps: -torch.min(r * a, clamp(r, eps) * a).sum()),
        Mistake("hard-coded eps = 0.2", lambda r, a, eps: -torch.min(r * a, clamp(r, 0.2) * a).mean()),
        Mistake("returns a float (.item())", lambda r, a, eps: losses.clipped_surrogate_loss(r, a, eps).item()),
        Mistake("detached (no gradient)", lambda r, a, eps: losses.clipped_surrogate_loss(r.detach(), a, eps)),
    ]


register(Exercise(
    id="clipped_surrogate_loss", lesson="03", title="PPO's clipped surrogate loss",
    cases=clipped_surrogate_loss_cases, reference=losses.clipped_surrogate_loss,
    mistakes=clipped_surrogate_loss_mistakes))


# ---------------------------------------------------------------------------------------
# value_loss(values, returns, old_values=None, clip_range_vf=None)

def value_loss_cases() -> list[Case]:
    values = T([1.0, 2.0, 3.0, 0.0])
    rets = T([2.0, 2.0, 1.0, 1.0])
    old = T([0.5, 2.5, 3.1, 0.0])
    return [
        Case("mean squared error", args=(values, rets), expected=T(1.5),
             hint="mean((returns - values) ** 2): SB3's form, with no 1/2 factor"),
        Case("clip_range_vf=None means no clipping", args=(values, rets),
             kwargs={"old_values": old, "clip_range_vf": None}, expected=T(1.5),
             hint="without clip_range_vf, old_values is not used"),
        Case("clip the prediction around old_values", args=(values, rets),
             kwargs={"old_values": old, "clip_range_vf": 0.2},
             hint=("clip the PREDICTION: V_clipped = old_values + clamp(values - old_values, "
                   "-clip_range_vf, clip_range_vf), then mean((returns - V_clipped) ** 2) "
                   "(SB3's form; not the loss itself, and not max of both as in baselines)")),
        Case("clipping is relative to old_values", args=(T([5.0, -5.0]), T([4.0, -4.0])),
             kwargs={"old_values": T([4.5, -4.5]), "clip_range_vf": 0.1},
             hint="ignoring old_values? the clip range is centred on old_values, not on 0"),
    ]


def _vl_half(values, returns, old_values=None, clip_range_vf=None):
    return 0.5 * losses.value_loss(values, returns, old_values, clip_range_vf)


def _vl_abs(values, returns, old_values=None, clip_range_vf=None):
    return (returns - values).abs().mean()


def _vl_sum(values, returns, old_values=None, clip_range_vf=None):
    return ((returns - values) ** 2).sum()


def _vl_never_clips(values, returns, old_values=None, clip_range_vf=None):
    return ((returns - values) ** 2).mean()


def _vl_clips_the_loss(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    return torch.clamp((returns - values) ** 2, max=clip_range_vf).mean()


def _vl_clips_around_zero(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    return ((returns - torch.clamp(values, -clip_range_vf, clip_range_vf)) ** 2).mean()


def _vl_clips_the_returns(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    clipped = old_values + torch.clamp(returns - old_values, -clip_range_vf, clip_range_vf)
    return ((clipped - values) ** 2).mean()


def value_loss_mistakes() -> list[Mistake]:
    return [
        Mistake("with a 1/2 factor", _vl_half),
        Mistake("mean absolute error", _vl_abs),
        Mistake("sum instead of mean", _vl_sum),
        Mistake("clips the loss, not the prediction", _vl_clips_the_loss),
        Mistake("ignores old_values (clips around 0)", _vl_clips_around_zero),
        Mistake("never clips", _vl_never_clips),
        Mistake("clips the returns instead of the values", _vl_clips_the_returns),
    ]


register(Exercise(
    id="value_loss", lesson="04", title="The critic's loss, with optional value clipping",
    cases=value_loss_cases, reference=losses.value_loss, mistakes=value_loss_mistakes))


# ---------------------------------------------------------------------------------------
# approx_kl(log_ratio)

def approx_kl_cases() -> list[Case]:
    return [
        Case("the same policy: log r = 0 gives 0", args=(torch.zeros(4),), expected=T(0.0),
             hint="(r - 1) - log r with r = exp(0) = 1 is 0"),
        Case("a known value", args=(T([0.5, -0.5]),), expected=T(0.1276260),
             hint=("k3: mean((r - 1) - log r) with r = exp(log_ratio). The naive -mean(log r) "
                   "gives 0 here: it is unbiased but noisy and can be negative")),
        Case("never negative, on 1000 samples", args=(_random(1000, 81, -0.3, 0.3),),
             hint="r = exp(log_ratio) (not log_ratio itself); the log of r is log_ratio"),
    ]


def approx_kl_mistakes() -> list[Mistake]:
    return [
        Mistake("naive estimator -mean(log r)", lambda lr: -lr.mean()),
        Mistake("forgets the exp (r = log_ratio)", lambda lr: ((lr - 1) - torch.log(lr)).mean()),
        Mistake("exp of the log again: (r - 1) - r", lambda lr: ((lr.exp() - 1) - lr.exp()).mean()),
        Mistake("sign flipped on log r", lambda lr: ((lr.exp() - 1) + lr).mean()),
        Mistake("sum instead of mean", lambda lr: ((lr.exp() - 1) - lr).sum()),
    ]


register(Exercise(
    id="approx_kl", lesson="03", title="The k3 estimate of the KL from log-ratios",
    cases=approx_kl_cases, reference=kl.approx_kl, mistakes=approx_kl_mistakes))


# ---------------------------------------------------------------------------------------
# clip_fraction(ratio, clip_range) -> float

def clip_fraction_cases() -> list[Case]:
    return [
        Case("no change: all ratios 1", args=(torch.ones(5), 0.2), expected=0.0,
             hint="|r - 1| = 0 is inside the range"),
        Case("both sides count", args=(T([0.5, 0.9, 1.0, 1.1, 1.5]), 0.2), expected=0.4,
             hint="counting only one side? |r - 1| > eps counts r below 1 - eps AND above 1 + eps"),
        Case("a share, not a count", args=(T([1.3, 1.3, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 0.2),
             expected=0.25, hint="the mean of the 0/1 indicator, not its sum"),
        Case("clip_range is an argument", args=(T([1.15, 0.85, 1.05, 1.0]), 0.1), expected=0.5,
             hint="use clip_range, not a hard-coded 0.2"),
    ]


def clip_fraction_mistakes() -> list[Mistake]:
    return [
        Mistake("counts only r > 1 + eps", lambda r, eps: (r > 1 + eps).float().mean().item()),
        Mistake("counts inside instead of outside", lambda r, eps: ((r - 1).abs() <= eps).float().mean().item()),
        Mistake("a count, not a share", lambda r, eps: float(((r - 1).abs() > eps).sum())),
        Mistake("hard-coded eps = 0.2", lambda r, eps: ((r - 1).abs() > 0.2).float().mean().item()),
    ]


register(Exercise(
    id="clip_fraction", lesson="03", title="The share of clipped samples",
    cases=clip_fraction_cases, reference=diagnostics.clip_fraction,
    mistakes=clip_fraction_mistakes))


# ---------------------------------------------------------------------------------------
# explained_variance(values, returns) -> float

def explained_variance_cases() -> list[Case]:
    rets = T([1.0, 2.0, 3.0, 4.0])
    return [
        Case("a perfect critic: 1", args=(rets.clone(), rets), expected=1.0,
             hint="EV = 1 - Var(returns - values) / Var(returns)"),
        Case("predicting the mean: 0", args=(torch.full((4,), 2.5), rets), expected=0.0,
             hint="EV = 1 - Var(returns - values) / Var(returns)"),
        Case("worse than the mean: negative", args=(T([4.0, 3.0, 2.0, 1.0]), rets), expected=-3.0,
             hint="EV can be below 0; do not clip it"),
        Case("off by a constant still explains everything", args=(rets + 10, rets), expected=1.0,
             hint="use the VARIANCE of returns - values, not the mean squared error"),
        Case("arguments in order (values, returns)", args=(T([1.0, 1.0, 2.0, 2.0]), rets),
             expected=0.6, hint="swapped arguments? divide by Var(returns), the second argument"),
        Case("constant returns: NaN", args=(T([1.0, 2.0, 3.0, 4.0]), torch.full((4,), 5.0)),
             expected=float("nan"),
             hint="missing NaN case: when Var(returns) == 0, return float('nan')"),
    ]


def _ev_swapped(values, returns):
    return diagnostics.explained_variance(returns, values)


def _ev_mse(values, returns):
    return (1 - ((returns - values) ** 2).mean() / returns.var(unbiased=False)).item()


def _ev_no_nan_guard(values, returns):
    with torch.no_grad():
        return (1 - (returns - values).var() / returns.var()).item()


def explained_variance_mistakes() -> list[Mistake]:
    return [
        Mistake("swapped arguments", _ev_swapped),
        Mistake("mean squared error instead of variance", _ev_mse),
        Mistake("no NaN case (gives -inf)", _ev_no_nan_guard),
        Mistake("clipped at 0", lambda v, r: max(0.0, diagnostics.explained_variance(v, r))),
    ]


register(Exercise(
    id="explained_variance", lesson="05", title="Explained variance of the critic",
    cases=explained_variance_cases, reference=diagnostics.explained_variance,
    mistakes=explained_variance_mistakes))
