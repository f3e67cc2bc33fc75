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

import builtins
import copy
import gc
import html
import inspect
import json
import linecache
import math
import operator
import os
import random
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
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

    A BaseException, so that a learner's ``except Exception:`` cannot swallow it. An
    ``except BaseException:`` cannot swallow it for good either: creating or dropping one
    re-arms the limit (``_rearm``), so the learner's next line raises it again."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        _rearm()

    def __del__(self) -> None:  # after an ``except`` clause that swallowed it
        _rearm()


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


def _snapshot(value: Any) -> Any:
    """Like ``_clone``, but tensors that require grad are copied too (detached, with their
    ``requires_grad`` flag), so that ``_same`` can tell whether a call changed them."""
    if isinstance(value, torch.Tensor):
        copy_ = value.detach().clone()
        if value.requires_grad and copy_.is_floating_point():
            copy_.requires_grad_(True)
        return copy_
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return _clone(value)


def _same(a: Any, b: Any) -> bool:
    """Exact equality of case inputs (to detect in-place modification), including whether
    a tensor requires grad (``x.requires_grad_(False)`` changes the caller's tensor)."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.requires_grad == b.requires_grad
                and torch.equal(torch.nan_to_num(a.detach()), torch.nan_to_num(b.detach())))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (bool, int, float, str, bytes, type(None))):
        return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here
    return True  # other objects (functions, classes, modules) are passed as they are


# How the time limit holds. A Python thread cannot be killed, and a learner's function
# may swallow any exception (``except BaseException: pass`` in a loop), reset SIGALRM or
# stop the timer. So, once a call is past its deadline:
#   1. on the main thread, a SIGALRM timer raises CheckTimeout (it also cuts a blocking
#      call short, e.g. time.sleep);
#   2. a watchdog thread, which the learner's code cannot reset, raises CheckTimeout in the
#      calling thread every few milliseconds (PyThreadState_SetAsyncExc, like Ctrl-C);
#   3. whenever a CheckTimeout is created or dropped in that thread, ``_rearm`` installs a
#      trace function on the learner's frames that raises it again at the next line,
#      including the first line of the ``except`` clause that caught it. CPython switches
#      off a trace function that raises, so it raises the class (``_trace_line``): the
#      instance is created where the learner's code catches it, and its ``__init__``
#      re-arms the trace there; ``__del__`` re-arms it when a kept one is dropped.
# Before the deadline nothing is traced, so the learner's code runs at full speed. What
# still cannot be stopped: one long call into C (a huge matrix product, a sleep off the
# main thread) ends the check only when it returns. Until then the watchdog's CheckTimeout
# stays pending, and (CPython 3.11) another thread that is being traced, e.g. by a
# debugger, spins meanwhile; a pending one is never cancelled with SetAsyncExc(id, NULL),
# which would leave that state on for good.

KICK_INTERVAL = 0.005  # seconds between the watchdog's CheckTimeouts past the deadline
WATCHDOG_NAME = "ppo-check-watchdog"
_LIMITS = threading.local()  # per thread: the _TimeLimits that are running, innermost last

try:
    import ctypes
    _SET_ASYNC_EXC = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
        ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
    _INCREF = ctypes.PYFUNCTYPE(None, ctypes.py_object)(("Py_IncRef", ctypes.pythonapi))
    _ERR_RESTORE = ctypes.PYFUNCTYPE(None, ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p)(
        ("PyErr_Restore", ctypes.pythonapi))
except Exception:  # not CPython: the alarm (main thread) is the only limit
    _SET_ASYNC_EXC = _INCREF = _ERR_RESTORE = None


def _async_raise(thread_id: int, exc_type: type) -> None:
    """Raise ``exc_type`` in thread ``thread_id`` when it next checks for signals."""
    if _SET_ASYNC_EXC is not None:
        _SET_ASYNC_EXC(thread_id, id(exc_type))


def _limit_stack() -> list:
    try:
        return _LIMITS.stack
    except AttributeError:
        _LIMITS.stack = []
        return _LIMITS.stack


def _expired_limit() -> _TimeLimit | None:
    """The innermost limit of this thread that is past its deadline and still running."""
    for limit in reversed(_limit_stack()):
        if limit.expired and not limit.done:
            return limit
    return None


def _rearm() -> None:
    """If this thread runs a call past its limit: trace the learner's frames again, so that
    their next line raises CheckTimeout (see the note above)."""
    try:
        limit = _expired_limit()
        if limit is None:
            return
        frames, frame = [], sys._getframe(1)
        while frame is not None and frame is not limit.frame:
            frames.append(frame)
            frame = frame.f_back
        if frame is None:  # not inside the limited call
            return
        for frame in frames:
            if frame.f_code.co_filename != __file__:
                frame.f_trace = _trace_line
        sys.settrace(_trace_call)
    except Exception:  # e.g. at interpreter exit
        pass


def _trace_call(frame, event, arg):
    """The global trace function past a deadline: trace each new frame of the learner."""
    if frame.f_code.co_filename != __file__ and _expired_limit() is not None:
        return _trace_line
    return None


def _trace_line(frame, event, arg):
    """The learner's frames past a deadline: every line raises CheckTimeout.

    Raised as a class, not an instance, so that the instance is created (and its
    ``__init__`` re-arms the trace) where the learner's code catches it: a ``raise`` here
    would create it inside this trace function, which CPython then switches off. Tracing is
    switched off first, else CPython would create it here all the same (to report the
    exception event)."""
    if _expired_limit() is not None:
        if _ERR_RESTORE is not None:
            sys.settrace(None)
            _INCREF(CheckTimeout)  # PyErr_Restore takes over a reference
            _ERR_RESTORE(CheckTimeout, None, None)  # raises CheckTimeout
        raise CheckTimeout()
    return None


def _noop() -> None:
    """Calling a Python function runs the signal handlers that are due."""


class _TimeLimit:
    """Runs one call with a time limit in the calling thread (see the note above)."""

    def __init__(self, seconds: float):
        self.seconds = max(float(seconds), 1e-3)
        self.expired = False  # set by the alarm or the watchdog, read by _rearm and the tracers
        self.done = False     # the call is over: nothing raises CheckTimeout any more
        self.frame = None     # the frame that calls the learner's function
        self.thread_id = threading.get_ident()
        self.on_main = (threading.current_thread() is threading.main_thread()
                        and hasattr(signal, "setitimer"))
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._alarm_set = False
        self._outer_timer: tuple[float, float] | None = None

    def call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        outcome, late = None, None
        self.frame = sys._getframe()
        self._previous_trace = sys.gettrace()
        self._previous_unraisable = sys.unraisablehook
        try:
            _limit_stack().append(self)
            self._watchdog = threading.Thread(target=self._watch, name=WATCHDOG_NAME,
                                              daemon=True)
            self._watchdog.start()
            if self.on_main:
                self._start_alarm()
            try:
                outcome = (True, fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller once the limit is off
                outcome = (False, exc)
        finally:
            while True:  # a CheckTimeout sent just before the end arrives while closing
                try:  # (not cancelled with SetAsyncExc(id, NULL): that leaves the eval
                    self._close()  # breaker set, and a traced thread then spins in RESUME)
                    _noop()
                    break
                except BaseException as exc:
                    if not isinstance(exc, CheckTimeout):
                        late = exc
        ok, value = outcome
        if late is not None:  # Ctrl-C while closing
            raise late
        if not ok:
            raise value
        return value

    def _watch(self) -> None:
        if self._finished.wait(self.seconds):
            return
        while True:
            with self._lock:
                if self.done:
                    return
                self._expire()
                _async_raise(self.thread_id, CheckTimeout)
            if self._finished.wait(KICK_INTERVAL):
                return

    def _on_alarm(self, signum, frame) -> None:
        if not self.done:
            self._expire()
            raise CheckTimeout()

    def _expire(self) -> None:
        """Past the deadline (called before ``done`` is set, see ``_close``)."""
        if not self.expired:
            # A CheckTimeout may now land in a __del__ (ours, or the learner's), which
            # prints "Exception ignored in ...". Silence that with a hook in C: one in
            # Python could itself be hit. (The watchdog raises another CheckTimeout.)
            sys.unraisablehook = id
        self.expired = True

    def _start_alarm(self) -> None:
        self._started = time.monotonic()
        previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        self._previous_handler, self._alarm_set = previous_handler, True
        self._outer_timer = signal.setitimer(signal.ITIMER_REAL, 0)  # pause any outer timer
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def _stop_alarm(self) -> None:
        if not self.on_main:
            return
        if self._alarm_set:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _drain_sigalrm()  # an alarm on its way reaches our handler, not the previous one
            signal.signal(signal.SIGALRM, self._previous_handler)
            self._alarm_set = False
        outer, self._outer_timer = self._outer_timer, None
        if outer is not None and outer[0] > 0:  # the outer timer, minus the time we used
            left = max(outer[0] - (time.monotonic() - self._started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer[1])

    def _close(self) -> None:
        """Idempotent, so that it can be run again when a late CheckTimeout interrupts it."""
        with self._lock:
            self.done = True
        for step in (self._finished.set, self._restore_trace, self._stop_alarm,
                     self._restore_unraisable, self._join_watchdog, self._leave_stack):
            try:
                step()
            except Exception:  # a failing step must not stop the others
                pass

    def _restore_trace(self) -> None:
        if sys.gettrace() is not self._previous_trace:
            sys.settrace(self._previous_trace)

    def _restore_unraisable(self) -> None:
        sys.unraisablehook = self._previous_unraisable

    def _join_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.ident is not None:
            self._watchdog.join()

    def _leave_stack(self) -> None:
        stack = _limit_stack()
        if self in stack:
            stack.remove(self)
        self.frame = None


def _drain_sigalrm() -> None:
    """After the timer is stopped: take a SIGALRM that is still pending (so that it cannot
    reach the handler about to be restored, e.g. SIG_DFL, which ends the process), and run
    a Python-level handler call that is due."""
    if hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigtimedwait"):
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            while signal.sigtimedwait({signal.SIGALRM}, 0) is not None:
                pass
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    _noop()


def call_with_time_limit(fn: Callable, args: tuple = (), kwargs: dict | None = None,
                         seconds: float = 10.0) -> Any:
    """``fn(*args, **kwargs)`` in the calling thread, raising ``CheckTimeout`` after
    ``seconds`` even if ``fn`` swallows it or resets SIGALRM (see the note above).

    Afterwards no thread of its own is left, and the SIGALRM handler and timer (an outer
    timer keeps running, minus the time used), the trace function and
    ``sys.unraisablehook`` are as they were."""
    return _TimeLimit(seconds).call(fn, args, kwargs or {})


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


_MISSING = object()


def _equal(a: Any, b: Any) -> bool:
    try:
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and torch.equal(a, b)
        return a is b or bool(a == b)
    except Exception:  # e.g. numpy arrays inside: put it back anyway
        return False


def _never(a: Any, b: Any) -> bool:  # the put-back function compares entry by entry
    return False


def _kernel_settings(fn: Any) -> list[tuple]:
    """(name, get, put back, same) for what in the kernel a learner's function may plausibly
    change; ``put back`` is called when ``same(get(), saved)`` is false. Objects a learner
    may have replaced (sys.stdout, print, ...) are compared by identity: comparing with
    ``==`` would run the learner's code."""
    is_ = operator.is_
    items: list[tuple] = [
        ("torch RNG", torch.get_rng_state, torch.set_rng_state, _equal),
        ("python RNG", random.getstate, random.setstate, _equal),
        ("grad mode", torch.is_grad_enabled, torch.set_grad_enabled, _equal),
        ("default dtype", torch.get_default_dtype, torch.set_default_dtype, _equal),
        ("default device", _get_default_device, _set_default_device, is_),
        ("torch function modes", torch._C._len_torch_function_stack, _pop_function_modes,
         _equal),
        ("torch threads", torch.get_num_threads, torch.set_num_threads, _equal),
        ("anomaly detection",
         lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
         lambda v: torch.set_anomaly_enabled(*v), _equal),
        ("deterministic algorithms",
         lambda: (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled()),
         lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]), _equal),
        ("float32 matmul precision", torch.get_float32_matmul_precision,
         torch.set_float32_matmul_precision, _equal),
        ("torch print options", lambda: dict(vars(torch._tensor_str.PRINT_OPTS)),
         _put_dict(vars(torch._tensor_str.PRINT_OPTS), full=False), _never),
        ("recursion limit", sys.getrecursionlimit, sys.setrecursionlimit, _equal),
        ("switch interval", sys.getswitchinterval, sys.setswitchinterval, _equal),
        ("garbage collector", gc.isenabled, lambda on: gc.enable() if on else gc.disable(),
         _equal),
        ("trace function", sys.gettrace, sys.settrace, is_),
        ("profile function", sys.getprofile, sys.setprofile, is_),
        ("builtins (print, ...)", lambda: dict(vars(builtins)),
         _put_dict(vars(builtins), full=True), _never),
        ("environment variables", lambda: dict(os.environ), _put_dict(os.environ, full=True),
         _equal),
        ("working directory", os.getcwd, os.chdir, _equal),
        ("warning filters", lambda: list(warnings.filters), _set_warning_filters, _equal),
        ("warnings.showwarning", lambda: warnings.showwarning,
         partial(setattr, warnings, "showwarning"), is_),
    ]
    for name in ("stdout", "stderr", "stdin", "displayhook", "excepthook", "unraisablehook",
                 "breakpointhook"):
        items.append((f"sys.{name}", partial(getattr, sys, name), partial(setattr, sys, name),
                      is_))
    np = _numpy()
    if np is not None:
        items += [
            ("numpy RNG", np.random.get_state, np.random.set_state, _never),
            ("numpy error handling", np.geterr, lambda v: np.seterr(**v), _equal),
            ("numpy error callback", np.geterrcall, np.seterrcall, is_),
            ("numpy print options", np.get_printoptions, lambda v: np.set_printoptions(**v),
             _equal),
        ]
    try:
        names = getattr(fn, "__globals__", None)
    except Exception:
        names = None
    if isinstance(names, dict) and names is not globals():  # `global print; print = ...`
        hidden = list(vars(builtins))
        items.append(("names that hide builtins",
                      lambda: {k: names.get(k, _MISSING) for k in hidden},
                      _put_dict(names, full=False), _never))
    if threading.current_thread() is threading.main_thread():
        for sig in ("SIGINT", "SIGTERM", "SIGALRM"):
            if hasattr(signal, sig):
                num = getattr(signal, sig)
                items.append((f"{sig} handler", partial(signal.getsignal, num),
                              partial(_set_handler, num), is_))
        if hasattr(signal, "setitimer"):
            items.append(("SIGALRM timer (a learner's)",
                          partial(signal.getitimer, signal.ITIMER_REAL),
                          lambda v: signal.setitimer(signal.ITIMER_REAL, 0),
                          lambda now, saved: saved[0] > 0 or now[0] == 0))
    if hasattr(signal, "pthread_sigmask"):
        items.append(("blocked signals", lambda: signal.pthread_sigmask(signal.SIG_BLOCK, []),
                      lambda v: signal.pthread_sigmask(signal.SIG_SETMASK, v), _equal))
    return items


def _numpy() -> Any:
    try:
        import numpy
        return numpy
    except ImportError:
        return None


def _get_default_device() -> Any:
    return getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None)


def _set_default_device(context: Any) -> None:
    torch.set_default_device(None if context is None else context.device)


def _pop_function_modes(depth: int) -> None:
    """Leave the torch function modes a learner entered (``torch.device(...).__enter__()``)."""
    while torch._C._len_torch_function_stack() > depth:
        torch._C._pop_torch_function_stack()


def _set_handler(signum: int, handler: Any) -> None:
    if handler is not None:  # None: installed outside Python, cannot be put back
        signal.signal(signum, handler)


def _set_warning_filters(filters: list) -> None:
    warnings.filters[:] = filters
    warnings._filters_mutated()


def _put_dict(target: Any, full: bool) -> Callable[[dict], None]:
    """Put back a saved dict's entries (compared by identity; _MISSING: absent). With
    ``full``, keys that were not saved are removed too."""
    def put(saved: dict) -> None:
        if full:
            for key in [k for k in target if k not in saved]:
                del target[key]
        for key, value in saved.items():
            if value is _MISSING:
                if key in target:
                    del target[key]
            elif target.get(key, _MISSING) is not value:
                if not (isinstance(value, str) and target.get(key) == value):
                    target[key] = value
    return put


class _KernelState:
    """Saves what a learner's function may change in the kernel (``_kernel_settings``) and
    puts back what changed, so that a check leaves the lesson as it found it."""

    def __init__(self, fn: Any = None):
        self.fn = fn

    def __enter__(self) -> _KernelState:
        self.saved = []
        for name, get, put, same in _kernel_settings(self.fn):
            try:
                self.saved.append((name, get(), get, put, same))
            except Exception:  # not in this version of torch or numpy
                pass
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.restored = []
        for name, value, get, put, same in reversed(self.saved):
            for _attempt in range(3):  # again if a Ctrl-C interrupts it
                try:
                    if not same(get(), value):
                        put(value)
                        self.restored.append(name)
                    break
                except Exception:
                    break
                except BaseException:
                    continue
        return False


_RandomState = _KernelState  # its former name


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
        case_args, case_kwargs = positional_arguments(exercise.reference, case.args, case.kwargs)
        args, kwargs = _clone(case_args), _clone(case_kwargs)
        # tensors that require grad reach the learner as they are (gradients are checked
        # through them): a copy taken now shows whether the call changed them in place
        pristine_args, pristine_kwargs = _snapshot(case_args), _snapshot(case_kwargs)
        if exercise.kind == "value":
            got = fn
        else:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise CheckTimeout()
                with _KernelState(fn):  # what the call changed is put back before judging
                    got = call_with_time_limit(fn, args, kwargs, left)
            except BaseException as exc:
                return _explain_failure(exc, exercise, case, fn)
        try:  # comparing may run the learner's code too (e.g. a method of what it returned)
            problem, hint = call_with_time_limit(
                _judge, (exercise, case, fn, got, args, kwargs, pristine_args, pristine_kwargs),
                seconds=JUDGE_SECONDS)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, CheckTimeout)) and _CTRL_C.is_set():
                raise KeyboardInterrupt from None
            if isinstance(exc, CheckTimeout):
                return (f"case '{case.name}': checking your answer took more than "
                        f"{JUDGE_SECONDS:g} s (it runs code of what your function returned)",
                        case.hint)
            problem, hint = (f"your answer could not be checked ({type(exc).__name__}: "
                             f"{_safe_str(exc)})"), case.hint
        if problem:
            return f"case '{case.name}': {problem}", hint
    return None, ""


JUDGE_SECONDS = 5.0  # time limit for comparing one case's answer (the reference runs too)


def _judge(exercise: Exercise, case: Case, fn: Any, got: Any, args: tuple, kwargs: dict,
           case_args: tuple, case_kwargs: dict) -> tuple[str | None, str]:
    """(problem, hint) for one case's answer; problem is None when it is right."""
    if exercise.kind != "value" and not (_same(args, case_args) and _same(kwargs, case_kwargs)):
        return ("your function changed its inputs in place",
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
        problem = f"your answer could not be checked ({type(exc).__name__}: {_safe_str(exc)})"
    if problem:
        return problem + _signature_note(exercise, fn), case.hint
    return None, ""


def _explain_failure(exc: BaseException, exercise: Exercise, case: Case,
                     fn: Any) -> tuple[str, str]:
    """(problem, hint) for a call of the learner's function that raised ``exc``."""
    if isinstance(exc, (KeyboardInterrupt, CheckTimeout)) and _CTRL_C.is_set():
        raise KeyboardInterrupt  # the learner pressed Ctrl-C (check reports it)
    if isinstance(exc, CheckTimeout):
        return (f"stopped after {exercise.timeout:g} s on case '{case.name}': "
                "the function runs too long", "look for a loop that never ends "
                "(e.g. a `while` whose condition never changes)")
    if isinstance(exc, NotImplementedError):
        return f"{NOT_DONE}: replace `raise NotImplementedError()` with your code", ""
    if isinstance(exc, RecursionError):
        return f"case '{case.name}': infinite recursion (RecursionError)", case.hint
    where = _safely(_where_in_learner_code, exc, fn, default="")
    raised = f"case '{case.name}': your function raised {type(exc).__name__}"
    message = _safe_str(exc)
    if isinstance(exc, SystemExit):
        return (f"{raised}{f' ({message})' if message else ''}{where}",
                "sys.exit(), exit() and quit() stop the whole program: return the result "
                "instead")
    if not isinstance(exc, Exception):  # KeyboardInterrupt, GeneratorExit, ...
        return (f"{raised}{f': {message}' if message else ''}{where}",
                f"{type(exc).__name__} is not for reporting an error in a function: "
                "raise an Exception (e.g. ValueError) or return the result")
    return f"{raised}: {message}{where}", case.hint


def _safely(fn: Callable, *args: Any, default: Any, seconds: float = 2.0) -> Any:
    """``fn(*args)`` under a short time limit; ``default`` if it fails in any way."""
    try:
        return call_with_time_limit(fn, args, {}, seconds)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, CheckTimeout)) and _CTRL_C.is_set():
            raise KeyboardInterrupt from None
        return default


def _safe_str(exc: BaseException) -> str:
    """str(exc), which runs the learner's code for an exception class of its own."""
    return _safely(str, exc, default=f"(a {type(exc).__name__} that cannot be shown)")


def _mutation_hint(args: tuple, case_args: tuple, kwargs: dict, case_kwargs: dict) -> str:
    """A hint for the kind of value that was changed in place."""
    pairs = list(zip(args, case_args)) + [(kwargs[k], case_kwargs[k]) for k in kwargs]
    changed = [a for a, b in pairs if not _same(a, b)]
    flipped = [(a, b) for a, b in pairs if isinstance(a, torch.Tensor)
               and isinstance(b, torch.Tensor) and a.requires_grad != b.requires_grad]
    if flipped:
        return ("`requires_grad_(False)` (or `requires_grad_()`) changed whether the caller's "
                "tensor tracks gradients: use `.detach()` for a copy without gradient, and "
                "leave the inputs as they are")
    if changed and isinstance(changed[0], dict):
        return ("copy the dict before changing it (e.g. `config = dict(config)`) or build a "
                "new one: the caller's dict must stay as it was")
    if changed and isinstance(changed[0], list):
        return "build a new list instead of changing the caller's (e.g. `list(values)`)"
    return ("compute into new tensors (e.g. torch.zeros_like) instead of writing into the "
            "arguments (`x += ...`, `x[t] = ...`, `x.clamp_()` change the caller's tensor)")


def positional_arguments(reference: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
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


_CTRL_C = threading.Event()  # set when the learner presses Ctrl-C during a check


class _NoticeCtrlC:
    """On the main thread, notes a Ctrl-C (SIGINT) during a check, so that check reports it
    as such rather than as a KeyboardInterrupt raised by the learner's function. The
    previous handler still runs (and raises KeyboardInterrupt)."""

    def __enter__(self) -> _NoticeCtrlC:
        _CTRL_C.clear()
        self.previous = None
        try:
            if (threading.current_thread() is threading.main_thread()
                    and signal.getsignal(signal.SIGINT) is not None):
                self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        except (ValueError, TypeError, OSError):
            self.previous = None
        return self

    def _on_sigint(self, signum: int, frame: Any) -> Any:
        _CTRL_C.set()
        for limit in _limit_stack():  # a function that swallows KeyboardInterrupt is
            limit.expired = True      # stopped as if past its time limit
        _rearm()
        if callable(self.previous):
            return self.previous(signum, frame)
        if self.previous != signal.SIG_IGN:
            raise KeyboardInterrupt
        return None

    def __exit__(self, *exc: Any) -> bool:
        if self.previous is not None:
            for _attempt in range(3):
                try:
                    signal.signal(signal.SIGINT, self.previous)
                    break
                except Exception:
                    break
                except BaseException:  # a second Ctrl-C right now
                    continue
        return False


def check(exercise_id: str, fn: Any) -> CheckResult:
    """Run the exercise's cases on ``fn``, show a short verdict with a hint, and return a
    ``CheckResult`` whose ``bool()`` is the verdict.

    Never raises, with one exception: under nbgrader (``NBGRADER_EXECUTION`` set) a failed
    check raises AssertionError so that nbgrader scores the test cell. The learner's
    function gets copies of the inputs and runs under a time limit (``Exercise.timeout``)
    that it cannot swallow or switch off; whatever it changes in the kernel (random states,
    grad mode, default dtype, torch threads, anomaly and deterministic modes, numpy error
    settings, print, sys.stdout, signal handlers, ... see ``_kernel_settings``) is put back.
    A Ctrl-C during the check shows "interrupted (Ctrl-C)" as a failed verdict.
    """
    _load_exercises()
    if exercise_id not in EXERCISES:
        verdict = Verdict(exercise_id, False, "no exercise has this id",
                          f"known ids: {', '.join(sorted(EXERCISES))}")
    else:
        exercise = EXERCISES[exercise_id]
        try:
            with _NoticeCtrlC(), _KernelState(fn):
                problem, hint = _run_cases(exercise, fn)
        except (KeyboardInterrupt, CheckTimeout) as exc:
            if isinstance(exc, KeyboardInterrupt) or _CTRL_C.is_set():
                problem, hint = "interrupted (Ctrl-C)", ""
            else:  # a timer that fired just after the call returned
                problem, hint = (f"stopped after {exercise.timeout:g} s: the function runs "
                                 "too long"), ""
        except BaseException as exc:  # never raise into the lesson
            problem, hint = f"the check itself failed ({type(exc).__name__}: {_safe_str(exc)})", ""
        verdict = Verdict(exercise_id, problem is None, problem or "passed", hint)
    RESULTS[exercise_id] = verdict
    _report(verdict)
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
