"""What a learner's function may change in the kernel (random states, grad mode, default
dtype, print, sys.stdout, signal handlers, environment variables, ...): ``KernelState``
saves it before the call and puts back what changed, so a check leaves the lesson as it
found it."""

from __future__ import annotations

import builtins
import gc
import operator
import os
import random
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch


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


class KernelState:
    """Saves what a learner's function may change in the kernel (``_kernel_settings``) and
    puts back what changed, so that a check leaves the lesson as it found it."""

    def __init__(self, fn: Any = None):
        self.fn = fn

    def __enter__(self) -> KernelState:
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
