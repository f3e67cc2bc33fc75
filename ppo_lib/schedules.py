"""Schedules: a hyperparameter as a function of progress_remaining (1 at the start of
training, 0 at the end), as in SB3. Lesson 07.

The source notes call ``clip_range=lambda progress: 0.2 * progress`` "adaptive clipping"; it
is plain linear annealing (the notes' error 7): ``linear_schedule(0.2)``.

The schedule objects here are plain data (a name and numbers), so a model that uses them
saves without pickling code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Schedule = Callable[[float], float]


@dataclass(frozen=True)
class ConstantSchedule:
    value: float

    def __call__(self, progress_remaining: float) -> float:
        return self.value

    def to_dict(self) -> dict:
        return {"kind": "constant", "value": float(self.value)}


@dataclass(frozen=True)
class LinearSchedule:
    """value = end + (start - end) * progress_remaining: start at first, end at the end."""

    start: float
    end: float = 0.0

    def __call__(self, progress_remaining: float) -> float:
        return self.end + (self.start - self.end) * progress_remaining

    def to_dict(self) -> dict:
        return {"kind": "linear", "start": float(self.start), "end": float(self.end)}


def linear_schedule(start: float, end: float = 0.0) -> LinearSchedule:
    """Linear annealing from ``start`` (progress_remaining 1) to ``end`` (0), as rl-zoo's
    ``lin_3e-4``."""
    return LinearSchedule(float(start), float(end))


def as_schedule(value: float | Schedule) -> Schedule:
    """A float becomes a constant schedule; a callable is used as it is."""
    if callable(value):
        return value
    return ConstantSchedule(float(value))


def checked_value(name: str, schedule: Schedule, progress_remaining: float,
                  num_timesteps: int) -> float:
    """``schedule(progress_remaining)``, which must be a finite number >= 0 (ValueError,
    naming the schedule, when it is not: raised before an update changes anything)."""
    value = schedule(progress_remaining)
    try:
        valid = math.isfinite(float(value)) and float(value) >= 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"the {name} schedule {getattr(schedule, '__qualname__', schedule)!r} "
            f"returned {value!r} at progress_remaining={progress_remaining:.6g} "
            f"(num_timesteps={num_timesteps}, the update not made); a {name} must "
            f"be a finite number >= 0. A schedule maps progress_remaining (1 at the "
            f"start, 0 at the end) to the value, e.g. "
            f"ppo_lib.schedules.linear_schedule(3e-4)")
    return value


def schedule_to_dict(schedule: Schedule) -> dict | None:
    """Plain-data description of a schedule, or None when it is arbitrary code."""
    to_dict = getattr(schedule, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def schedule_from_dict(data: dict) -> Schedule:
    if data["kind"] == "constant":
        return ConstantSchedule(data["value"])
    if data["kind"] == "linear":
        return LinearSchedule(data["start"], data["end"])
    raise ValueError(f"unknown schedule kind {data['kind']!r}, expected 'constant' or 'linear'")
