"""Discounted returns and Generalised Advantage Estimation (lessons 00, 01 and 04).

Symbols: gamma (discount), gae_lambda (lambda), rewards r_t, values V(s_t), dones d_t
(1.0 when the transition at step t ended the episode, for either reason; a time-limit
truncation has already had gamma * V(final_observation) added to its reward, see
``ppo_lib.rollout``).

Shapes: ``(T,)`` for one env or ``(T, N)`` for N parallel envs; ``last_values`` is ``(N,)``
(or a scalar / ``()`` for one env).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import check_in_range, check_same_shape


def _bootstrap(name: str, last_values: Tensor | float | None, like: Tensor) -> Tensor:
    """V(s_T) as a tensor of shape like[0] (one value per env)."""
    if last_values is None:
        return torch.zeros_like(like[0])
    if not isinstance(last_values, Tensor):
        last_values = torch.as_tensor(last_values, dtype=like.dtype)
    last_values = last_values.to(like.dtype)
    if last_values.numel() == like[0].numel():
        return last_values.reshape(like[0].shape)
    raise ValueError(f"{name} must have one value per env, shape {tuple(like[0].shape)}, "
                     f"got shape {tuple(last_values.shape)}")


def discounted_returns(rewards: Tensor, dones: Tensor, gamma: float,
                       last_values: Tensor | None = None) -> Tensor:
    """Discounted return of every step, reset at episode ends (lesson 00, eq. 0.1).

        G_t = r_t + gamma * (1 - d_t) * G_{t+1},     G_T = last_values (0 if None)
    """
    check_same_shape(rewards=rewards, dones=dones)
    check_in_range("gamma", gamma, 0.0, 1.0)
    not_done = 1.0 - dones.to(rewards.dtype)
    returns = torch.empty_like(rewards)
    next_return = _bootstrap("last_values", last_values, rewards)
    for t in reversed(range(rewards.shape[0])):
        next_return = rewards[t] + gamma * not_done[t] * next_return
        returns[t] = next_return
    return returns


def gae(rewards: Tensor, values: Tensor, dones: Tensor, last_values: Tensor | float,
        gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016; lesson 04, eq. 4.3).

        delta_t = r_t + gamma * V_{t+1} * (1 - d_t) - V_t,      V_T = last_values
        A_t     = delta_t + gamma * gae_lambda * (1 - d_t) * A_{t+1}
        returns = A_t + V_t        (the lambda-return R_t, eq. 4.4: the target of loss_vf, eq. 4.5)

    Returns ``(advantages, returns)``, both shaped like ``rewards``.
    """
    check_same_shape(rewards=rewards, values=values, dones=dones)
    check_in_range("gamma", gamma, 0.0, 1.0)
    check_in_range("gae_lambda", gae_lambda, 0.0, 1.0)
    not_done = 1.0 - dones.to(rewards.dtype)
    next_values = torch.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = _bootstrap("last_values", last_values, values)
    deltas = rewards + gamma * next_values * not_done - values

    advantages = torch.empty_like(rewards)
    next_advantage = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        next_advantage = deltas[t] + gamma * gae_lambda * not_done[t] * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values
