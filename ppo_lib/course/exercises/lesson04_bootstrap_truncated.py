"""Lesson 04 exercise: bootstrapping at a time limit.

``bootstrap_truncated(rewards, terminated, truncated, final_values, gamma)`` applies
ppo_lib's episode-end convention (API.md): where an episode was cut off by a time limit
(truncated and not terminated), add gamma * V(final observation) to that step's reward; a
real end (terminated, even if truncated too) gets nothing. ``gae`` and ``value_loss`` are
in ``lesson04.py`` (registered first).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..grading import Case, Exercise, register
from .cases import Known, graded_case, mistakes_of


def bootstrap_truncated(rewards: Tensor, terminated: Tensor, truncated: Tensor,
                        final_values: Tensor, gamma: float) -> Tensor:
    """r_t + gamma * V(s_final) where truncated and not terminated, else r_t (a new tensor).

    ``terminated`` and ``truncated`` are 0/1 (or bool) tensors shaped like ``rewards``;
    ``final_values`` holds V(final observation) for every step (ignored where no time limit
    was hit).
    """
    time_limit = truncated.bool() & ~terminated.bool()
    return rewards + gamma * final_values * time_limit.to(rewards.dtype)


def T(values) -> Tensor:  # noqa: N802
    return torch.tensor(values, dtype=torch.float32)


def _also_on_terminated(rewards, terminated, truncated, final_values, gamma):
    ended = truncated.bool() | terminated.bool()
    return rewards + gamma * final_values * ended.float()


def _ignores_terminated(rewards, terminated, truncated, final_values, gamma):
    return rewards + gamma * final_values * truncated.float()


def _no_gamma(rewards, terminated, truncated, final_values, gamma):
    return bootstrap_truncated(rewards, terminated, truncated, final_values, 1.0)


def _never(rewards, terminated, truncated, final_values, gamma):
    return rewards.clone()


def _replaces_reward(rewards, terminated, truncated, final_values, gamma):
    time_limit = truncated.bool() & ~terminated.bool()
    return torch.where(time_limit, gamma * final_values, rewards)


def _float_arithmetic(rewards, terminated, truncated, final_values, gamma):
    return rewards + gamma * final_values * truncated * (1 - terminated)  # fails on bool flags


def _bool_operators(rewards, terminated, truncated, final_values, gamma):
    return rewards + gamma * final_values * (truncated & ~terminated)  # fails on float flags


def _in_place(rewards, terminated, truncated, final_values, gamma):
    time_limit = truncated.bool() & ~terminated.bool()
    rewards += gamma * final_values * time_limit.to(rewards.dtype)  # the caller's rewards
    return rewards


BT_KNOWN = [
    Known("bootstraps real ends too", _also_on_terminated, "real end",
          "you bootstrap at real ends too: terminated means no future, add gamma * V only "
          "where truncated AND NOT terminated"),
    Known("bootstraps when both flags are set", _ignores_terminated, "AND NOT terminated",
          "you bootstrap when both flags are set: the episode really ended, bootstrap only "
          "where truncated AND NOT terminated"),
    Known("forgets gamma", _no_gamma, "multiply V(final observation) by gamma",
          "you add V(final observation) without gamma: multiply V(final observation) by gamma"),
    Known("never bootstraps (the notes' single done flag)", _never, "not a real end",
          "you never bootstrap: a truncation is not a real end, add gamma * V(final "
          "observation) to that step's reward"),
    Known("replaces the reward instead of adding to it", _replaces_reward, "replace the reward",
          "you replace the reward: add gamma * V(final observation) to r_t, the step's own "
          "reward still counts"),
    Known("float arithmetic on the flags (fails on bool flags)", _float_arithmetic,
          "may be bool"),
    Known("& and ~ on the flags (fail on 0/1 float flags)", _bool_operators, ".bool()"),
    Known("adds into the caller's rewards in place", _in_place, "compute into new tensors"),
]


def bootstrap_truncated_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, bootstrap_truncated, args, hint=hint, known=BT_KNOWN,
                          expected=expected)
    return [
        case("a time limit bootstraps", (T([1.0, 1.0]), T([0.0, 0.0]), T([0.0, 1.0]),
                                         T([0.0, 10.0]), 0.9),
             expected=T([1.0, 10.0]),
             hint="a truncation is not a real end: add gamma * V(final observation) to that "
                  "step's reward (1 + 0.9 * 10 = 10 here); the flags here are 0/1 floats (turn "
                  "them into bools with .bool() before using & and ~)"),
        case("a real end does not", (T([1.0, 1.0]), T([0.0, 1.0]), T([0.0, 0.0]),
                                     T([5.0, 10.0]), 0.9),
             expected=T([1.0, 1.0]),
             hint="terminated means no future: nothing is added, whatever final_values says"),
        case("terminated and truncated together: a real end",
             (T([1.0]), T([1.0]), T([1.0]), T([10.0]), 0.9), expected=T([1.0]),
             hint="when both flags are set (the pole fell on the last allowed step), the "
                  "episode really ended: bootstrap only where truncated AND NOT terminated"),
        case("gamma is an argument", (T([0.0, 2.0]), T([0.0, 0.0]), T([1.0, 0.0]),
                                      T([4.0, 3.0]), 0.5),
             expected=T([2.0, 2.0]), hint="multiply V(final observation) by gamma"),
        case("float flags, shape (T, N) = (3, 2)",
             (T([[1.0, 0.0], [0.5, 1.0], [2.0, 1.0]]), T([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]),
              T([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]), T([[3.0, 3.0], [9.0, 9.0], [4.0, 2.0]]),
              0.5),
             expected=T([[2.5, 0.0], [0.5, 1.0], [2.0, 2.0]]),
             hint="work elementwise on tensors shaped like rewards"),
        case("bool flags, shape (T, N)",
             (T([[1.0, 1.0], [1.0, 1.0]]), torch.tensor([[False, True], [False, False]]),
              torch.tensor([[True, False], [False, True]]), T([[2.0, 2.0], [2.0, 2.0]]), 0.99),
             expected=T([[2.98, 1.0], [1.0, 2.98]]),
             hint="flags may be bool: 1 - flag fails on a bool tensor; use flag.bool() with & "
                  "and ~, then .to(rewards.dtype)"),
    ]


register(Exercise(
    id="bootstrap_truncated", lesson="04",
    title="Bootstrap at a time limit: reward += gamma * V(final_obs) if truncated, not terminated",
    cases=bootstrap_truncated_cases, reference=bootstrap_truncated,
    mistakes=lambda: mistakes_of(BT_KNOWN)))
