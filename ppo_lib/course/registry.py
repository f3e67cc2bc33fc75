"""The exercise registry: what an exercise is (its cases, reference and classic mistakes),
the verdict ``check`` gives, and ``register``. Every module of ``ppo_lib/course/exercises/``
registers its exercises here, so what is graded is what is tested."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RESULTS_ENV = "PPO_GRADE_RESULTS"
NBGRADER_ENV = "NBGRADER_EXECUTION"
NOT_DONE = "not done yet"


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
    """A classic wrong answer that ``check`` must reject (used by the tests).

    hint: a phrase that the hint ``check`` shows for this answer must contain, so that the
          first failing case names the mistake actually made (tests/test_exercises_all.py).
    """

    description: str
    answer: Any  # a wrong function (kind "function") or a wrong value (kind "value")
    hint: str = ""


@dataclass
class Exercise:
    id: str
    lesson: str                      # "00" ... "09"
    title: str
    cases: Callable[[], Sequence[Case]]
    reference: Any = None            # the library function (or right answer) it grades
    mistakes: Callable[[], Sequence[Mistake]] = lambda: ()
    kind: str = "function"           # "function": answer is called; "value": answer is data
    timeout: float = 10.0            # seconds for all the learner's calls together


@dataclass
class Verdict:
    exercise_id: str
    passed: bool
    message: str
    hint: str = ""

    @property
    def status(self) -> str:
        if self.passed:
            return "passed"
        return NOT_DONE if self.message.startswith(NOT_DONE) else "failed"

    def text(self) -> str:
        """The verdict as printed: one line, plus a hint line when there is a hint."""
        line = f"✓ {self.exercise_id}: passed" if self.passed else f"✗ {self.exercise_id}: {self.message}"
        return line + (f"\n  hint: {self.hint}" if self.hint else "")

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:  # plain text in a notebook
        return self.text()

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else ("#9a6700" if self.status == NOT_DONE else "#cf222e")
        first, *rest = self.text().split("\n")
        hint = "".join(f"<div style='margin-left:1.5em'>{html.escape(r.strip())}</div>"
                       for r in rest)
        return (f"<div class='ppo-verdict' style='font-family:monospace;color:{color}'>"
                f"<b>{html.escape(first)}</b>{hint}</div>")


class CheckResult:
    """What ``check`` returns: ``bool(result)`` is the verdict, ``result.verdict`` the
    details. ``check`` has already shown the verdict, so a check cell's value shows nothing
    more (no ``Out: True``; nbgrader wants no non-float output from a test cell)."""

    def __init__(self, verdict: Verdict):
        self.verdict = verdict

    def __bool__(self) -> bool:
        return self.verdict.passed

    def __eq__(self, other: object) -> bool:  # check(...) == True keeps working
        if isinstance(other, bool):
            return self.verdict.passed == other
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return self.verdict.text()

    def _ipython_display_(self) -> None:
        """Shown already by ``check`` itself."""


EXERCISES: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    if exercise.kind not in ("function", "value"):
        raise ValueError(f"exercise {exercise.id!r}: kind must be 'function' or 'value', "
                         f"got {exercise.kind!r}")
    EXERCISES[exercise.id] = exercise
    return exercise


def load_exercises() -> None:
    """Import every module of ``ppo_lib/course/exercises/`` (each registers its exercises)."""
    from . import exercises  # noqa: F401
