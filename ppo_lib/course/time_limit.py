"""Running the learner's function with a time limit it cannot swallow or switch off
(``call_with_time_limit``, ``CheckTimeout``), and noticing a Ctrl-C during a check
(``NoticeCtrlC``)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


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
# Frames of the grader's own modules (this folder, ppo_lib/course/) are never traced past a
# deadline; everything else (the learner's code, the references, the exercises' cases) is.
# Tested with str.rpartition (C): a Python-level call here would itself be traced.
GRADER_DIR = __file__.rpartition(os.sep)[0]
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


def active_limits() -> list:
    """The time limits running in this thread, innermost last (empty between checks)."""
    try:
        return _LIMITS.stack
    except AttributeError:
        _LIMITS.stack = []
        return _LIMITS.stack


def _expired_limit() -> _TimeLimit | None:
    """The innermost limit of this thread that is past its deadline and still running."""
    for limit in reversed(active_limits()):
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
            if frame.f_code.co_filename.rpartition(os.sep)[0] != GRADER_DIR:
                frame.f_trace = _trace_line
        sys.settrace(_trace_call)
    except Exception:  # e.g. at interpreter exit
        pass


def _trace_call(frame, event, arg):
    """The global trace function past a deadline: trace each new frame of the learner."""
    if frame.f_code.co_filename.rpartition(os.sep)[0] != GRADER_DIR and \
            _expired_limit() is not None:
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
            active_limits().append(self)
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
        stack = active_limits()
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


CTRL_C = threading.Event()  # set when the learner presses Ctrl-C during a check


class NoticeCtrlC:
    """On the main thread, notes a Ctrl-C (SIGINT) during a check, so that check reports it
    as such rather than as a KeyboardInterrupt raised by the learner's function. The
    previous handler still runs (and raises KeyboardInterrupt)."""

    def __enter__(self) -> NoticeCtrlC:
        CTRL_C.clear()
        self.previous = None
        try:
            if (threading.current_thread() is threading.main_thread()
                    and signal.getsignal(signal.SIGINT) is not None):
                self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        except (ValueError, TypeError, OSError):
            self.previous = None
        return self

    def _on_sigint(self, signum: int, frame: Any) -> Any:
        CTRL_C.set()
        for limit in active_limits():  # a function that swallows KeyboardInterrupt is
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
