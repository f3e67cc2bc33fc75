"""Collecting experience and cutting it into minibatches (lessons 04 and 05).

One rollout is ``n_steps`` steps of ``n_envs`` envs, stored in preallocated buffers of
shape (T, N, ...) = (n_steps, n_envs, ...). Collection runs under ``torch.no_grad()``: the
old policy's log-probabilities and values are constants of the update that follows.

Episode ends follow the one convention of ``ppo_lib`` (API.md): ``dones[t, i] = 1`` when the
transition at step t ended the episode, for either reason. A time-limit truncation is not a
real end, so its reward first gets ``gamma * V(final_obs)`` added (SB3's timeout bootstrap,
``OnPolicyAlgorithm.collect_rollouts``), then it is treated as done.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from .envs import VecEnv
from .normalization import Normalizer
from .policies import clip_actions
from .returns import gae


@dataclass
class Rollout:
    """The buffers of one rollout; shapes (T, N, ...) with T = n_steps, N = n_envs."""

    obs: Tensor          # (T, N, *obs_shape) observations the actions were chosen from
    actions: Tensor      # (T, N) int64 for Discrete, (T, N, action_dim) unclipped for Box,
    #                      (T, N, len(nvec)) / (T, N, n) int64 for MultiDiscrete / MultiBinary
    rewards: Tensor      # (T, N) rewards, timeouts already bootstrapped
    dones: Tensor        # (T, N) 1.0 where the step ended the episode
    values: Tensor       # (T, N) V_old(s_t)
    log_probs: Tensor    # (T, N) log pi_old(a_t|s_t)
    advantages: Tensor   # (T, N) filled by compute_advantages
    returns: Tensor      # (T, N) advantages + values (the lambda-returns)
    last_values: Tensor  # (N,) V_old(s_T), the bootstrap after the last step

    @classmethod
    def allocate(cls, n_steps: int, n_envs: int, observation_space: spaces.Space,
                 action_space: spaces.Space) -> "Rollout":
        obs_dtype = torch.uint8 if observation_space.dtype == np.uint8 else torch.float32
        if isinstance(action_space, spaces.Discrete):
            actions = torch.zeros(n_steps, n_envs, dtype=torch.long)
        elif isinstance(action_space, (spaces.MultiDiscrete, spaces.MultiBinary)):
            actions = torch.zeros(n_steps, n_envs, *action_space.shape, dtype=torch.long)
        else:
            actions = torch.zeros(n_steps, n_envs, *action_space.shape)
        obs = torch.zeros(n_steps, n_envs, *observation_space.shape, dtype=obs_dtype)
        # rewards, dones, values, log_probs, advantages, returns: (T, N) each
        per_step = [torch.zeros(n_steps, n_envs) for _ in range(6)]
        return cls(obs, actions, *per_step, torch.zeros(n_envs))

    @property
    def n_steps(self) -> int:
        return self.rewards.shape[0]


def check_batch_size(batch_size: int, n_steps: int, n_envs: int) -> None:
    """A minibatch no larger than the rollout (ValueError), and a warning, as SB3's, when
    it does not divide the rollout (the last minibatch of each epoch is then smaller)."""
    rollout_size = n_steps * n_envs
    if batch_size > rollout_size:
        raise ValueError(f"batch_size={batch_size} is larger than the rollout, n_steps * "
                         f"n_envs = {n_steps} * {n_envs} = {rollout_size}; "
                         f"use batch_size <= {rollout_size}")
    if rollout_size % batch_size:
        warnings.warn(f"batch_size={batch_size} does not divide the rollout, n_steps * "
                      f"n_envs = {n_steps} * {n_envs} = {rollout_size}: after every "
                      f"{rollout_size // batch_size} minibatches of {batch_size} comes a "
                      f"truncated one of {rollout_size % batch_size}. Use a batch_size that "
                      f"divides {rollout_size}", UserWarning, stacklevel=3)


def check_finite(rollout: Rollout, num_timesteps: int, learning_rate: float) -> None:
    """FloatingPointError, saying where they came from, for NaN or inf in a rollout."""
    if rollout.obs.is_floating_point() and not torch.isfinite(rollout.obs).all():
        raise FloatingPointError(
            f"NaN or inf in the observations of the rollout ending at num_timesteps="
            f"{num_timesteps}: the env returned them (check the env's step / reset), "
            f"or observation normalisation divided by a zero variance")
    if not torch.isfinite(rollout.rewards).all():
        raise FloatingPointError(
            f"NaN or inf in the rewards of the rollout ending at num_timesteps="
            f"{num_timesteps}: the env returned them, or the critic's V(final_obs) "
            f"used to bootstrap a time-limit truncation is not finite")
    if not torch.isfinite(rollout.values).all() or not torch.isfinite(rollout.log_probs).all():
        raise FloatingPointError(
            f"NaN or inf in the policy's values / log-probabilities at num_timesteps="
            f"{num_timesteps}: the weights diverged; the learning rate "
            f"({learning_rate:g}) is probably too high")


def obs_tensor(obs: np.ndarray) -> Tensor:
    """A copy of ``obs`` in torch's own memory (starting at a 64-byte boundary).

    ``torch.as_tensor`` would share numpy's buffer, which can start anywhere (a slice of a
    larger array); the CPU matrix kernels round by the address of their operands (a (2, 4)
    batch 4 bytes off: other last bits), so the same observations would give other actions.
    """
    return torch.from_numpy(np.ascontiguousarray(obs)).clone()


def current_obs(env: VecEnv, normalizer: Normalizer | None = None) -> np.ndarray:
    """The envs' observation now, as the policy sees it (normalised with the statistics as
    they are): where a rollout stopped by an exception (Ctrl-C) left them."""
    obs = env.last_obs
    return obs if normalizer is None else normalizer.obs(obs)


def collect_rollout(policy: torch.nn.Module, env: VecEnv, rollout: Rollout,
                    last_obs: np.ndarray, gamma: float, normalizer: Normalizer | None = None,
                    on_step: Callable[[], bool] | None = None) -> tuple[np.ndarray, bool]:
    """Fill ``rollout`` with ``rollout.n_steps`` steps of every env, acting with ``policy``.

    ``last_obs`` is the (normalised) observation to act from; returns the observation after
    the last step and whether collection ran to the end (``on_step`` returning False, a
    callback asking to stop, ends it early). ``rollout.last_values`` gets V(s_T).
    """
    action_space = env.action_space
    with torch.no_grad():
        for t in range(rollout.n_steps):
            obs = obs_tensor(last_obs)
            actions, values, log_probs = policy(obs)
            env_actions = clip_actions(actions.numpy(), action_space)  # the notes' error 9
            next_obs, rewards, terminated, truncated, infos = env.step(env_actions)
            dones = terminated | truncated
            if normalizer is not None:
                next_obs = normalizer.obs(next_obs, update=True)
                rewards = normalizer.reward(rewards, dones)
            timeouts = truncated & ~terminated
            if timeouts.any():  # bootstrap: the episode would have gone on
                final_obs = infos["final_obs"][timeouts]
                if normalizer is not None:
                    final_obs = normalizer.obs(final_obs)
                final_values = policy.predict_values(obs_tensor(final_obs)).numpy()
                rewards = rewards.astype(np.float32, copy=True)
                rewards[timeouts] += gamma * final_values

            rollout.obs[t] = obs
            rollout.actions[t] = actions
            rollout.values[t] = values
            rollout.log_probs[t] = log_probs
            rollout.rewards[t] = torch.from_numpy(np.asarray(rewards, dtype=np.float32))
            rollout.dones[t] = torch.from_numpy(dones.astype(np.float32))
            last_obs = next_obs
            if on_step is not None and on_step() is False:
                return last_obs, False
        rollout.last_values[:] = policy.predict_values(obs_tensor(last_obs))
    return last_obs, True


def compute_advantages(rollout: Rollout, gamma: float, gae_lambda: float,
                       advantage_fn: Callable = gae) -> None:
    """Fill ``rollout.advantages`` and ``rollout.returns`` with ``advantage_fn`` (GAE by
    default, or the learner's own function with gae's signature)."""
    advantages, returns = advantage_fn(rollout.rewards, rollout.values, rollout.dones,
                                       rollout.last_values, gamma, gae_lambda)
    rollout.advantages[:] = advantages
    rollout.returns[:] = returns


class Minibatch(NamedTuple):
    """One minibatch of flattened (T * N) samples."""

    obs: Tensor
    actions: Tensor
    old_values: Tensor
    old_log_probs: Tensor
    advantages: Tensor
    returns: Tensor


def minibatches(rollout: Rollout, batch_size: int,
                generator: torch.Generator | None = None) -> Iterator[Minibatch]:
    """Shuffle the T * N samples and yield them in minibatches of ``batch_size`` (the last
    one smaller when batch_size does not divide T * N, as SB3)."""
    n = rollout.rewards.numel()
    flat = Minibatch(rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1),
                     rollout.values.flatten(), rollout.log_probs.flatten(),
                     rollout.advantages.flatten(), rollout.returns.flatten())
    if batch_size >= n:  # one full batch: the order changes nothing, skip the shuffle
        yield flat
        return
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield Minibatch(*(x[idx] for x in flat))
