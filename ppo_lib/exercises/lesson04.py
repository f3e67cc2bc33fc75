"""Lesson 04 exercise beyond the core ones: bootstrapping at a time limit.

``bootstrap_truncated(rewards, terminated, truncated, final_values, gamma)`` applies
ppo_lib's episode-end convention (API.md): where an episode was cut off by a time limit
(truncated and not terminated), add gamma * V(final observation) to that step's reward; a
real end (terminated, even if truncated too) gets nothing. ``gae`` and ``value_loss`` are
registered in ``core.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..grading import Case, Exercise, Mistake, register


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


def bootstrap_truncated_cases() -> list[Case]:
    return [
        Case("a time limit bootstraps", args=(T([1.0, 1.0]), T([0.0, 0.0]), T([0.0, 1.0]),
                                              T([0.0, 10.0]), 0.9),
             expected=T([1.0, 10.0]),
             hint="a truncation is not a real end: add gamma * V(final observation) to that "
                  "step's reward (1 + 0.9 * 10 = 10 here)"),
        Case("a real end does not", args=(T([1.0, 1.0]), T([0.0, 1.0]), T([0.0, 0.0]),
                                          T([5.0, 10.0]), 0.9),
             expected=T([1.0, 1.0]),
             hint="terminated means no future: nothing is added, whatever final_values says"),
        Case("terminated and truncated together: a real end",
             args=(T([1.0]), T([1.0]), T([1.0]), T([10.0]), 0.9), expected=T([1.0]),
             hint="when both flags are set (the pole fell on the last allowed step), the "
                  "episode really ended: bootstrap only where truncated AND NOT terminated"),
        Case("gamma is an argument", args=(T([0.0, 2.0]), T([0.0, 0.0]), T([1.0, 0.0]),
                                           T([4.0, 3.0]), 0.5),
             expected=T([2.0, 2.0]), hint="multiply V(final observation) by gamma"),
        Case("bool flags, shape (T, N)",
             args=(T([[1.0, 1.0], [1.0, 1.0]]), torch.tensor([[False, True], [False, False]]),
                   torch.tensor([[True, False], [False, True]]), T([[2.0, 2.0], [2.0, 2.0]]),
                   0.99),
             expected=T([[2.98, 1.0], [1.0, 2.98]]),
             hint="work elementwise on tensors shaped like rewards; flags may be bool"),
    ]


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


def bootstrap_truncated_mistakes() -> list[Mistake]:
    return [
        Mistake("bootstraps real ends too", _also_on_terminated),
        Mistake("bootstraps when both flags are set", _ignores_terminated),
        Mistake("forgets gamma", _no_gamma),
        Mistake("never bootstraps (the notes' single done flag)", _never),
        Mistake("replaces the reward instead of adding to it", _replaces_reward),
    ]


register(Exercise(
    id="bootstrap_truncated", lesson="04",
    title="Bootstrap at a time limit: reward += gamma * V(final_obs) if truncated, not terminated",
    cases=bootstrap_truncated_cases, reference=bootstrap_truncated,
    mistakes=bootstrap_truncated_mistakes))
