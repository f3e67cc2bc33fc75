"""Graded exercises: ``check(exercise_id, fn)`` runs an exercise's cases on a learner's answer.

Each exercise is registered once (in ``ppo_lib/exercises/``) with its reference, its cases
and the classic wrong versions (``Mistake``) that the tests prove ``check`` rejects, so what
is graded is what is tested.

``check`` never raises and leaves the kernel as it found it: an unfinished stub, an
exception, a wrong shape or type, an answer that modifies its inputs, or a run past the
time limit is a failed check with a one-line message and a hint. The one exception is
nbgrader: when ``NBGRADER_EXECUTION`` is set (``nbgrader autograde`` sets it), a failed
check raises ``AssertionError`` so that nbgrader scores the test cell as failed.

When ``PPO_GRADE_RESULTS`` names a file (``python -m ppo_lib.grade`` sets it), every
verdict is also appended to it as one JSON line, which is how the grader collects them.
"""

from __future__ import annotations

import copy
import html
import inspect
import json
import linecache
import math
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

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
RESULTS: dict[str, Verdict] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    if exercise.kind not in ("function", "value"):
        raise ValueError(f"exercise {exercise.id!r}: kind must be 'function' or 'value', "
                         f"got {exercise.kind!r}")
    EXERCISES[exercise.id] = exercise
    return exercise


def _load_exercises() -> None:
    from . import exercises  # noqa: F401  (registers every module in ppo_lib/exercises)


# ---------------------------------------------------------------------------------------
# comparing answers


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (list, dict)) else type(value).__name__


def _first_difference(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> str:
    g, w = got.detach().double(), want.detach().double()
    bad = ~torch.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True)
    index = tuple(int(i) for i in bad.nonzero()[0]) if bad.any() else ()
    where = f" at index {list(index)}" if index else ""
    if g.numel() <= 8:
        return f"expected {_fmt_values(w)}, got {_fmt_values(g)}"
    return (f"{int(bad.sum())} of {g.numel()} values differ; first{where}: expected "
            f"{w[index].item():.6g}, got {g[index].item():.6g}")


def _fmt_values(t: torch.Tensor) -> str:
    if t.dim() == 0:
        return f"{t.item():.6g}"
    return "[" + ", ".join(_fmt_values(x) for x in t) + "]"


def _t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _sign_note(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> str:
    """' (the sign is flipped)' when got == -want and want is not all zero."""
    g, w = got.detach().double(), want.detach().double()
    if w.abs().max() > atol and torch.allclose(g, -w, atol=atol, rtol=rtol):
        return " (the sign is flipped)"
    return ""


def compare(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when ``got`` matches ``want``, else what differs (type, shape or values)."""
    if got is None and want is not None:
        return "your function returned None: did you forget `return`?"
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor of shape {tuple(want.shape)}, got {_describe(got)}"
        if got.shape != want.shape:
            return f"expected shape {tuple(want.shape)}, got shape {tuple(got.shape)}"
        if want.is_floating_point() and not got.is_floating_point():
            return f"expected a floating-point tensor, got dtype {got.dtype}"
        if not torch.allclose(got.detach().double(), want.detach().double(), atol=atol,
                              rtol=rtol, equal_nan=True):
            return _first_difference(got, want, atol, rtol) + _sign_note(got, want, atol, rtol)
        return None
    if isinstance(want, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            n = len(got) if isinstance(got, (tuple, list)) else None
            return (f"expected a tuple of {len(want)} values, got "
                    f"{f'{n} values' if n is not None else _describe(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, atol, rtol)
            if problem:
                return f"item {i} of the tuple: {problem}"
        return None
    if isinstance(want, bool):
        if (isinstance(got, torch.Tensor) and got.numel() == 1) or type(got).__name__ in ("bool_", "bool"):
            got = bool(got)  # a one-element tensor or a numpy bool
        if not isinstance(got, bool):
            return f"expected True or False, got {_describe(got)}"
        return None if got == want else f"expected {want}, got {got}"
    if isinstance(want, (float, int)):
        if isinstance(got, torch.Tensor) and got.numel() != 1:
            return f"expected a single number, got a tensor of shape {tuple(got.shape)}"
        if isinstance(got, (str, bytes)):
            return f"expected a number, got the text {got!r}"
        try:
            g = float(got)
        except (TypeError, ValueError):
            return f"expected a number, got {_describe(got)}"
        w = float(want)
        if math.isnan(w) or math.isnan(g):
            return None if math.isnan(w) and math.isnan(g) else f"expected {w:.6g}, got {g:.6g}"
        if not math.isclose(g, w, rel_tol=rtol, abs_tol=atol):
            return f"expected {w:.6g}, got {g:.6g}" + _sign_note(_t(g), _t(w), atol, rtol)
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {_describe(got)}"
        if set(got) != set(want):
            return f"expected the keys {sorted(map(str, want))}, got {sorted(map(str, got))}"
        for key in want:
            problem = compare(got[key], want[key], atol, rtol)
            if problem:
                return f"key {key!r}: {problem}"
        return None
    try:
        equal = bool(got == want)
    except Exception:  # e.g. ambiguous truth value of an array
        equal = False
    return None if equal else f"expected {want!r}, got {got!r}"


# ---------------------------------------------------------------------------------------
# running the learner's code safely


class CheckTimeout(BaseException):
    """Raised inside the learner's function when it runs past the time limit.

    A BaseException, so that a learner's ``except Exception:`` cannot swallow it."""


def _clone(value: Any) -> Any:
    """A deep copy with tensors cloned, so the case inputs stay pristine.

    Tensors that require grad are passed as they are: a case may check gradients with
    respect to them, and autograd already forbids in-place changes to such leaves."""
    if isinstance(value, torch.Tensor):
        return value if value.requires_grad else value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if callable(value):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _same(a: Any, b: Any) -> bool:
    """Exact equality of case inputs (to detect in-place modification)."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape
                and torch.equal(torch.nan_to_num(a.detach()), torch.nan_to_num(b.detach())))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (bool, int, float, str, bytes, type(None))):
        return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here
    return True  # other objects (functions, classes, modules) are passed as they are


def _call_with_alarm(fn: Callable, args: tuple, kwargs: dict, seconds: float) -> Any:
    def on_alarm(signum, frame):
        raise CheckTimeout()

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, 0)  # pause any outer timer
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
        return fn(*args, **kwargs)
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # even if the alarm fires right here, the old handler and timer come back
            signal.signal(signal.SIGALRM, previous_handler)
            if previous_timer[0] > 0:  # restore the outer timer, minus the time we used
                left = max(previous_timer[0] - (time.monotonic() - started), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, previous_timer[1])


def _call_in_thread(fn: Callable, args: tuple, kwargs: dict, seconds: float) -> Any:
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="ppo-check")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():  # cannot be stopped; it is a daemon and will not block exit
        raise CheckTimeout()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def call_with_time_limit(fn: Callable, args: tuple = (), kwargs: dict | None = None,
                         seconds: float = 10.0) -> Any:
    """``fn(*args, **kwargs)``, raising ``CheckTimeout`` after ``seconds``.

    In the main thread (where notebook cells run) a SIGALRM timer interrupts the call and
    the previous handler and timer are restored; elsewhere the call runs in a daemon
    thread that is abandoned when it runs too long."""
    kwargs = kwargs or {}
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _call_with_alarm(fn, args, kwargs, seconds)
    return _call_in_thread(fn, args, kwargs, seconds)


def _where_in_learner_code(exc: BaseException, fn: Any) -> str:
    """' (line 3 of your cell: `x = y[t + 1]`)' for the deepest frame in the learner's file."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == code.co_filename:
            found = frame
    if found is None:
        return ""
    text = (found.line or linecache.getline(found.filename, found.lineno)).strip()
    origin = "your cell" if "ipykernel" in found.filename or found.filename.startswith("<") \
        else os.path.basename(found.filename)
    return f" (line {found.lineno} of {origin}" + (f": `{text}`)" if text else ")")


class _RandomState:
    """Saves and restores the global RNGs, so a check does not shift a lesson's seeds."""

    def __enter__(self):
        self.torch = torch.get_rng_state()
        self.python = random.getstate()
        try:
            import numpy as np
            self.numpy = np.random.get_state()
        except ImportError:
            self.numpy = None
        self.grad = torch.is_grad_enabled()
        self.dtype = torch.get_default_dtype()
        return self

    def __exit__(self, *exc):
        torch.set_rng_state(self.torch)
        random.setstate(self.python)
        if self.numpy is not None:
            import numpy as np
            np.random.set_state(self.numpy)
        torch.set_grad_enabled(self.grad)
        torch.set_default_dtype(self.dtype)
        return False


def _is_stub_value(answer: Any) -> bool:
    return answer is None or answer is Ellipsis or answer is NotImplemented


def _run_cases(exercise: Exercise, fn: Any) -> tuple[str | None, str]:
    """(problem, hint) of the first failing case, or (None, "") when all pass."""
    if exercise.kind == "value" and _is_stub_value(fn):
        return f"{NOT_DONE}: replace the placeholder with your answer", ""
    if exercise.kind == "function" and not callable(fn):
        return (f"expected a function, got {_describe(fn)}",
                "pass the function itself, without calling it: check(\"id\", my_function)")
    try:
        cases = list(exercise.cases())
    except Exception as exc:  # a bug in the exercise, not in the learner's answer
        return f"internal error building the cases ({type(exc).__name__}: {exc})", \
            "this is a bug in ppo_lib/exercises, please report it"
    deadline = time.monotonic() + exercise.timeout
    for case in cases:
        case_args, case_kwargs = _positional(exercise.reference, case.args, case.kwargs)
        args, kwargs = _clone(case_args), _clone(case_kwargs)
        if exercise.kind == "value":
            got = fn
        else:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise CheckTimeout()
                got = call_with_time_limit(fn, args, kwargs, left)
            except NotImplementedError:
                return f"{NOT_DONE}: replace `raise NotImplementedError()` with your code", ""
            except CheckTimeout:
                return (f"stopped after {exercise.timeout:g} s on case '{case.name}': "
                        "the function runs too long", "look for a loop that never ends "
                        "(e.g. a `while` whose condition never changes)")
            except RecursionError:
                return f"case '{case.name}': infinite recursion (RecursionError)", case.hint
            except Exception as exc:
                where = _where_in_learner_code(exc, fn)
                return (f"case '{case.name}': your function raised "
                        f"{type(exc).__name__}: {exc}{where}", case.hint)
            if not (_same(args, case_args) and _same(kwargs, case_kwargs)):
                return (f"case '{case.name}': your function changed its inputs in place",
                        _mutation_hint(args, case_args, kwargs, case_kwargs))
        try:
            if case.verify is not None:
                problem = case.verify(got)
            else:
                want = case.expected
                if want is None:
                    with torch.no_grad():
                        want = exercise.reference(*_clone(case.args), **_clone(case.kwargs))
                problem = compare(got, want, case.atol, case.rtol)
        except Exception as exc:  # the answer could not even be compared
            problem = f"your answer could not be checked ({type(exc).__name__}: {exc})"
        if problem:
            return f"case '{case.name}': {problem}" + _signature_note(exercise, fn), case.hint
    return None, ""


def _mutation_hint(args: tuple, case_args: tuple, kwargs: dict, case_kwargs: dict) -> str:
    """A hint for the kind of value that was changed in place."""
    pairs = list(zip(args, case_args)) + [(kwargs[k], case_kwargs[k]) for k in kwargs]
    changed = [a for a, b in pairs if not _same(a, b)]
    if changed and isinstance(changed[0], dict):
        return ("copy the dict before changing it (e.g. `config = dict(config)`) or build a "
                "new one: the caller's dict must stay as it was")
    if changed and isinstance(changed[0], list):
        return "build a new list instead of changing the caller's (e.g. `list(values)`)"
    return ("compute into new tensors (e.g. torch.zeros_like) instead of writing into the "
            "arguments (`x += ...`, `x[t] = ...`, `x.clamp_()` change the caller's tensor)")


def _positional(reference: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The case's keyword arguments moved to their positions in the reference's signature,
    so that a learner who renamed a parameter is graded on what the function computes.
    (Defaults in between are filled in from the reference.) Keyword-only parameters stay
    keywords."""
    if not kwargs or not callable(reference):
        return args, kwargs
    try:
        signature = inspect.signature(reference)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return args, kwargs
    params = list(signature.parameters.values())
    positional_kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    given = [i for i, p in enumerate(params) if p.name in bound.arguments and p.kind in positional_kinds]
    if not given:
        return args, kwargs
    out_args, out_kwargs = [], {}
    for p in params[:max(given) + 1]:
        if p.kind not in positional_kinds:
            return args, kwargs  # *args in the middle: keep the case as written
        if p.name in bound.arguments:
            out_args.append(bound.arguments[p.name])
        elif p.default is not inspect.Parameter.empty:
            out_args.append(p.default)
        else:
            return args, kwargs
    for name, value in bound.arguments.items():
        param = signature.parameters[name]
        if param.kind == inspect.Parameter.KEYWORD_ONLY:
            out_kwargs[name] = value
        elif param.kind == inspect.Parameter.VAR_KEYWORD:
            out_kwargs.update(value)
    return tuple(out_args), out_kwargs


def _signature_note(exercise: Exercise, fn: Any) -> str:
    """' (note: your parameters are (a, b), the exercise's are (x, y))' when they differ."""
    try:
        want = list(inspect.signature(exercise.reference).parameters)
        got = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ""
    if got == want or any(n.startswith("*") for n in got) or \
            any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in inspect.signature(fn).parameters.values()):
        return ""
    return (f" (note: your function's parameters are ({', '.join(got)}); the exercise's are "
            f"({', '.join(want)}): arguments are passed in that order)")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _report(verdict: Verdict) -> None:
    if _in_notebook():
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


def check(exercise_id: str, fn: Any) -> CheckResult:
    """Run the exercise's cases on ``fn``, show a short verdict with a hint, and return a
    ``CheckResult`` whose ``bool()`` is the verdict.

    Never raises, with one exception: under nbgrader (``NBGRADER_EXECUTION`` set) a failed
    check raises AssertionError so that nbgrader scores the test cell. The learner's
    function gets copies of the inputs, runs under a time limit (``Exercise.timeout``), and
    the global random states, grad mode and default dtype are restored afterwards.
    """
    _load_exercises()
    if exercise_id not in EXERCISES:
        verdict = Verdict(exercise_id, False, "no exercise has this id",
                          f"known ids: {', '.join(sorted(EXERCISES))}")
    else:
        exercise = EXERCISES[exercise_id]
        try:
            with _RandomState():
                problem, hint = _run_cases(exercise, fn)
        except CheckTimeout:  # a timer that fired just after the call returned
            problem, hint = f"stopped after {exercise.timeout:g} s: the function runs too long", ""
        except Exception as exc:  # never raise into the lesson
            problem, hint = f"the check itself failed ({type(exc).__name__}: {exc})", ""
        verdict = Verdict(exercise_id, problem is None, problem or "passed", hint)
    RESULTS[exercise_id] = verdict
    _report(verdict)
    if not verdict.passed and os.environ.get(NBGRADER_ENV):
        raise AssertionError(verdict.text())
    return CheckResult(verdict)


def use(exercise_id: str, fn: Any) -> Any:
    """The learner's answer if its check passed, else the library's reference (with a note),
    so that later cells of a lesson work before the exercise is done."""
    verdict = RESULTS.get(exercise_id)
    if verdict is None:
        try:
            check(exercise_id, fn)
        except AssertionError:  # nbgrader: the test cell reports it, later cells go on
            pass
        verdict = RESULTS[exercise_id]
    if verdict.passed:
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
    _load_exercises()
    rows = []
    for ex in EXERCISES.values():
        if lesson is not None and ex.lesson != lesson:
            continue
        rows.append(RESULTS.get(ex.id, Verdict(ex.id, False, "not checked yet")))
    table = Summary(rows, lesson)
    if _in_notebook():
        from IPython.display import display
        display({"text/plain": table.text(), "text/html": table._html()}, raw=True)
    else:
        print(table.text())
    return table
