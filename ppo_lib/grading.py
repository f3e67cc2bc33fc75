"""Graded exercises: ``check(exercise_id, fn)`` runs an exercise's cases on a learner's answer.

Each exercise is registered once (in ``ppo_lib/exercises/``) with its reference, its cases
and the classic wrong versions (``Mistake``) that the tests prove ``check`` rejects, so what
is graded is what is tested. ``check`` never raises: an unfinished stub, an exception, a
wrong shape or type, or a run past the time limit is a failed check with a message.

Skeleton: the contract (Case, Mistake, Exercise, register, check, use, summary) is fixed;
the tooling issue hardens the internals (time limits, nbgrader, grade.py results).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Case:
    """One graded call. The learner's ``fn(*args, **kwargs)`` is compared with the
    reference's output (or ``expected``), or judged by ``verify``.

    hint:   shown when this case fails; names the mistake this case is designed to catch.
    verify: for answers that are not compared with a reference: ``verify(output)`` returns
            None when right, or a message saying what is wrong. For exercises of kind
            "value" the output is the learner's answer itself.
    """

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    hint: str = ""
    expected: Any = None
    verify: Callable[[Any], str | None] | None = None
    atol: float = 1e-5
    rtol: float = 1e-4


@dataclass(frozen=True)
class Mistake:
    """A classic wrong answer that ``check`` must reject (used by the tests)."""

    description: str
    answer: Any  # a wrong function (kind "function") or a wrong value (kind "value")


@dataclass
class Exercise:
    id: str
    lesson: str                      # "00" ... "09"
    title: str
    cases: Callable[[], Sequence[Case]]
    reference: Any = None            # the library function (or right answer) it grades
    mistakes: Callable[[], Sequence[Mistake]] = lambda: ()
    kind: str = "function"           # "function": answer is called; "value": answer is data
    timeout: float = 10.0            # seconds for all cases together


@dataclass
class Verdict:
    exercise_id: str
    passed: bool
    message: str


EXERCISES: dict[str, Exercise] = {}
RESULTS: dict[str, Verdict] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    EXERCISES[exercise.id] = exercise
    return exercise


def _load_exercises() -> None:
    from . import exercises  # noqa: F401  (registers every module in ppo_lib/exercises)


def compare(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when ``got`` matches ``want``, else what differs (shape, type or values)."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        if got.shape != want.shape:
            return f"expected shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
        if not torch.allclose(got.double(), want.double(), atol=atol, rtol=rtol,
                              equal_nan=True):
            return f"expected {want}, got {got}"
        return None
    if isinstance(want, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected a tuple of {len(want)} values, got {type(got).__name__}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, atol, rtol)
            if problem:
                return f"item {i}: {problem}"
        return None
    if isinstance(want, float):
        try:
            g = float(got)
        except (TypeError, ValueError):
            return f"expected a number, got {type(got).__name__}"
        if math.isnan(want) and math.isnan(g):
            return None
        if not math.isclose(g, want, rel_tol=rtol, abs_tol=atol):
            return f"expected {want:.6g}, got {g:.6g}"
        return None
    return None if got == want else f"expected {want!r}, got {got!r}"


def check(exercise_id: str, fn: Any) -> bool:
    """Run the exercise's cases on ``fn``, print a short verdict with a hint, never raise."""
    _load_exercises()
    if exercise_id not in EXERCISES:
        print(f"✗ {exercise_id}: no exercise has this id (known: {', '.join(sorted(EXERCISES))})")
        return False
    exercise = EXERCISES[exercise_id]
    message = None
    try:
        for case in exercise.cases():
            if exercise.kind == "value":
                got = fn
            else:
                got = fn(*case.args, **case.kwargs)
            if case.verify is not None:
                problem = case.verify(got)
            else:
                want = case.expected
                if want is None:
                    want = exercise.reference(*case.args, **case.kwargs)
                problem = compare(got, want, case.atol, case.rtol)
            if problem:
                message = f"case '{case.name}': {problem}" + (f"\n  hint: {case.hint}" if case.hint else "")
                break
    except NotImplementedError:
        message = "not done yet: replace `raise NotImplementedError()` with your code"
    except Exception as exc:  # the learner's error, reported, never raised
        message = f"your function raised {type(exc).__name__}: {exc}"
    passed = message is None
    RESULTS[exercise_id] = Verdict(exercise_id, passed, message or "passed")
    print(f"✓ {exercise_id}: passed" if passed else f"✗ {exercise_id}: {message}")
    return passed


def use(exercise_id: str, fn: Any) -> Any:
    """The learner's answer if its check passed, else the library's reference (with a note),
    so that later cells of a lesson work before the exercise is done."""
    verdict = RESULTS.get(exercise_id)
    if verdict is None:
        check(exercise_id, fn)
        verdict = RESULTS[exercise_id]
    if verdict.passed:
        return fn
    print(f"(using ppo_lib's reference for {exercise_id} until your version passes)")
    return EXERCISES[exercise_id].reference


def summary(lesson: str | None = None) -> list[Verdict]:
    """Print (and return) the state of the exercises of one lesson, or of all."""
    _load_exercises()
    rows = []
    for ex in EXERCISES.values():
        if lesson is not None and ex.lesson != lesson:
            continue
        verdict = RESULTS.get(ex.id, Verdict(ex.id, False, "not checked yet"))
        rows.append(verdict)
        print(f"{'✓' if verdict.passed else '✗'} {ex.id:28s} {verdict.message.splitlines()[0]}")
    return rows
