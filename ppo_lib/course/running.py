"""Running an exercise's cases on a learner's answer: each call gets copies of the inputs,
runs under the time limit with the kernel state put back afterwards, and is judged; the
first failing case gives the problem and its hint (``run_cases``)."""

from __future__ import annotations

import copy
import linecache
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .comparing import compare, describe, positional_arguments, signature_note
from .kernel_state import KernelState
from .registry import NOT_DONE, Case, Exercise
from .time_limit import CTRL_C, CheckTimeout, call_with_time_limit


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


def snapshot(value: Any) -> Any:
    """Like ``_clone``, but tensors that require grad are copied too (detached, with their
    ``requires_grad`` flag), so that ``_same`` can tell whether a call changed them."""
    if isinstance(value, torch.Tensor):
        copy_ = value.detach().clone()
        if value.requires_grad and copy_.is_floating_point():
            copy_.requires_grad_(True)
        return copy_
    if isinstance(value, tuple):
        return tuple(snapshot(v) for v in value)
    if isinstance(value, list):
        return [snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    return _clone(value)


def _is_pandas(value: Any) -> bool:
    return type(value).__name__ in ("DataFrame", "Series") and hasattr(value, "equals")


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
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if _is_pandas(a):
        return type(a) is type(b) and a.equals(b)
    return True  # other objects (functions, classes, modules) are passed as they are


# How the time limit holds. A Python thread cannot be killed, and a learner's function
# may swallow any exception (``except BaseException: pass`` in a loop), reset SIGALRM or

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


def _is_stub_value(answer: Any) -> bool:
    return answer is None or answer is Ellipsis or answer is NotImplemented


def run_cases(exercise: Exercise, fn: Any) -> tuple[str | None, str]:
    """(problem, hint) of the first failing case, or (None, "") when all pass."""
    if exercise.kind == "value" and _is_stub_value(fn):
        return f"{NOT_DONE}: replace the placeholder with your answer", ""
    if exercise.kind == "function" and not callable(fn):
        return (f"expected a function, got {describe(fn)}",
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
        pristine_args, pristine_kwargs = snapshot(case_args), snapshot(case_kwargs)
        if exercise.kind == "value":
            got = fn
        else:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise CheckTimeout()
                with KernelState(fn):  # what the call changed is put back before judging
                    got = call_with_time_limit(fn, args, kwargs, left)
            except BaseException as exc:
                return _explain_failure(exc, exercise, case, fn)
        try:  # comparing may run the learner's code too (e.g. a method of what it returned)
            problem, hint = call_with_time_limit(
                _judge, (exercise, case, fn, got, args, kwargs, pristine_args, pristine_kwargs),
                seconds=JUDGE_SECONDS)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, CheckTimeout)) and CTRL_C.is_set():
                raise KeyboardInterrupt from None
            if isinstance(exc, CheckTimeout):
                return (f"case '{case.name}': checking your answer took more than "
                        f"{JUDGE_SECONDS:g} s (it runs code of what your function returned)",
                        case.hint)
            problem, hint = (f"your answer could not be checked ({type(exc).__name__}: "
                             f"{safe_str(exc)})"), case.hint
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
        problem = f"your answer could not be checked ({type(exc).__name__}: {safe_str(exc)})"
    if problem:
        return problem + signature_note(exercise, fn), case.hint
    return None, ""


def _explain_failure(exc: BaseException, exercise: Exercise, case: Case,
                     fn: Any) -> tuple[str, str]:
    """(problem, hint) for a call of the learner's function that raised ``exc``."""
    if isinstance(exc, (KeyboardInterrupt, CheckTimeout)) and CTRL_C.is_set():
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
    message = safe_str(exc)
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
        if isinstance(exc, (KeyboardInterrupt, CheckTimeout)) and CTRL_C.is_set():
            raise KeyboardInterrupt from None
        return default


def safe_str(exc: BaseException) -> str:
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
    if changed and isinstance(changed[0], np.ndarray):
        return ("`x.sort()` (and `x[...] = ...`, `x += ...`) change the caller's array: "
                "`np.sort(x)` returns a sorted copy")
    if changed and _is_pandas(changed[0]):
        return ("leave the caller's table as it was: `table.sort_values(...)` returns a new "
                "one, `inplace=True` or assigning a column changes theirs")
    return ("compute into new tensors (e.g. torch.zeros_like) instead of writing into the "
            "arguments (`x += ...`, `x[t] = ...`, `x.clamp_()` change the caller's tensor)")
