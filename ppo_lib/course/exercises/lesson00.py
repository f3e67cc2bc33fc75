"""Lesson 00 exercise: discounted returns with episode ends.

``discounted_returns(rewards, dones, gamma, last_values=None)``: G_t = r_t + gamma * (1 - d_t)
* G_{t+1}, bootstrapped from ``last_values`` (API.md).
"""

from __future__ import annotations

import torch

from ... import returns
from ..grading import Case, Exercise, register
from .cases import HINT_KEEP_SHAPE, Known, T, graded_case, mistakes_of, random_dones, uniform


# ---------------------------------------------------------------------------------------
# discounted_returns(rewards, dones, gamma, last_values=None)

HINT_BACKWARDS = ("G_t = r_t + gamma * (1 - d_t) * G_{t+1}: loop backwards over time, "
                  "for t in reversed(range(T)), every step from T - 1 down to 0")
HINT_DONES = ("an episode ends at step 1: (1 - d_t) masks gamma * G_{t+1}, so no return "
              "flows across an episode boundary")
HINT_OWN_REWARD = ("the step that ends an episode still earns its own reward: "
                   "G_t = r_t + gamma * (1 - d_t) * G_{t+1} masks only the future term")
HINT_LAST = ("the return after the last step starts from G_T = last_values (the critic's "
             "estimate of the unfinished episode)")
HINT_DONE_LAST = ("the last step ended its episode, so nothing is bootstrapped past it: "
                  "G_{T-1} = r_{T-1} + gamma * (1 - d_{T-1}) * last_values")
HINT_TN = ("(T, N) inputs: time is axis 0 (len(rewards) = T); each step works on all N envs "
           "at once; last_values has one value per env, shape (N,); allocate with "
           "torch.zeros_like(rewards)")
HINT_NO_LAST = ("last_values=None on (T, N) rewards (as REINFORCE calls it): start from "
                "zeros with one value per env, torch.zeros_like(rewards[0])")


def _dr_loop(rewards, dones, gamma, last_values=None, *, steps=None, mask_next=False,
             mask_all=False, use_dones=True, use_last=True, time_axis=0):
    """discounted_returns with switches for the classic mistakes."""
    out = torch.zeros_like(rewards)
    n = rewards.shape[time_axis]
    g = torch.zeros_like(rewards[0]) if last_values is None or not use_last else last_values
    not_done = 1.0 - dones if use_dones else torch.ones_like(dones)
    for t in (reversed(range(n)) if steps is None else steps(n)):
        mask = not_done[t + 1] if mask_next and t + 1 < n else not_done[t]
        if mask_all:
            g = (rewards[t] + gamma * g) * mask
        else:
            g = rewards[t] + gamma * mask * g
        out[t] = g
    return out


def _dr_reversed_list(rewards, dones, gamma, last_values=None):
    g = torch.zeros_like(rewards[0]) if last_values is None else last_values
    out = []
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * (1 - dones[t]) * g
        out.append(g)
    return torch.stack(out)  # built from the last step backwards, never reversed


def _dr_forward(rewards, dones, gamma, last_values=None):
    out = torch.zeros_like(rewards)
    g = torch.zeros_like(rewards[0])
    for t in range(len(rewards)):  # forwards: sums the past, not the future
        g = rewards[t] + gamma * (1 - dones[t]) * g
        out[t] = g
    return out


def _dr_only_1d(rewards, dones, gamma, last_values=None):
    out = torch.zeros(len(rewards))
    g = 0.0 if last_values is None else float(last_values)
    for t in reversed(range(len(rewards))):
        g = float(rewards[t]) + gamma * (1 - float(dones[t])) * g
        out[t] = g
    return out


def _dr_squeezes(rewards, dones, gamma, last_values=None):
    rewards, dones = rewards.squeeze(), dones.squeeze()
    lv = None if last_values is None else torch.as_tensor(last_values).squeeze()
    return returns.discounted_returns(rewards, dones, gamma, lv)


def _dr_in_place(rewards, dones, gamma, last_values=None):
    nxt = torch.zeros_like(rewards[0]) if last_values is None else last_values
    for t in reversed(range(len(rewards))):
        rewards[t] += gamma * (1 - dones[t]) * nxt  # writes into the caller's rewards
        nxt = rewards[t]
    return rewards


DR_KNOWN = [
    Known("accumulates forwards in time", _dr_forward, "forwards in time",
          "you accumulate forwards in time: G_t sums the FUTURE rewards, loop from t = T - 1 "
          "down to 0"),
    Known("returns the list built backwards without reversing it", _dr_reversed_list,
          "reverse order", "your returns are in reverse order: you built them from the last "
          "step backwards, so reverse the list (or write into out[t])"),
    Known("loop over range(T - 1) skips the last step",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, steps=lambda n: reversed(range(n - 1))),
          "misses a step",
          "your loop misses a step: reversed(range(T)) visits every t from T - 1 down to 0 "
          "(range(T - 1) stops one short)"),
    Known("loop over range(T - 1, 0, -1) skips step 0",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, steps=lambda n: range(n - 1, 0, -1)),
          "misses a step",
          "your loop misses a step: range(T - 1, -1, -1) (or reversed(range(T))) ends at t = 0"),
    Known("masks the return instead of the recursion",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, mask_all=True),
          "still earns its own reward",
          "you multiply the whole return by (1 - d_t): the step that ended the episode still "
          "earns its own reward r_t, (1 - d_t) masks only gamma * G_{t+1}"),
    Known("masks with the next step's done (CleanRL's convention)",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, mask_next=True), "CleanRL",
          "you mask with d_{t+1}: here dones[t] = 1 means the transition at step t ended the "
          "episode, so mask with (1 - dones[t]) (in CleanRL dones[t + 1] marks that "
          "instead)"),
    Known("ignores episode ends", lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, use_dones=False),
          "ignore episode ends",
          "you ignore episode ends: multiply gamma * G_{t+1} by (1 - d_t) so that no return "
          "flows across an episode boundary"),
    Known("ignores last_values", lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, use_last=False),
          "ignore last_values",
          "you ignore last_values: the return after the last step starts from "
          "G_T = last_values"),
    Known("loops over the last axis (N for (T, N) inputs)",
          lambda r, d, g, lv=None: _dr_loop(r, d, g, lv, time_axis=-1), "time is axis 0",
          "you loop over the last axis: for (T, N) inputs rewards.shape[-1] is N, time is "
          "axis 0 (len(rewards) or rewards.shape[0])"),
    Known("works for (T,) only (Python floats)", _dr_only_1d, "(T, N) inputs"),
    Known("squeezes its inputs", _dr_squeezes, "no squeeze()"),
    Known("writes into the caller's rewards", _dr_in_place, "compute into new tensors"),
]


def discounted_returns_cases() -> list[Case]:
    def case(name, args, kwargs=None, *, hint, expected=None):
        return graded_case(name, returns.discounted_returns, args, kwargs, hint=hint,
                           known=DR_KNOWN, expected=expected)
    return [
        case("one episode, no ends, gamma 0.9", (T([1.0, 2.0, 3.0]), T([0.0, 0.0, 0.0]), 0.9),
             expected=T([5.23, 4.7, 3.0]), hint=HINT_BACKWARDS),
        case("gamma 0 gives the rewards", (T([1.0, 2.0, 3.0]), T([0.0, 0.0, 0.0]), 0.0),
             expected=T([1.0, 2.0, 3.0]), hint="with gamma = 0 only the immediate reward counts"),
        case("the step that ends an episode keeps its reward", (T([1.0, 2.0]), T([0.0, 1.0]), 0.5),
             expected=T([2.0, 2.0]), hint=HINT_OWN_REWARD),
        case("an episode ends at step 1", (T([1.0, 2.0, 3.0, 4.0]), T([0.0, 1.0, 0.0, 0.0]), 0.5),
             expected=T([2.0, 2.0, 5.0, 4.0]), hint=HINT_DONES),
        case("bootstrap from last_values", (T([1.0, 1.0]), T([0.0, 0.0]), 0.5),
             {"last_values": T(4.0)}, expected=T([2.5, 3.0]), hint=HINT_LAST),
        case("no bootstrap after an end at the last step", (T([1.0, 1.0]), T([0.0, 1.0]), 0.5),
             {"last_values": T(4.0)}, expected=T([1.5, 1.0]), hint=HINT_DONE_LAST),
        case("(T, N) = (6, 3) with episode ends and last_values (N,)",
             (uniform((6, 3), 1, -1, 1), random_dones((6, 3), 2, 0.3), 0.9),
             {"last_values": uniform((3,), 3, 0, 5)}, hint=HINT_TN),
        case("(T, N) = (5, 4), last_values=None (as REINFORCE calls it)",
             (uniform((5, 4), 4, 0, 1), torch.zeros(5, 4), 0.99), hint=HINT_NO_LAST),
        case("one env: (T, N) = (5, 1), last_values (1,)",
             (uniform((5, 1), 5, -1, 1), T([[0.0], [1.0], [0.0], [0.0], [0.0]]), 0.9),
             {"last_values": T([2.0])}, hint=HINT_KEEP_SHAPE),
        case("one step: (T, N) = (1, 4), last_values (4,)",
             (T([[1.0, 2.0, 3.0, 4.0]]), T([[0.0, 1.0, 0.0, 1.0]]), 0.5),
             {"last_values": T([2.0, 2.0, 4.0, 4.0])}, expected=T([[2.0, 2.0, 5.0, 4.0]]),
             hint=HINT_KEEP_SHAPE),
    ]


register(Exercise(
    id="discounted_returns", lesson="00", title="Discounted returns with episode ends",
    cases=discounted_returns_cases, reference=returns.discounted_returns,
    mistakes=lambda: mistakes_of(DR_KNOWN)))
