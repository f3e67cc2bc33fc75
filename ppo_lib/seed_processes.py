"""Seeds in lockstep on every core (``ppo_lib.lockstep.train_seeds``).

A group of seeds in lockstep is one batched network on one torch thread: one core. On a
machine with c cores ``train_seeds`` splits the K seeds into c groups, trains the first
group in this process and every other group in a child process forked from it, all at once;
each child sends its trained models back (``torch.save``) and ends. Each group trains exactly
as it would alone on one thread, so each seed is still, bit for bit, its lone run.

Why processes, not threads: a group's Python (the training loop, the envs) holds the GIL;
two threads of lockstep were slower than one (measured: 3.8 s against 2.9 s for 8 seeds of
lesson 07's CartPole set). Why fork: a spawned process imports torch again (seconds); a forked
one starts in milliseconds with everything already built. Forking is Linux-only here (on
macOS and Windows all seeds are one group, in this process, with the same results).

A child prints nothing and draws nothing: what it writes to stdout / stderr and the warnings
it raises are sent back and replayed here. It dies with this process (``PR_SET_PDEATHSIG``),
and is killed and reaped when this process stops early (an error, Ctrl-C). A child whose
models cannot be pickled (a ``lambda`` schedule in the config) says so, and its group is
trained here instead (so is a group whose process cannot be made); a child whose training
raised hands the exception over.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

TrainGroup = Callable[[list[int], int | None], list]  # (seeds, bar total or None) -> models


# --- how many processes, which seeds in each --------------------------------------------------
def usable_cores() -> int:
    """The cores this process may use, at least 1: its CPU affinity, and no more than a
    container's CPU quota allows (a JupyterHub pod limited to 2 CPUs on a 64-core host)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota)) if quota is not None else cores)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPUs a cgroup quota grants this process (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), or None when there is no quota."""
    for path, split in ((f"{root}/cpu.max", None),
                        (f"{root}/cpu/cpu.cfs_quota_us", f"{root}/cpu/cpu.cfs_period_us")):
        try:
            with open(path) as file:
                text = file.read().split()
            if split is not None:
                with open(split) as file:
                    text = [text[0], file.read().split()[0]]
        except OSError:
            continue
        if text[0] in ("max", "-1"):
            return None
        return int(text[0]) / int(text[1])
    return None


def can_fork() -> bool:
    """Whether groups of seeds can train in forked processes here (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def check_seeds(seeds: Any) -> list[int]:
    """``seeds`` as a list of distinct ints, else ValueError naming the value."""
    try:
        seeds = list(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a list of distinct integers, got {seeds!r}") from None
    if not seeds:
        raise ValueError("seeds is empty; expected at least one integer seed, e.g. [0, 1, 2]")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seeds must be integers, got {seed!r} "
                             f"({type(seed).__name__}) in seeds={seeds!r}")
    seeds = [int(seed) for seed in seeds]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds={seeds!r} repeats {repeated}: each seed once (a repeated "
                         f"seed is the same run)")
    return seeds


def check_processes(processes: Any) -> int | None:
    """``processes`` (None: every usable core) as a positive int or None, else ValueError."""
    if processes is None:
        return None
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive integer (the number of processes "
                         f"that train groups of seeds at once) or None for every usable core "
                         f"({usable_cores()} here), got {processes!r}")
    return processes


def seed_groups(seeds: Sequence[int], processes: int | None) -> list[list[int]]:
    """``seeds`` in order, split into min(processes, K) groups of near-equal size (the larger
    groups first): one group per process."""
    n = min(len(seeds), usable_cores() if processes is None else processes)
    if n > 1 and not can_fork():
        n = 1
    size, extra = divmod(len(seeds), n)
    groups, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        groups.append(list(seeds[start:end]))
        start = end
    return groups


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (``time.process_time`` counts
    only this process: a group trained in a child would be missing)."""
    try:
        import resource
    except ImportError:  # Windows: no children here either
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# --- the groups at once ----------------------------------------------------------------------
def train_groups(train_group: TrainGroup, groups: list[list[int]], bar_total: int | None,
                 prepare: Callable[[Any], None], finish: Callable[[Any], None]) -> list:
    """``train_group(group, bar)`` for every group, the first here and the others in forked
    children, at once -> all models, in the order of the groups.

    ``bar_total``: the first group shows a progress bar of this many steps (None: no bar).
    ``prepare(model)`` makes a child's trained model picklable (e.g. drops a fast path that
    holds kernel functions), ``finish(model)`` makes every trained model ready here (remakes
    it): both run once per model. A group whose process cannot be made (a process limit,
    memory) trains here after the first.
    """
    results: list[list | None] = [None] * len(groups)
    children: list[tuple[int, int, int]] = []  # (group index, pid, read end of its pipe)
    try:
        for index in range(1, len(groups)):
            with contextlib.suppress(OSError):
                children.append((index, *_fork(train_group, groups[index], prepare)))
        results[0] = list(train_group(groups[0], bar_total))
        while children:
            index, pid, read_fd = children.pop(0)
            results[index] = _collect(pid, read_fd, groups[index], train_group)
        for index, group in enumerate(groups):
            if results[index] is None:
                results[index] = list(train_group(group, None))
    finally:
        for _, pid, read_fd in children:  # stopped early: end the children still running
            with contextlib.suppress(OSError):
                os.close(read_fd)
            _end(pid)
    models = [model for group_models in results for model in group_models]
    for model in models:
        finish(model)
    return models


def _fork(train_group: TrainGroup, group: list[int], prepare) -> tuple[int, int]:
    """A child training ``group``: (its pid, the read end of its pipe)."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(train_group, group, prepare, write_fd)
    os.close(write_fd)
    return pid, read_fd


def _end(pid: int) -> None:
    """Kill the child ``pid`` (if it still runs) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _child(train_group: TrainGroup, group: list[int], prepare, write_fd: int) -> None:
    """Train ``group``, write the pickled outcome to ``write_fd``, exit without running this
    process's exit handlers (they belong to the parent: a notebook's kernel, pytest, ...)."""
    try:
        _die_with_parent()
        out, err = io.StringIO(), io.StringIO()
        try:
            with warnings.catch_warnings(record=True) as caught, \
                    contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                models = train_group(group, None)
            for model in models:
                prepare(model)
            shown = [(w.message, w.category, w.filename, w.lineno) for w in caught]
            try:
                data = _dumps(("models", models, out.getvalue(), err.getvalue(), shown))
            except Exception as error:  # noqa: BLE001 - the parent trains the group itself
                data = pickle.dumps(("unpicklable", f"{type(error).__name__}: {error}"))
        except BaseException as error:  # noqa: BLE001 - the parent raises it
            text = traceback.format_exc()
            try:
                data = pickle.dumps(("error", error, text))
            except Exception:  # noqa: BLE001 - an exception that cannot be pickled
                data = pickle.dumps(("error", RuntimeError(text), text))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    finally:
        os._exit(0)


def _dumps(outcome: tuple) -> bytes:
    """The outcome pickled by ``torch.save``, which writes a storage once however many
    tensors view it (a group's parameters and Adam state are rows of one buffer; plain
    pickle would write the whole buffer for every parameter: 20 MB for four CartPole
    models, against 1 MB)."""
    buffer = io.BytesIO()
    torch.save(outcome, buffer)
    return buffer.getvalue()


def _die_with_parent() -> None:
    """Linux: SIGKILL this (child) process when its parent ends."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _collect(pid: int, read_fd: int, group: list[int], train_group: TrainGroup) -> list:
    """A child's models (its output and warnings replayed here), after it ended."""
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:  # e.g. Ctrl-C while reading: the child may be mid-write
        _end(pid)
        raise
    if not data:
        raise RuntimeError(f"the process training seeds {group} in lockstep ended without "
                           f"a result ({_how_it_ended(status)}); train_seeds(..., "
                           f"processes=1) trains every seed in this process")
    outcome = torch.load(io.BytesIO(data), weights_only=False) if data[:1] == b"P" else \
        pickle.loads(data)  # torch.save's zip file (b"PK"), or a pickle
    if outcome[0] == "unpicklable":  # e.g. a lambda schedule: train the group here
        return list(train_group(group, None))
    if outcome[0] == "error":
        error, text = outcome[1], outcome[2]
        if isinstance(error, BaseException):
            raise error from RuntimeError(f"in the process training seeds {group}:\n{text}")
        raise RuntimeError(text)
    _, models, out, err, shown = outcome
    sys.stdout.write(out)
    sys.stderr.write(err)
    for message, category, filename, lineno in shown:
        warnings.warn_explicit(message, category, filename, lineno)
    return models


def _how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"killed by signal {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
