"""Comparing a learner's answer with the reference's: ``compare`` says what differs (type,
shape, values, a flipped sign), ``positional_arguments`` passes a case's arguments in the
reference's order, and ``signature_note`` points out renamed or reordered parameters."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from .registry import Exercise


def describe(value: Any) -> str:
    """What a value is, for a message: 'a tensor of shape (3,)', 'float 0.5', 'list'."""
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
            return f"expected a torch.Tensor of shape {tuple(want.shape)}, got {describe(got)}"
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
                    f"{f'{n} values' if n is not None else describe(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, atol, rtol)
            if problem:
                return f"item {i} of the tuple: {problem}"
        return None
    if isinstance(want, bool):
        if (isinstance(got, torch.Tensor) and got.numel() == 1) or type(got).__name__ in ("bool_", "bool"):
            got = bool(got)  # a one-element tensor or a numpy bool
        if not isinstance(got, bool):
            return f"expected True or False, got {describe(got)}"
        return None if got == want else f"expected {want}, got {got}"
    if isinstance(want, (float, int)):
        if isinstance(got, torch.Tensor) and got.numel() != 1:
            return f"expected a single number, got a tensor of shape {tuple(got.shape)}"
        if isinstance(got, (str, bytes)):
            return f"expected a number, got the text {got!r}"
        try:
            g = float(got)
        except (TypeError, ValueError):
            return f"expected a number, got {describe(got)}"
        w = float(want)
        if math.isnan(w) or math.isnan(g):
            return None if math.isnan(w) and math.isnan(g) else f"expected {w:.6g}, got {g:.6g}"
        if not math.isclose(g, w, rel_tol=rtol, abs_tol=atol):
            return f"expected {w:.6g}, got {g:.6g}" + _sign_note(_t(g), _t(w), atol, rtol)
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {describe(got)}"
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


def signature_note(exercise: Exercise, fn: Any) -> str:
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
