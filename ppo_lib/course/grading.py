"""Graded exercises: ``check(exercise_id, fn)`` runs an exercise's cases on a learner's answer.

Each exercise is registered once (in ``ppo_lib/course/exercises/``) with its reference, its cases
and the classic wrong versions (``Mistake``) that the tests prove ``check`` rejects, so what
is graded is what is tested.

``check`` never raises and leaves the kernel as it found it: an unfinished stub, an
exception, a wrong shape or type, an answer that modifies its inputs, or a run past the
time limit is a failed check with a one-line message and a hint. The one exception is
nbgrader: when ``NBGRADER_EXECUTION`` is set (``nbgrader autograde`` sets it), a failed
check raises ``AssertionError`` so that nbgrader scores the test cell as failed.

When ``PPO_GRADE_RESULTS`` names a file, every verdict is also appended to it as one JSON
line (a log for the learner's own tools). ``python -m ppo_lib.grade`` neither sets nor reads
it: any code in the notebook could append to it, so the grader checks each answer itself,
with a freshly loaded copy of this module (see ``ppo_lib.course.grade``).
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from .comparing import compare, positional_arguments
from .kernel_state import KernelState
from .notebook import in_notebook
from .registry import (EXERCISES, NBGRADER_ENV, NOT_DONE, RESULTS_ENV, Case, CheckResult,
                       Exercise, Mistake, Verdict, load_exercises, register)
from .running import run_cases, safe_str
from .time_limit import CTRL_C, CheckTimeout, NoticeCtrlC, call_with_time_limit

__all__ = ["EXERCISES", "NBGRADER_ENV", "NOT_DONE", "RESULTS", "RESULTS_ENV", "Case",
           "CheckResult", "CheckTimeout", "Exercise", "Mistake", "Summary", "Verdict",
           "call_with_time_limit", "check", "compare", "load_exercises",
           "positional_arguments", "register", "report", "summary", "use"]

RESULTS: dict[str, Verdict] = {}  # the latest verdict of each exercise checked in this kernel


def report(verdict: Verdict) -> None:
    """Show a verdict (rich output in a notebook, a printed line elsewhere) and append it to
    the file named by ``PPO_GRADE_RESULTS``, if set."""
    if in_notebook():
        from IPython.display import display
        display(verdict)  # text/plain (the verdict line) and text/html
    else:
        print(verdict.text())
    path = os.environ.get(RESULTS_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"id": verdict.exercise_id, "passed": verdict.passed,
                                    "status": verdict.status, "message": verdict.message,
                                    "hint": verdict.hint}) + "\n")
        except OSError as exc:
            print(f"(could not record the verdict in {path}: {exc})")


def check(exercise_id: str, fn: Any, *, show: bool = True) -> CheckResult:
    """Run the exercise's cases on ``fn``, show a short verdict with a hint, and return a
    ``CheckResult`` whose ``bool()`` is the verdict.

    Never raises, with one exception: under nbgrader (``NBGRADER_EXECUTION`` set) a failed
    check raises AssertionError so that nbgrader scores the test cell. The learner's
    function gets copies of the inputs and runs under a time limit (``Exercise.timeout``)
    that it cannot swallow or switch off; whatever it changes in the kernel (random states,
    grad mode, default dtype, torch threads, anomaly and deterministic modes, numpy error
    settings, print, sys.stdout, signal handlers, ... see ``ppo_lib.course.kernel_state``)
    is put back. A Ctrl-C during the check shows "interrupted (Ctrl-C)" as a failed verdict.
    ``show=False`` records the verdict without showing it (the headless grader's own check).
    """
    load_exercises()
    if exercise_id not in EXERCISES:
        verdict = Verdict(exercise_id, False, "no exercise has this id",
                          f"known ids: {', '.join(sorted(EXERCISES))}")
    else:
        exercise = EXERCISES[exercise_id]
        try:
            with NoticeCtrlC(), KernelState(fn):
                problem, hint = run_cases(exercise, fn)
        except (KeyboardInterrupt, CheckTimeout) as exc:
            if isinstance(exc, KeyboardInterrupt) or CTRL_C.is_set():
                problem, hint = "interrupted (Ctrl-C)", ""
            else:  # a timer that fired just after the call returned
                problem, hint = (f"stopped after {exercise.timeout:g} s: the function runs "
                                 "too long"), ""
        except BaseException as exc:  # never raise into the lesson
            problem, hint = f"the check itself failed ({type(exc).__name__}: {safe_str(exc)})", ""
        verdict = Verdict(exercise_id, problem is None, problem or "passed", hint)
    RESULTS[exercise_id] = verdict
    if show:
        report(verdict)
    if not verdict.passed and os.environ.get(NBGRADER_ENV):
        raise AssertionError(verdict.text())
    return CheckResult(verdict)


def use(exercise_id: str, fn: Any) -> Any:
    """The learner's answer if its check passed, else the library's reference (with a note),
    so that later cells of a lesson work before the exercise is done. Runs the check first
    when it has not run yet; never raises for whatever the learner's function does."""
    verdict = RESULTS.get(exercise_id)
    if verdict is None:
        try:
            check(exercise_id, fn)
        except AssertionError:  # nbgrader: the test cell reports it, later cells go on
            pass
        verdict = RESULTS.get(exercise_id)
    if verdict is not None and verdict.passed:
        return fn
    if exercise_id not in EXERCISES:
        raise KeyError(f"use: no exercise has the id {exercise_id!r}")
    print(f"(using ppo_lib's reference for {exercise_id} until your version passes)")
    return EXERCISES[exercise_id].reference


class Summary(list):
    """The verdicts of one lesson; shows as a table (plain text and HTML)."""

    def __init__(self, rows: list[Verdict], lesson: str | None):
        super().__init__(rows)
        self.lesson = lesson

    def text(self) -> str:
        title = f"lesson {self.lesson}" if self.lesson else "all lessons"
        done = sum(v.passed for v in self)
        lines = [f"{title}: {done}/{len(self)} exercises passed"]
        for v in self:
            mark = "✓" if v.passed else "✗"
            lines.append(f"{mark} {v.exercise_id:28s} {v.message.splitlines()[0]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _ipython_display_(self) -> None:
        """Shown once, by ``summary`` itself: a trailing ``summary("03")`` adds no Out[]."""

    def _html(self) -> str:
        rows = "".join(
            f"<tr><td>{'✓' if v.passed else '✗'}</td><td><code>{html.escape(v.exercise_id)}"
            f"</code></td><td style='text-align:left'>{html.escape(v.message.splitlines()[0])}"
            f"</td></tr>" for v in self)
        head = html.escape(self.text().splitlines()[0])
        return (f"<div class='ppo-summary'><b>{head}</b><table><tr><th></th><th>exercise</th>"
                f"<th style='text-align:left'>state</th></tr>{rows}</table></div>")


def summary(lesson: str | None = None) -> Summary:
    """Show (and return) the state of the exercises of one lesson ("03"), or of all."""
    load_exercises()
    rows = []
    for ex in EXERCISES.values():
        if lesson is not None and ex.lesson != lesson:
            continue
        rows.append(RESULTS.get(ex.id, Verdict(ex.id, False, "not checked yet")))
    table = Summary(rows, lesson)
    if in_notebook():
        from IPython.display import display
        display({"text/plain": table.text(), "text/html": table._html()}, raw=True)
    else:
        print(table.text())
    return table
