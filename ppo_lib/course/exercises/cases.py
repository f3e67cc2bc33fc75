"""What the exercises of every lesson are built from: a case graded against the library's
reference (``graded_case``), and the classic wrong answers (``Known``, ``mistakes_of``).

Each exercise grades a function with the library's name and signature against the
library's reference. The cases use the shapes the course passes: ``(T, N)`` rollouts and a
batch of one as well as 1-D examples, and non-leaf tensors that require grad where the course
passes a critic's or a policy's output (losses are then checked for their gradient too:
``from_a_network``, ``gradient_is``).

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

from ..grading import Case, Mistake, compare, positional_arguments
from ..running import snapshot

T = torch.tensor  # short constructor for the cases


# shared by the messages of several exercises
ITEM_SAYS = ("you return a Python number: return the loss tensor (no .item() or float()), the "
             "trainer calls .backward() on it")
HINT_KEEP_SHAPE = ("one env (T, 1) or one step (1, N) is still a (T, N) rollout: keep the "
                   "shapes (no squeeze()); the result is shaped like rewards")


def uniform(shape, seed, low=0.0, high=1.0, dtype=torch.float32) -> Tensor:
    """Seeded uniform values in [low, high)."""
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g, dtype=dtype)


def random_dones(shape, seed, p=0.2) -> Tensor:
    return (uniform(shape, seed) < p).float()


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


def not_done_yet(*args: Any, **kwargs: Any) -> Any:
    """An unfinished answer, as the lessons' stubs (a Mistake whose hint is "not done yet")."""
    raise NotImplementedError()


def mistakes_of(known: Sequence[Known]) -> list[Mistake]:
    return [Mistake(k.description, k.answer, k.hint) for k in known]


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
            return _detached(fn(*snapshot(args), **snapshot(kwargs)))
    except Exception:
        return _FAILED


def _as_check_calls(reference: Callable, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments as ``check`` passes them to the learner (positionally, bound to the
    reference's signature), so that known mistakes are called the same way."""
    return positional_arguments(reference, args, kwargs)


def verify_like_reference(reference: Callable, args: tuple, kwargs: dict, known: Sequence[Known],
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


def graded_case(name: str, reference: Callable, args: tuple, kwargs: dict | None = None, *,
               hint: str, known: Sequence[Known] = (), expected: Any = None, atol: float = 1e-5,
               rtol: float = 1e-4, then: Callable | None = None,
               inputs_with_grad: Sequence[Tensor] = (), also: Sequence[Any] = ()) -> Case:
    kwargs = kwargs or {}
    return Case(name, args=args, kwargs=kwargs, hint=hint, atol=atol, rtol=rtol,
                verify=verify_like_reference(reference, args, kwargs, known, expected, atol,
                                             rtol, then, inputs_with_grad, also))


def from_a_network(values: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(leaf, output): ``output`` equals ``values`` but is a non-leaf tensor that requires
    grad, like a critic's values or a policy's log-probs; gradients reach ``leaf``."""
    leaf = values.detach().clone().requires_grad_(True)
    return leaf, leaf * 1.0


def gradient_is(leaf: Tensor, want: Tensor, what: str, atol: float = 1e-6) -> Callable:
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
