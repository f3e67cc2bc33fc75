"""The core exercises: the maths PPO is built from.

Each exercise grades a function with the library's name and signature against the
library's reference. The cases use the shapes the course passes: ``(T, N)`` rollouts and a
batch of one as well as 1-D examples, and non-leaf tensors that require grad where the course
passes a critic's or a policy's output (losses are then checked for their gradient too).

Each exercise lists its classic wrong answers once (``Known``): they are the ``Mistake``
entries the tests prove ``check`` rejects, and they diagnose a failed case. When a learner's
output on the first failing case equals what a known mistake gives there, the message names
that mistake ("... (this is what you get if you ...)"), so the feedback names the mistake
actually made whatever case it first shows in. The case's own hint says what the case tests.

Decisions: ``clip_fraction`` and ``explained_variance`` return a Python float in ppo_lib
(as the API says); the grader also accepts a one-element tensor, since the number is what
is taught. Losses must be 0-d tensors that carry the gradient (the trainer backpropagates
them). The maths tests (tests/test_returns.py, ...) use the same hand-computed cases.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ... import diagnostics, kl, losses, returns
from .. import grading
from ..grading import Case, Exercise, Mistake, compare, register

T = torch.tensor


def _random(shape, seed, low=0.0, high=1.0, dtype=torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g, dtype=dtype)


def _dones(shape, seed, p=0.2) -> Tensor:
    return (_random(shape, seed) < p).float()


# ---------------------------------------------------------------------------------------
# diagnosing a wrong answer by the known mistake whose output it reproduces


@dataclass(frozen=True)
class Known:
    """A classic wrong answer.

    says: completes "this is what you get if ..." when a learner's output equals this
          answer's on a failing case (None: the answer is recognised otherwise, e.g. it
          raises, changes its inputs or has no gradient, and the case's hint names it).
    hint: the phrase the verdict shown for this answer contains (``Mistake.hint``).
    """

    description: str
    answer: Callable
    hint: str
    says: str | None = None


def mistakes_of(known: Sequence[Known]) -> list[Mistake]:
    return [Mistake(k.description, k.answer, k.hint) for k in known]


def _copy(value: Any) -> Any:
    """An independent copy: tensors cloned (keeping requires_grad, as leaves)."""
    if isinstance(value, Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _detached(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(v) for v in value)
    return value


_FAILED = object()


def _output(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """fn's output (detached) on copies of the inputs, or _FAILED if it raises."""
    try:
        with warnings.catch_warnings():  # a known mistake's warnings are not the learner's
            warnings.simplefilter("ignore")
            return _detached(fn(*_copy(args), **_copy(kwargs)))
    except Exception:
        return _FAILED


def _as_check_calls(reference: Callable, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments as ``check`` passes them to the learner (positionally, bound to the
    reference's signature), so that known mistakes are called the same way."""
    return grading.positional_arguments(reference, args, kwargs)


def _graded(reference: Callable, args: tuple, kwargs: dict, known: Sequence[Known],
            expected: Any = None, atol: float = 1e-5, rtol: float = 1e-4,
            then: Callable[[Any], str | None] | None = None,
            inputs_with_grad: Sequence[Tensor] = (), also: Sequence[Any] = ()
            ) -> Callable[[Any], str | None]:
    """A Case.verify: compare with the reference's output (or ``expected``) and, when they
    differ, name the known mistakes that give what the learner got. ``then(output)`` runs
    after the values match (e.g. a gradient check). ``inputs_with_grad``: the case's
    tensors that require grad (passed to the learner as they are), checked for in-place
    changes. ``also``: other outputs accepted as right (e.g. another std convention)."""
    args, kwargs = _as_check_calls(reference, args, kwargs)
    want = expected if expected is not None else _output(reference, args, kwargs)
    if want is _FAILED:
        raise ValueError("the reference raised on this case")
    snapshots = [(t, t.detach().clone()) for t in inputs_with_grad]

    def verify(got: Any) -> str | None:
        for tensor, snapshot in snapshots:
            if not torch.equal(tensor.detach(), snapshot):
                tensor.data.copy_(snapshot)  # for the cases that follow
                return ("your function changed its inputs in place: compute into new tensors "
                        "(`x = x * ...`, not `x *= ...` or `x[t] = ...`)")
        problem = compare(got, want, atol, rtol)
        if problem is None or any(compare(got, w, atol, rtol) is None for w in also):
            return then(got) if then is not None else None
        matches = []
        for k in known:
            if k.says is None or k.says in matches:
                continue
            theirs = _output(k.answer, args, kwargs)
            if theirs is _FAILED or any(compare(theirs, w, atol, rtol) is None
                                        for w in (want, *also)):
                continue
            try:
                same = compare(_detached(got), theirs, atol, rtol) is None
            except Exception:
                same = False
            if same:
                matches.append(k.says)
        if matches:
            problem += " (this is what you get if " + "; or if ".join(matches) + ")"
        return problem
    return verify


def _case(name: str, reference: Callable, args: tuple, kwargs: dict | None = None, *,
          hint: str, known: Sequence[Known] = (), expected: Any = None, atol: float = 1e-5,
          rtol: float = 1e-4, then: Callable | None = None,
          inputs_with_grad: Sequence[Tensor] = (), also: Sequence[Any] = ()) -> Case:
    kwargs = kwargs or {}
    return Case(name, args=args, kwargs=kwargs, hint=hint, atol=atol, rtol=rtol,
                verify=_graded(reference, args, kwargs, known, expected, atol, rtol, then,
                               inputs_with_grad, also))


def _from_a_network(values: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(leaf, output): ``output`` equals ``values`` but is a non-leaf tensor that requires
    grad, like a critic's values or a policy's log-probs; gradients reach ``leaf``."""
    leaf = values.detach().clone().requires_grad_(True)
    return leaf, leaf * 1.0


def _gradient_is(leaf: Tensor, want: Tensor, what: str, atol: float = 1e-6) -> Callable:
    """then-check: the output is a 0-d tensor whose gradient with respect to ``leaf`` (through
    the input computed from it) is ``want``."""
    def check(got: Any) -> str | None:
        if not isinstance(got, Tensor):
            return (f"expected a 0-d tensor that carries the gradient, got "
                    f"{type(got).__name__}: no .item() or float(), the trainer calls .backward()")
        if got.grad_fn is None:
            return (f"the result carries no gradient: keep it a tensor computed from {what} "
                    f"(no .item(), .detach(), .data or torch.tensor(...) on it)")
        (grad,) = torch.autograd.grad(got.sum(), leaf, allow_unused=True, retain_graph=True)
        grad = torch.zeros_like(leaf) if grad is None else grad
        if not torch.allclose(grad, want, atol=atol, rtol=1e-4):
            return (f"the values are right but the gradient is not: d result / d {what} is "
                    f"{[round(x, 4) for x in grad.flatten().tolist()]}, expected "
                    f"{[round(x, 4) for x in want.flatten().tolist()]}")
        return None
    return check


# ---------------------------------------------------------------------------------------
# discounted_returns(rewards, dones, gamma, last_values=None)

HINT_BACKWARDS = ("G_t = r_t + gamma * (1 - d_t) * G_{t+1}: loop backwards over time, "
                  "for t in reversed(range(T)), every step from T - 1 down to 0")
HINT_DONES = ("an episode ends at step 1: (1 - d_t) masks gamma * G_{t+1}, so no return "
              "flows across an episode boundary")
HINT_OWN_REWARD = ("the step that ends an episode still earns its own reward: "
                   "G_t = r_t + gamma * (1 - d_t) * G_{t+1} masks only the future term")
HINT_LAST = ("the return after the last step starts from G_T = last_values (the critic's "
             "estimate of the unfinished episode)")
HINT_DONE_LAST = ("the last step ended its episode, so nothing is bootstrapped past it: "
                  "G_{T-1} = r_{T-1} + gamma * (1 - d_{T-1}) * last_values")
HINT_TN = ("(T, N) inputs: time is axis 0 (len(rewards) = T); each step works on all N envs "
           "at once; last_values has one value per env, shape (N,); allocate with "
           "torch.zeros_like(rewards)")
HINT_NO_LAST = ("last_values=None on (T, N) rewards (as REINFORCE calls it): start from "
                "zeros with one value per env, torch.zeros_like(rewards[0])")
HINT_KEEP_SHAPE = ("one env (T, 1) or one step (1, N) is still a (T, N) rollout: keep the "
                   "shapes (no squeeze()); the result is shaped like rewards")


def _dr_loop(rewards, dones, gamma, last_values=None, *, steps=None, mask_next=False,
             mask_all=False, use_dones=True, use_last=True, time_axis=0):
    """discounted_returns with switches for the classic mistakes."""
    out = torch.zeros_like(rewards)
    n = rewards.shape[time_axis]
    g = torch.zeros_like(rewards[0]) if last_values is None or not use_last else last_values
    not_done = 1.0 - dones if use_dones else torch.ones_like(dones)
    for t in (reversed(range(n)) if steps is None else steps(n)):
        mask = not_done[t + 1] if mask_next and t + 1 < n else not_done[t]
        if mask_all:
            g = (rewards[t] + gamma * g) * mask
        else:
            g = rewards[t] + gamma * mask * g
        out[t] = g
    return out


def _dr_reversed_list(rewards, dones, gamma, last_values=None):
    g = torch.zeros_like(rewards[0]) if last_values is None else last_values
    out = []
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * (1 - dones[t]) * g
        out.append(g)
    return torch.stack(out)  # built from the last step backwards, never reversed


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



def _dr_squeezes(rewards, dones, gamma, last_values=None):
    rewards, dones = rewards.squeeze(), dones.squeeze()
    lv = None if last_values is None else torch.as_tensor(last_values).squeeze()
    return returns.discounted_returns(rewards, dones, gamma, lv)


def _dr_in_place(rewards, dones, gamma, last_values=None):
    nxt = torch.zeros_like(rewards[0]) if last_values is None else last_values
    for t in reversed(range(len(rewards))):
        rewards[t] += gamma * (1 - dones[t]) * nxt  # writes into the caller's rewards
        nxt = rewards[t]
    return rewards


DR_KNOWN = [
    Known("accumulates forwards in time", _dr_forward, "forwards in time",
          "you accumulate forwards in time: G_t sums the FUTURE rewards, loop from t = T - 1 "
          "down to 0"),
    Known("returns the list built backwards without reversing it", _dr_reversed_list,
          "reverse order", "your returns are in reverse order: you built them from the last "
          "step backwards, so reverse the list (or write into out[t])"),
    Known("loop over range(T - 1) skips the last step",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, steps=lambda n: reversed(range(n - 1))),
          "misses a step",
          "your loop misses a step: reversed(range(T)) visits every t from T - 1 down to 0 "
          "(range(T - 1) stops one short)"),
    Known("loop over range(T - 1, 0, -1) skips step 0",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, steps=lambda n: range(n - 1, 0, -1)),
          "misses a step",
          "your loop misses a step: range(T - 1, -1, -1) (or reversed(range(T))) ends at t = 0"),
    Known("masks the return instead of the recursion",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, mask_all=True),
          "still earns its own reward",
          "you multiply the whole return by (1 - d_t): the step that ended the episode still "
          "earns its own reward r_t, (1 - d_t) masks only gamma * G_{t+1}"),
    Known("masks with the next step's done (CleanRL's convention)",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, mask_next=True), "CleanRL",
          "you mask with d_{t+1}: here dones[t] = 1 means the transition at step t ended the "
          "episode, so mask with (1 - dones[t]) (in CleanRL dones[t + 1] marks that "
          "instead)"),
    Known("ignores episode ends", lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, use_dones=False),
          "ignore episode ends",
          "you ignore episode ends: multiply gamma * G_{t+1} by (1 - d_t) so that no return "
          "flows across an episode boundary"),
    Known("ignores last_values", lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, use_last=False),
          "ignore last_values",
          "you ignore last_values: the return after the last step starts from "
          "G_T = last_values"),
    Known("loops over the last axis (N for (T, N) inputs)",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, time_axis=-1), "time is axis 0",
          "you loop over the last axis: for (T, N) inputs rewards.shape[-1] is N, time is "
          "axis 0 (len(rewards) or rewards.shape[0])"),
    Known("works for (T,) only (Python floats)", _dr_only_1d, "(T, N) inputs"),
    Known("squeezes its inputs", _dr_squeezes, "no squeeze()"),
    Known("writes into the caller's rewards", _dr_in_place, "compute into new tensors"),
]


def discounted_returns_cases() -> list[Case]:
    def case(name, args, kwargs=None, *, hint, expected=None):
        return _case(name, returns.discounted_returns, args, kwargs, hint=hint, known=DR_KNOWN,
                     expected=expected)
    return [
        case("one episode, no ends, gamma 0.9", (T([1.0, 2.0, 3.0]), T([0.0, 0.0, 0.0]), 0.9),
             expected=T([5.23, 4.7, 3.0]), hint=HINT_BACKWARDS),
        case("gamma 0 gives the rewards", (T([1.0, 2.0, 3.0]), T([0.0, 0.0, 0.0]), 0.0),
             expected=T([1.0, 2.0, 3.0]), hint="with gamma = 0 only the immediate reward counts"),
        case("the step that ends an episode keeps its reward", (T([1.0, 2.0]), T([0.0, 1.0]), 0.5),
             expected=T([2.0, 2.0]), hint=HINT_OWN_REWARD),
        case("an episode ends at step 1", (T([1.0, 2.0, 3.0, 4.0]), T([0.0, 1.0, 0.0, 0.0]), 0.5),
             expected=T([2.0, 2.0, 5.0, 4.0]), hint=HINT_DONES),
        case("bootstrap from last_values", (T([1.0, 1.0]), T([0.0, 0.0]), 0.5),
             {"last_values": T(4.0)}, expected=T([2.5, 3.0]), hint=HINT_LAST),
        case("no bootstrap after an end at the last step", (T([1.0, 1.0]), T([0.0, 1.0]), 0.5),
             {"last_values": T(4.0)}, expected=T([1.5, 1.0]), hint=HINT_DONE_LAST),
        case("(T, N) = (6, 3) with episode ends and last_values (N,)",
             (_random((6, 3), 1, -1, 1), _dones((6, 3), 2, 0.3), 0.9),
             {"last_values": _random((3,), 3, 0, 5)}, hint=HINT_TN),
        case("(T, N) = (5, 4), last_values=None (as REINFORCE calls it)",
             (_random((5, 4), 4, 0, 1), torch.zeros(5, 4), 0.99), hint=HINT_NO_LAST),
        case("one env: (T, N) = (5, 1), last_values (1,)",
             (_random((5, 1), 5, -1, 1), T([[0.0], [1.0], [0.0], [0.0], [0.0]]), 0.9),
             {"last_values": T([2.0])}, hint=HINT_KEEP_SHAPE),
        case("one step: (T, N) = (1, 4), last_values (4,)",
             (T([[1.0, 2.0, 3.0, 4.0]]), T([[0.0, 1.0, 0.0, 1.0]]), 0.5),
             {"last_values": T([2.0, 2.0, 4.0, 4.0])}, expected=T([[2.0, 2.0, 5.0, 4.0]]),
             hint=HINT_KEEP_SHAPE),
    ]


register(Exercise(
    id="discounted_returns", lesson="00", title="Discounted returns with episode ends",
    cases=discounted_returns_cases, reference=returns.discounted_returns,
    mistakes=lambda: mistakes_of(DR_KNOWN)))


# ---------------------------------------------------------------------------------------
# gae(rewards, values, dones, last_values, gamma, gae_lambda) -> (advantages, returns)

HINT_GAE_CONST = ("rewards 1 and a constant V = 2 with gamma 0.5 (SB3's test): every "
                  "delta_t = 1 + 0.5 * 2 - 2 = 0, so advantages 0 and returns = advantages + "
                  "values = 2")
HINT_NEXT_STATE = ("with lambda = 0, A_t = delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t), "
                   "with values[t + 1] and last_values after the last step: [0.5, 2, 2] "
                   "here; returns = A + V")
HINT_GAE_LAST = "after the last step, bootstrap from V_T = last_values (here A_1 = 0.5 * 10)"
HINT_GAE_DONES = ("mask both places with (1 - d_t): the bootstrap gamma V_{t+1} in delta_t "
                  "AND the recursion gamma lambda A_{t+1}")
HINT_LAMBDA0 = "lambda = 0: A_t must equal delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t"
HINT_LAMBDA1 = ("lambda = 1: A_t must equal the discounted return minus V_t; gamma in both "
                "delta and the recursion")
HINT_GAMMA_LAMBDA = ("gamma discounts V_{t+1} in delta_t; the recursion uses gamma * lambda "
                     "(gamma 0.9, lambda 0.5 here)")
HINT_GAE_TN = ("(T, N) inputs: loop over time (axis 0) only, each step works on all N envs; "
               "last_values has shape (N,), one per env (no .item() or float())")


def _gae_loop(rewards, values, dones, last_values, gamma, gae_lambda, *, mask_delta=True,
              mask_recursion=True, same_state=False, bootstrap="last", add_values=True,
              delta_discount=None, recursion_discount=None, steps=None, mask_next=False,
              normalize=None, mask_next_recursion=False):
    """One GAE implementation with switches to introduce each classic mistake."""
    delta_discount = gamma if delta_discount is None else delta_discount
    recursion_discount = gamma * gae_lambda if recursion_discount is None else recursion_discount
    n = rewards.shape[0]
    not_done = 1.0 - dones
    if mask_next:  # CleanRL's convention read into ppo_lib's dones
        not_done = torch.cat([not_done[1:], not_done[-1:]])
    last = torch.as_tensor(last_values, dtype=values.dtype).reshape(values[0].shape)
    final = {"last": last, "zero": 0 * last, "first": values[0], "own": values[-1]}[bootstrap]
    next_values = torch.cat([values[1:], final.unsqueeze(0)])
    if same_state:
        next_values = values
    deltas = rewards + delta_discount * next_values * (not_done if mask_delta else 1) - values
    advantages = torch.zeros_like(rewards)
    a = torch.zeros_like(rewards[0])
    recursion_mask = torch.cat([not_done[1:], not_done[-1:]]) if mask_next_recursion else not_done
    for t in (reversed(range(n)) if steps is None else steps(n)):
        a = deltas[t] + recursion_discount * (recursion_mask[t] if mask_recursion else 1) * a
        advantages[t] = a
    rets = advantages + values if add_values else advantages
    if normalize is not None:
        normalized = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return normalized, (normalized + values if normalize == "both" else rets)
    return advantages, rets


def _gae_variant(**switches):
    return lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, **switches)


def _gae_reversed_list(rewards, values, dones, last_values, gamma, gae_lambda):
    advantages, _ = returns.gae(rewards, values, dones, last_values, gamma, gae_lambda)
    flipped = advantages.flip(0)  # appended from the last step backwards, never reversed
    return flipped, flipped + values


def _gae_monte_carlo_target(rewards, values, dones, last_values, gamma, gae_lambda):
    advantages, _ = returns.gae(rewards, values, dones, last_values, gamma, gae_lambda)
    return advantages, returns.discounted_returns(rewards, dones, gamma, last_values)


def _gae_only_1d(rewards, values, dones, last_values, gamma, gae_lambda):
    next_values = torch.cat([values[1:], torch.tensor([float(last_values)])])
    deltas = rewards + gamma * next_values * (1 - dones) - values
    advantages = torch.zeros_like(rewards)
    a = 0.0
    for t in reversed(range(len(rewards))):
        a = deltas[t] + gamma * gae_lambda * (1 - dones[t]) * a
        advantages[t] = a
    return advantages, advantages + values


def _gae_in_place(rewards, values, dones, last_values, gamma, gae_lambda):
    deltas = rewards  # not a copy: the writes below change the caller's rewards
    deltas += gamma * torch.cat([values[1:], last_values.reshape(1, *values.shape[1:])]) \
        * (1 - dones) - values
    a = torch.zeros_like(rewards[0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(len(rewards))):
        a = deltas[t] + gamma * gae_lambda * (1 - dones[t]) * a
        advantages[t] = a
    return advantages, advantages + values


GAE_KNOWN = [
    Known("returns only the advantages",
          lambda r, v, d, lv, g, lam: returns.gae(r, v, d, lv, g, lam)[0], "tuple of 2 values"),
    Known("forgets to add the values back (returns = advantages)", _gae_variant(add_values=False),
          "add the values back",
          "your returns are the advantages: add the values back, returns = advantages + "
          "values"),
    Known("Monte-Carlo returns as the critic's target", _gae_monte_carlo_target, "Monte-Carlo",
          "your returns are the Monte-Carlo discounted returns: the critic's target here is "
          "the lambda-return, returns = advantages + values"),
    Known("normalises the advantages inside gae", _gae_variant(normalize="advantages"),
          "normalise", "you normalise the advantages: gae returns them raw (PPO standardises "
          "each minibatch later)"),
    Known("normalises the advantages, and returns from them",
          _gae_variant(normalize="both"), "normalise",
          "you normalise the advantages: gae returns them raw (PPO standardises each "
          "minibatch later), and returns = raw advantages + values"),
    Known("returns the advantages built backwards without reversing them", _gae_reversed_list,
          "reverse order", "your advantages are in reverse order: you built them from the "
          "last step backwards, so reverse the list (or write into advantages[t])"),
    Known("loop over range(T - 1) skips the last step",
          _gae_variant(steps=lambda n: reversed(range(n - 1))), "misses a step",
          "your loop misses a step: reversed(range(T)) visits every t from T - 1 down to 0 "
          "(range(T - 1) stops one short)"),
    Known("bootstraps from V(s_t) instead of V(s_{t+1})", _gae_variant(same_state=True),
          "bootstrap from V(s_t)",
          "you bootstrap from V(s_t): delta_t uses the NEXT state's value V(s_{t+1}) "
          "(values[t + 1], and last_values after the last step)"),
    Known("ignores last_values", _gae_variant(bootstrap="zero"), "ignore last_values",
          "you ignore last_values: after the last step bootstrap from V_T = last_values"),
    Known("torch.roll for the next values (wraps values[0] around)",
          _gae_variant(bootstrap="first"), "wraps around",
          "your next value after the last step is values[0] (torch.roll wraps around): use "
          "last_values there"),
    Known("bootstraps the last step from values[-1]", _gae_variant(bootstrap="own"),
          "values[-1]",
          "your next value after the last step is V(s_{T-1}) = values[-1]: use last_values "
          "there"),
    Known("ignores episode ends", _gae_variant(mask_delta=False, mask_recursion=False),
          "ignore episode ends",
          "you ignore episode ends: mask both the bootstrap gamma V_{t+1} and the recursion "
          "with (1 - d_t)"),
    Known("masks the TD error but not the recursion", _gae_variant(mask_recursion=False),
          "but not the recursion",
          "you mask the TD error but not the recursion: gamma * lambda * A_{t+1} also needs "
          "(1 - d_t)"),
    Known("masks the recursion but not the TD error", _gae_variant(mask_delta=False),
          "but not the bootstrap",
          "you mask the recursion but not the bootstrap: gamma * V_{t+1} in delta_t also "
          "needs (1 - d_t)"),
    Known("masks with the next step's done (CleanRL's convention)", _gae_variant(mask_next=True),
          "CleanRL",
          "you mask with d_{t+1}: here dones[t] = 1 means the transition at step t ended the "
          "episode, so mask with (1 - dones[t]) (in CleanRL dones[t + 1] marks that "
          "instead)"),
    Known("masks the recursion with the next step's done", _gae_variant(mask_next_recursion=True),
          "CleanRL",
          "your recursion is masked with d_{t+1}: here dones[t] = 1 means the transition at "
          "step t ended the episode, so both masks use (1 - dones[t]) (in CleanRL "
          "dones[t + 1] marks that instead)"),
    Known("lambda discounts V_{t+1} in delta (gamma and lambda swapped)",
          lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, delta_discount=lam),
          "gamma discounts V_{t+1}",
          "lambda discounts V_{t+1} in your delta: gamma discounts V_{t+1}, lambda only "
          "enters the recursion (gamma * lambda)"),
    Known("recursion without lambda",
          lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, recursion_discount=g),
          "without lambda",
          "your recursion is without lambda: A_t = delta_t + gamma * lambda * (1 - d_t) * "
          "A_{t+1}"),
    Known("recursion without gamma",
          lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, recursion_discount=lam),
          "without gamma",
          "your recursion is without gamma: A_t = delta_t + gamma * lambda * (1 - d_t) * "
          "A_{t+1}"),
    Known("works for (T,) only (float(last_values))", _gae_only_1d, "one per env"),
    Known("writes the TD errors into the caller's rewards", _gae_in_place,
          "compute into new tensors"),
]


def gae_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return _case(name, returns.gae, args, hint=hint, known=GAE_KNOWN, expected=expected)
    ones = torch.ones(4)
    return [
        case("constant V = 2, rewards 1, no ends, last V = 2, gamma 0.5, lambda 1",
             (ones, 2 * ones, 0 * ones, T(2.0), 0.5, 1.0),
             expected=(torch.zeros(4), 2 * ones), hint=HINT_GAE_CONST),
        case("lambda = 0, gamma 1: A_t = delta_t, with V(s_{t+1})",
             (T([0.0, 1.0, 1.0]), T([0.5, 1.0, 2.0]), torch.zeros(3), T(3.0), 1.0, 0.0),
             expected=(T([0.5, 2.0, 2.0]), T([1.0, 3.0, 4.0])), hint=HINT_NEXT_STATE),
        case("last_values bootstraps the last step",
             (torch.zeros(2), torch.zeros(2), torch.zeros(2), T(10.0), 0.5, 1.0),
             expected=(T([2.5, 5.0]), T([2.5, 5.0])), hint=HINT_GAE_LAST),
        case("an episode ends at step 1 (rewards 1, V = 1, gamma 0.5, lambda 1)",
             (torch.ones(3), torch.ones(3), T([0.0, 1.0, 0.0]), T(1.0), 0.5, 1.0),
             expected=(T([0.5, 0.0, 0.5]), T([1.5, 1.0, 1.5])), hint=HINT_GAE_DONES),
        case("lambda = 0 gives delta", (_random(5, 11, -1, 1), _random(5, 12), _dones(5, 13, 0.3),
                                        T(0.7), 0.9, 0.0), hint=HINT_LAMBDA0),
        case("lambda = 1 gives the discounted return minus V",
             (_random(5, 21, -1, 1), _random(5, 22), _dones(5, 23, 0.3), T(0.7), 0.9, 1.0),
             hint=HINT_LAMBDA1),
        case("gamma 0.9, lambda 0.5 (not interchangeable)",
             (_random(6, 31, -1, 1), _random(6, 32, 0, 2), T([0.0, 0, 1, 0, 0, 0]),
              T(1.5), 0.9, 0.5), hint=HINT_GAMMA_LAMBDA),
        case("(T, N) = (7, 4) with episode ends, last_values (N,)",
             (_random((7, 4), 41, -1, 1), _random((7, 4), 42), _dones((7, 4), 43, 0.25),
              _random(4, 44, 0, 2), 0.99, 0.95), hint=HINT_GAE_TN),
        case("one env: (T, N) = (6, 1), last_values (1,)",
             (_random((6, 1), 51, -1, 1), _random((6, 1), 52), _dones((6, 1), 53, 0.3),
              T([0.5]), 0.9, 0.8), hint=HINT_KEEP_SHAPE),
        case("one step: (T, N) = (1, 3), last_values (3,)",
             (T([[1.0, 0.5, 2.0]]), T([[0.5, 1.0, 1.5]]), T([[0.0, 1.0, 0.0]]),
              T([1.0, 2.0, 3.0]), 0.9, 0.95), hint=HINT_KEEP_SHAPE),
    ]


register(Exercise(
    id="gae", lesson="04", title="Generalised Advantage Estimation",
    cases=gae_cases, reference=returns.gae, mistakes=lambda: mistakes_of(GAE_KNOWN)))


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
        return _case(name, kl.kl_categorical, args, hint=hint, known=KL_KNOWN, expected=expected)
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
             (torch.softmax(_random((4, 5), 61, -2, 2), -1), torch.softmax(_random((4, 5), 62, -2, 2), -1)),
             hint="reduce over the last axis only: the result has shape (B,)"),
        case("a batch of one: (1, A) gives shape (1,)",
             (torch.softmax(_random((1, 5), 63, -2, 2), -1), torch.softmax(_random((1, 5), 64, -2, 2), -1)),
             hint="a batch of one row is still a batch: keep the shapes (no squeeze())"),
        case("(T, N, A) = (3, 2, 4): the KL over the last axis, shape (3, 2)",
             (torch.softmax(_random((3, 2, 4), 65, -2, 2), -1),
              torch.softmax(_random((3, 2, 4), 66, -2, 2), -1)),
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
    m = _random((n, n), seed, -1, 1, dtype=torch.float64)
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
        return _case(name, _conjugate_gradient, args, kwargs, hint=hint, known=CG_KNOWN,
                     expected=expected, atol=atol)
    a2 = T([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    a5 = _spd(5, 71)
    a8 = _spd(8, 72)
    b5 = _random(5, 73, -1, 1, dtype=torch.float64)
    b8 = _random(8, 74, -1, 1, dtype=torch.float64)
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
# clipped_surrogate_loss(ratio, advantages, clip_range)

def _clamp(r, eps):
    return torch.clamp(r, 1 - eps, 1 + eps)


def _surrogate(r, a, eps):
    return torch.min(r * a, _clamp(r, eps) * a)


def _csl_normalizes(r, a, eps):
    a = (a - a.mean()) / (a.std() + 1e-8)
    return -_surrogate(r, a, eps).mean()


ITEM_SAYS = ("you return a Python number: return the loss tensor (no .item() or float()), the "
             "trainer calls .backward() on it")
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
          "sign is flipped", "you return the objective: the loss to minimise is -mean(min(...))"),
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
    return _case(name, losses.clipped_surrogate_loss, (ratio, advantages, eps), hint=hint,
                 known=CSL_KNOWN, then=_gradient_is(leaf, want, "ratio (through log pi)"),
                 inputs_with_grad=[ratio])


def clipped_surrogate_loss_cases() -> list[Case]:
    def case(name, args, *, hint):
        return _case(name, losses.clipped_surrogate_loss, args, hint=hint, known=CSL_KNOWN)

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
             hint=("return the LOSS -mean(min(...)) (the objective with a minus sign), averaged "
                   "with .mean(), not .sum()")),
        case("clip_range is an argument (0.1 here)", (T([1.15, 0.85]), T([1.0, -1.0]), 0.1),
             hint="use clip_range, not a hard-coded 0.2"),
        case("ratios just inside and outside 0.8 and 1.2: 0.79, 0.81, 0.82, 1.19, 1.21",
             (T([0.79, 0.81, 0.82, 1.19, 1.21, 0.79, 0.81, 0.82, 1.19, 1.21]),
              T([-1.0, -1.0, -1.0, 1.0, 1.0, 2.0, 2.0, -2.0, -2.0, -2.0]), 0.2),
             hint="the bounds are 1 - eps = 0.8 and 1 + eps = 1.2 on r itself: "
                  "torch.clamp(ratio, 1 - clip_range, 1 + clip_range)"),
        case("(T, N) = (4, 3): the mean over every entry", (_random((4, 3), 91, 0.6, 1.4),
                                                             _random((4, 3), 92, -2, 2), 0.2),
             hint="one scalar: .mean() over every entry (ratio.numel() of them, not len(ratio))"),
        _csl_grad_case("gradient through ratio = exp(log pi - log pi_old): zero where clipped",
                       torch.log(T([0.5, 1.0, 1.5, 0.5, 1.0, 1.5, 1.1, 0.9])), torch.zeros(8),
                       T([2.0, 2.0, 2.0, -1.0, -1.0, -1.0, 0.5, -0.5]), 0.2,
                       hint="the gradient must flow through ratio: no .item()/.detach() and no "
                            "in-place changes; torch.min and torch.clamp give exactly the zero "
                            "gradients PPO needs"),
        _csl_grad_case("(T, N) = (3, 2) ratio from a policy, with its gradient",
                       torch.log(_random((3, 2), 93, 0.6, 1.4)), torch.zeros(3, 2),
                       _random((3, 2), 94, -2, 2), 0.2,
                       hint="the mean over every entry, and the gradient flows through ratio"),
        Case("a batch of one that requires grad (as lesson 03 uses it)",
             args=(leaf_one, T([2.0]), 0.2),
             verify=_graded(losses.clipped_surrogate_loss, (leaf_one, T([2.0]), 0.2), {},
                            CSL_KNOWN, then=_gradient_is(leaf_one, T([-2.0]), "ratio"),
                            inputs_with_grad=[leaf_one]),
             hint="a 0-d loss from a (1,) ratio; d loss / d r = -A inside the range"),
    ]


register(Exercise(
    id="clipped_surrogate_loss", lesson="03", title="PPO's clipped surrogate loss",
    cases=clipped_surrogate_loss_cases, reference=losses.clipped_surrogate_loss,
    mistakes=lambda: mistakes_of(CSL_KNOWN)))


# ---------------------------------------------------------------------------------------
# value_loss(values, returns, old_values=None, clip_range_vf=None)

HINT_SB3_CLIP = ("SB3's form: clip the PREDICTION, V_clipped = old_values + clamp(values - "
                 "old_values, -clip_range_vf, clip_range_vf), then the plain MSE of the clipped "
                 "one, mean((returns - V_clipped) ** 2)")


def _vl_clip(values, old_values, eps):
    return old_values + torch.clamp(values - old_values, -eps, eps)


def _vl_max_form(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    clipped = _vl_clip(values, old_values, clip_range_vf)
    return torch.max((returns - values) ** 2, (returns - clipped) ** 2).mean()


def _vl_plain(values, returns, old_values=None, clip_range_vf=None):
    return ((returns - values) ** 2).mean()


def _vl_with(transform):
    """value_loss with SB3's clipping, the final reduction replaced by ``transform``."""
    def loss(values, returns, old_values=None, clip_range_vf=None):
        if clip_range_vf is not None:
            values = _vl_clip(values, old_values, clip_range_vf)
        return transform(values, returns)
    return loss


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


def _vl_fixed_eps(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is not None:
        values = _vl_clip(values, old_values, 0.2)
    return ((returns - values) ** 2).mean()


def _vl_clamps_in_place(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is not None:
        values.sub_(old_values).clamp_(-clip_range_vf, clip_range_vf).add_(old_values)
    return ((returns - values) ** 2).mean()


def _vl_flag_off(values, returns, old_values=None, clip_range_vf=None):
    values.requires_grad_(False)  # changes the caller's tensor; raises on a critic's output
    return losses.value_loss(values, returns, old_values, clip_range_vf)


VL_KNOWN = [
    Known("with a 1/2 factor", lambda *a: 0.5 * losses.value_loss(*a), "no 1/2 factor",
          "you multiply by 1/2: SB3's value loss is the plain MSE, no 1/2 factor"),
    Known("mean absolute error", _vl_with(lambda v, r: (r - v).abs().mean()), "squared",
          "you take the absolute error: the loss is the mean of the squared errors"),
    Known("root mean squared error", _vl_with(lambda v, r: ((r - v) ** 2).mean().sqrt()),
          "no square root", "you take the square root: the loss is the mean squared error "
          "itself (no square root)"),
    Known("sum instead of mean", _vl_with(lambda v, r: ((r - v) ** 2).sum()), "not .sum()",
          "you sum the squared errors: average with .mean() (not .sum())"),
    Known("divides the sum by len(values)", _vl_with(lambda v, r: ((r - v) ** 2).sum() / len(v)),
          "len(values)", "you divide by len(values), which is T for (T, N) inputs: .mean() "
          "averages over every entry"),
    Known("max of clipped and unclipped errors (CleanRL / baselines form)", _vl_max_form,
          "CleanRL",
          "you take the max of the clipped and unclipped squared errors, the CleanRL / OpenAI "
          "baselines form: this exercise asks for SB3's form, which clips the prediction and "
          "takes the plain MSE of the clipped one, mean((returns - V_clipped) ** 2), even "
          "where clipping lowers the error"),
    Known("clips the loss, not the prediction", _vl_clips_the_loss, "clip the PREDICTION",
          "you clip the loss: clip the PREDICTION to old_values +- clip_range_vf, then take "
          "the MSE"),
    Known("ignores old_values (clips around 0)", _vl_clips_around_zero, "around old_values",
          "you clip the values around 0: clip them around old_values, old_values + "
          "clamp(values - old_values, -c, c)"),
    Known("never clips", _vl_plain, "never clip",
          "you never clip: with clip_range_vf given, use V_clipped = old_values + "
          "clamp(values - old_values, -c, c)"),
    Known("clips the returns instead of the values", _vl_clips_the_returns, "clip the returns",
          "you clip the returns: clip the PREDICTION (values) around old_values, the target "
          "stays as it is"),
    Known("hard-coded clip_range_vf = 0.2", _vl_fixed_eps, "use clip_range_vf",
          "your clip range stays 0.2: use clip_range_vf"),
    Known("returns a float (.item())", lambda *a: losses.value_loss(*a).item(), "no .item()",
          ITEM_SAYS),
    Known("detaches the values (the critic gets no gradient)",
          _vl_with(lambda v, r: ((r - v.detach()) ** 2).mean()), "carries no gradient"),
    Known("clamps the caller's values in place", _vl_clamps_in_place, "in place"),
    Known("turns off requires_grad on the caller's values", _vl_flag_off, "requires_grad_(False)"),
]


def _vl_grad_case(name: str, values: Tensor, rets: Tensor, old: Tensor | None,
                  eps: float | None, hint: str) -> Case:
    """values from a critic (non-leaf, requires grad); the gradient is checked."""
    leaf, critic_values = _from_a_network(values)
    r = values.detach().clone().requires_grad_(True)
    (want,) = torch.autograd.grad(losses.value_loss(r, rets, old, eps), r)
    kwargs = {} if eps is None else {"old_values": old, "clip_range_vf": eps}
    return _case(name, losses.value_loss, (critic_values, rets), kwargs, hint=hint,
                 known=VL_KNOWN, then=_gradient_is(leaf, want, "values"),
                 inputs_with_grad=[critic_values])


def value_loss_cases() -> list[Case]:
    def case(name, args, kwargs=None, *, hint, expected=None):
        return _case(name, losses.value_loss, args, kwargs, hint=hint, known=VL_KNOWN,
                     expected=expected)
    values = T([1.0, 2.0, 3.0, 0.0])
    rets = T([2.0, 2.0, 1.0, 1.0])
    old = T([0.5, 2.5, 3.1, 0.0])
    return [
        case("mean squared error", (values, rets), expected=T(1.5),
             hint="mean((returns - values) ** 2): SB3's form, with no 1/2 factor"),
        case("clip_range_vf=None means no clipping", (values, rets),
             {"old_values": old, "clip_range_vf": None}, expected=T(1.5),
             hint="without clip_range_vf, old_values is not used"),
        case("clip the prediction around old_values", (values, rets),
             {"old_values": old, "clip_range_vf": 0.2}, hint=HINT_SB3_CLIP),
        case("SB3's form where clipping LOWERS the error (not the max of both)",
             (T([3.0, 1.0, 2.0]), T([2.5, 1.5, 0.0])),
             {"old_values": T([2.0, 2.0, 2.1]), "clip_range_vf": 0.2},
             expected=T((0.3 ** 2 + 0.3 ** 2 + 2.0 ** 2) / 3),
             hint=HINT_SB3_CLIP + " (SB3 does not take the max of the clipped and unclipped "
                  "errors as CleanRL does)"),
        case("clipping is relative to old_values", (T([5.0, -5.0]), T([4.0, -4.0])),
             {"old_values": T([4.5, -4.5]), "clip_range_vf": 0.1},
             hint="the clip range is centred on old_values, not on 0"),
        case("clip_range_vf is an argument (0.5 here)", (T([1.0, 3.0]), T([0.0, 4.0])),
             {"old_values": T([2.0, 2.0]), "clip_range_vf": 0.5},
             hint="use clip_range_vf, not a hard-coded 0.2"),
        case("(T, N) = (4, 3): the mean over every entry",
             (_random((4, 3), 101, -1, 1), _random((4, 3), 102, -1, 1)),
             hint="one scalar: .mean() over every entry, not len(values)"),
        _vl_grad_case("gradient: values from a critic (requires grad)",
                      T([1.0, 2.0, 3.0]), T([2.0, 1.0, 3.5]), None, None,
                      hint="the loss must carry the gradient to the critic's values: no "
                           ".item() or .detach(), no in-place changes, and no "
                           "requires_grad_(False) (it changes the caller's tensor, and raises "
                           "on a critic's output)"),
        _vl_grad_case("gradient with clipping: zero where the prediction is clipped",
                      T([3.0, 1.0, 2.05, 0.0]), T([2.5, 1.5, 0.0, 1.0]),
                      T([2.0, 2.0, 2.1, 0.1]), 0.2,
                      hint=HINT_SB3_CLIP + "; clamp gives zero gradient where it clips, and "
                           "nothing may change the caller's values in place"),
        _vl_grad_case("a batch of one from a critic", T([0.5]), T([2.0]), None, None,
                      hint="a (1,) batch gives a 0-d loss with its gradient"),
    ]


register(Exercise(
    id="value_loss", lesson="04",
    title="The critic's loss, SB3's form: mean((returns - V)^2), V clipped to "
          "old_values +- clip_range_vf when given",
    cases=value_loss_cases, reference=losses.value_loss, mistakes=lambda: mistakes_of(VL_KNOWN)))


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
        return _case(name, kl.approx_kl, args, hint=hint, known=AKL_KNOWN, expected=expected)
    return [
        case("the same policy: log r = 0 gives 0", (torch.zeros(4),), expected=T(0.0),
             hint="(r - 1) - log r with r = exp(0) = 1 is 0"),
        case("a known value", (T([0.5, -0.5]),), expected=T(0.1276260),
             hint="k3: mean((r - 1) - log r) with r = exp(log_ratio)"),
        case("never negative, on 1000 samples", (_random(1000, 81, -0.3, 0.3),),
             hint="r = exp(log_ratio) (not log_ratio itself); the log of r is log_ratio"),
        case("(T, N) = (4, 3): the mean over every entry", (_random((4, 3), 82, -0.5, 0.5),),
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
        return _case(name, diagnostics.clip_fraction, args, hint=hint, known=CF_KNOWN,
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
        return _case(name, diagnostics.explained_variance, args, hint=hint, known=EV_KNOWN,
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
