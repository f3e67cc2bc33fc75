"""gymnasium's numpy-vectorised CartPole behind ``VecEnv``'s interface (lesson 07's speed).

``gym.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point")`` steps all
its carts in a handful of numpy operations (64 carts cost about what one ``gym.make`` cart
does), but it resets the way gymnasium's vector envs do by default: an episode that ends at
step t is reset by the *next* ``step`` call, which ignores that env's action and returns
reward 0 (``AutoresetMode.NEXT_STEP``). The trainer wants the reset in the same step and the
last observation kept for the time-limit bootstrap (API.md; lesson 04), as ``VecEnv`` does.

``CartPoleVecEnv`` gives that: after each step it resets the carts whose episode ended
itself, drawing their new start states (uniform in [-0.05, 0.05], as gymnasium does), and
hands their last observation back in ``infos["final_obs"]``. The carts form ``groups`` of
equal size, each with its own seeded random generator: the starts a group draws do not
depend on the other groups, which lets ``ppo_lib.lockstep`` train K seeds in one vector env
with each seed's carts exactly as if it ran alone. The physics is gymnasium's
``CartPoleVectorEnv.step`` (float64, element by element), untouched.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from .envs import running_state

CARTPOLE_IDS = ("CartPole-v0", "CartPole-v1")


class CartPoleVecEnv:
    """``num_envs`` CartPoles in one ``gymnasium`` ``CartPoleVectorEnv``, reset in the step
    their episode ends, as ``ppo_lib.envs.VecEnv`` (same ``step`` / ``reset`` / ``infos``,
    episode statistics, ``get_state`` / ``set_state`` for an exact resume).

    ``seed``: one seed (one group), or a list of seeds, one per group of
    ``num_envs // len(seed)`` carts (group k is carts k*n ... k*n + n - 1). Statistics of
    finished episodes are kept overall (``episode_returns``) and per group
    (``group_episode_returns[k]``).
    """

    def __init__(self, env_id: str = "CartPole-v1", num_envs: int = 1,
                 seed: int | list[int | None] | None = None, env_kwargs: dict | None = None,
                 stats_window: int = 100):
        if env_id not in CARTPOLE_IDS:
            raise ValueError(f"env_id={env_id!r}: CartPoleVecEnv runs gymnasium's vectorised "
                             f"CartPole only ({', '.join(CARTPOLE_IDS)})")
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed]
        if not seeds or num_envs % len(seeds):
            raise ValueError(f"num_envs={num_envs} cannot be split into {len(seeds)} equal "
                             f"groups (one per seed): use a multiple of {len(seeds) or 1}")
        self.vector_env = gym.make_vec(env_id, num_envs=num_envs,
                                       vectorization_mode="vector_entry_point",
                                       **(env_kwargs or {}))
        self.env = self.vector_env.unwrapped
        self.num_envs, self.n_groups = num_envs, len(seeds)
        self.group_size = num_envs // len(seeds)
        self.observation_space = self.vector_env.single_observation_space
        self.action_space = self.vector_env.single_action_space
        self.spec = gym.spec(env_id)
        self.seed = seeds if len(seeds) > 1 else seeds[0]  # the groups' generators
        self._group_of = np.repeat(np.arange(self.n_groups), self.group_size)
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.episode_returns: deque[float] = deque(maxlen=stats_window)
        self.episode_lengths: deque[int] = deque(maxlen=stats_window)
        self.group_episode_returns = [deque(maxlen=stats_window) for _ in seeds]
        self.group_episode_lengths = [deque(maxlen=stats_window) for _ in seeds]
        self.group_episode_count = [0] * self.n_groups
        self.episode_count = 0
        self.last_obs: np.ndarray | None = None
        self._reseed = True

    @property
    def seed(self):
        return self._seed

    @seed.setter
    def seed(self, value) -> None:
        """Seeds for the next ``reset`` (``PPO`` sets it when the env is not reset yet)."""
        seeds = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(seeds) != self.n_groups:
            raise ValueError(f"seed={value!r}: this env has {self.n_groups} groups, one seed "
                             f"each")
        self._seed = value
        self._rngs = [seeding.np_random(s)[0] for s in seeds]

    def reset(self) -> np.ndarray:
        """Every cart to a fresh start, group k's drawn from its generator -> obs (N, 4).
        The first reset after seeding starts the generators at their seeds; later resets
        continue them."""
        env = self.env
        if env.state is None:
            env.reset(seed=0)  # allocates gymnasium's arrays; every start is drawn below
        n = self.group_size
        for k, rng in enumerate(self._rngs):
            env.state[:, k * n:(k + 1) * n] = _starts(rng, n, env)
        env.steps[:] = 0
        env.prev_done[:] = False
        self._returns[:] = 0
        self._lengths[:] = 0
        self.last_obs = env.state.T.astype(np.float32)
        return self.last_obs

    def step(self, actions: np.ndarray):
        env = self.env
        obs, rewards, terminated, truncated, _ = self.vector_env.step(
            np.asarray(actions, dtype=np.int64))
        self._returns += rewards
        self._lengths += 1
        ended = terminated | truncated
        infos: dict[str, Any] = {"_final_obs": ended}
        if ended.any():
            infos["final_obs"] = np.where(ended[:, None], obs, np.float32(0))
            index = np.flatnonzero(ended)
            ep_returns = np.where(ended, self._returns, 0.0)
            ep_lengths = np.where(ended, self._lengths, 0)
            infos["episode_return"], infos["episode_length"] = ep_returns, ep_lengths
            for k in np.unique(self._group_of[index]):  # each group from its own generator
                mine = index[self._group_of[index] == k]
                env.state[:, mine] = _starts(self._rngs[k], len(mine), env)
                for i in mine:
                    self._finished(k, float(self._returns[i]), int(self._lengths[i]))
            env.steps[index] = 0
            env.prev_done[:] = False  # reset here, not by gymnasium's next step
            obs[index] = env.state[:, index].T
            self._returns[index] = 0.0
            self._lengths[index] = 0
        else:
            infos["final_obs"] = np.zeros_like(obs)
        self.last_obs = obs
        return obs, rewards, terminated, truncated, infos

    def _finished(self, group: int, ret: float, length: int) -> None:
        self.episode_returns.append(ret)
        self.episode_lengths.append(length)
        self.group_episode_returns[group].append(ret)
        self.group_episode_lengths[group].append(length)
        self.group_episode_count[group] += 1
        self.episode_count += 1

    def close(self) -> None:
        self.vector_env.close()

    # --- exact resume --------------------------------------------------------------------
    def get_state(self) -> dict:
        """The whole state as plain data: the carts (float64), their step counters, the
        groups' generators and the episode statistics. ``set_state`` resumes exactly."""
        env = self.env
        return {
            **running_state(self),
            "group_episode_returns": [list(d) for d in self.group_episode_returns],
            "group_episode_lengths": [list(d) for d in self.group_episode_lengths],
            "group_episode_count": list(self.group_episode_count),
            "cartpole": None if env.state is None else {
                "state": env.state.copy(), "steps": env.steps.copy(),
                "rngs": [rng.bit_generator.state for rng in self._rngs]},
        }

    def set_state(self, state: dict) -> bool:
        """Restore ``get_state()`` -> True (CartPole resumes exactly)."""
        self.reset()
        carts = state["cartpole"]
        if carts is not None:
            env = self.env
            env.state[:] = carts["state"]
            env.steps[:] = carts["steps"]
            for rng, rng_state in zip(self._rngs, carts["rngs"]):
                rng.bit_generator.state = rng_state
        if state["last_obs"] is not None:
            self.last_obs = np.array(state["last_obs"], dtype=np.float32)
        self._returns[:] = state["returns"]
        self._lengths[:] = state["lengths"]
        for mine, saved in ((self.episode_returns, state["episode_returns"]),
                            (self.episode_lengths, state["episode_lengths"])):
            mine.clear()
            mine.extend(saved)
        for k in range(self.n_groups):
            self.group_episode_returns[k].clear()
            self.group_episode_returns[k].extend(state["group_episode_returns"][k])
            self.group_episode_lengths[k].clear()
            self.group_episode_lengths[k].extend(state["group_episode_lengths"][k])
        self.group_episode_count = list(state["group_episode_count"])
        self.episode_count = state["episode_count"]
        return True


def _starts(rng: np.random.Generator, count: int, env) -> np.ndarray:
    """``count`` start states (4, count), uniform in [low, high] as gymnasium draws them."""
    return rng.uniform(low=env.low, high=env.high, size=(4, count))
