"""The envs of K seeds trained in lockstep (``ppo_lib.lockstep``), each seed's exactly as
its lone run's: with sync envs each model's own ``VecEnv``; with the vectorised CartPole one
``CartPoleVecEnv`` of K x n carts, a group of n per seed seeded as the seed's own.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from .logger import rollout_row
from .policies import clip_actions
from .rollout import obs_tensor


class SeedEnvs:
    """The K models' envs stepped together: with sync envs each model's own ``VecEnv`` (a
    Python loop over gym envs either way, nothing to batch); with the vectorised CartPole
    one ``CartPoleVecEnv`` of K x n carts, a group of n per seed seeded as the seed's own
    (one numpy step for all, each cart's physics elementwise, each group's starts from its
    own generator), whose state ``hand_back`` copies into each model's env at the end."""

    def __init__(self, models: list):
        from .vector_cartpole import CartPoleVecEnv

        self.models = models
        self.n = models[0].n_envs
        self.carts = None
        if all(type(m.env) is CartPoleVecEnv and m.env.n_groups == 1 for m in models):
            spec = models[0].env.spec
            self.carts = CartPoleVecEnv(spec.id, self.n * len(models),
                                        seed=[m.env.seed for m in models])

    def reset(self) -> list[np.ndarray]:
        """Each model's first observations (raw)."""
        if self.carts is None:
            return [m.env.reset() for m in self.models]
        obs = self.carts.reset()
        return [obs[k * self.n:(k + 1) * self.n] for k in range(len(self.models))]

    def step(self, actions: Tensor) -> list[tuple]:
        """Each model's (obs, rewards, terminated, truncated, infos) for its actions (K, N)."""
        if self.carts is None:
            return [m.env.step(clip_actions(a.numpy(), m.env.action_space))
                    for m, a in zip(self.models, actions)]
        obs, rewards, terminated, truncated, infos = self.carts.step(actions.reshape(-1).numpy())
        out = []
        for k in range(len(self.models)):
            part = slice(k * self.n, (k + 1) * self.n)
            out.append((obs[part], rewards[part], terminated[part], truncated[part],
                        {"final_obs": infos["final_obs"][part]}))
        return out

    def together(self) -> bool:
        """Whether ``step_together`` applies: the vectorised CartPole, no normalisers."""
        return self.carts is not None and all(m.normalizer is None for m in self.models)

    def step_together(self, actions: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``step`` and ``after_env_step`` of every model at once (``together()``): the next
        observations of all K x n carts (K x n, obs_dim), rewards (float64, or float32 after
        a time-limit bootstrap, each by its own model's value head, as ``after_env_step``)
        and dones (bool), each (K x n,): the rollout's float32 buffers take them as
        ``after_env_step``'s casts give them."""
        obs, rewards, terminated, truncated, infos = self.carts.step(
            actions.reshape(-1).numpy())
        if truncated.any():
            timeouts = truncated & ~terminated
            if timeouts.any():  # bootstrap: the episode would have gone on
                rewards = rewards.astype(np.float32, copy=True)
                for k, model in enumerate(self.models):
                    part = slice(k * self.n, (k + 1) * self.n)
                    mine = timeouts[part]
                    if mine.any():
                        final_obs = infos["final_obs"][part][mine]
                        values = model.policy.predict_values(obs_tensor(final_obs)).numpy()
                        rewards[part][mine] += model.gamma * values
        return obs, rewards, terminated | truncated

    def rollout_row(self, k: int) -> dict[str, float]:
        """SB3's rollout keys of model k's recent episodes (``logger.rollout_row``)."""
        if self.carts is None:
            return rollout_row(self.models[k].env)
        episodes = SimpleNamespace(episode_returns=self.carts.group_episode_returns[k],
                                   episode_lengths=self.carts.group_episode_lengths[k])
        return rollout_row(episodes)

    def hand_back(self) -> None:
        """Each model's env gets its group's state (carts, generator, statistics)."""
        if self.carts is None:
            return
        state = self.carts.get_state()
        for k, model in enumerate(self.models):
            part = slice(k * self.n, (k + 1) * self.n)
            carts = state["cartpole"]
            model.env.set_state({
                "last_obs": None if state["last_obs"] is None else state["last_obs"][part],
                "returns": state["returns"][part], "lengths": state["lengths"][part],
                "episode_returns": state["group_episode_returns"][k],
                "episode_lengths": state["group_episode_lengths"][k],
                "episode_count": state["group_episode_count"][k],
                "group_episode_returns": [state["group_episode_returns"][k]],
                "group_episode_lengths": [state["group_episode_lengths"][k]],
                "group_episode_count": [state["group_episode_count"][k]],
                "cartpole": None if carts is None else {
                    "state": carts["state"][:, part], "steps": carts["steps"][part],
                    "rngs": [carts["rngs"][k]]}})


def after_env_step(model, next_obs, rewards, terminated, truncated, infos):
    """What ``collect_rollout`` does with one env step of ``model``'s envs -> (next_obs,
    rewards (N,) float32 tensor, dones (N,) float32 tensor)."""
    normalizer = model.normalizer
    dones = terminated | truncated
    if normalizer is not None:
        next_obs = normalizer.obs(next_obs, update=True)
        rewards = normalizer.reward(rewards, dones)
    timeouts = truncated & ~terminated
    if timeouts.any():  # bootstrap: the episode would have gone on
        final_obs = infos["final_obs"][timeouts]
        if normalizer is not None:
            final_obs = normalizer.obs(final_obs)
        final_values = model.policy.predict_values(obs_tensor(final_obs)).numpy()
        rewards = rewards.astype(np.float32, copy=True)
        rewards[timeouts] += model.gamma * final_values
    return (next_obs, torch.from_numpy(np.asarray(rewards, dtype=np.float32)),
            torch.from_numpy(dones.astype(np.float32)))
