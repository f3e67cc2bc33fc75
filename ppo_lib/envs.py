"""Vector environments: N copies of an env stepped in lockstep (lessons 05 and 07).

``VecEnv`` is SB3's ``DummyVecEnv`` idea in a few lines: the envs run one after another in
this process (for small envs such as CartPole that is faster than subprocesses), and an
env whose episode ended is reset *in the same step*, its last observation handed back in
``infos["final_obs"]`` (gymnasium's ``AutoresetMode.SAME_STEP`` convention). The trainer
needs that final observation to bootstrap time-limit truncations (the notes' error 6).

It also keeps the episode statistics (returns and lengths of finished episodes, of the raw
rewards) and can save and restore its state for an exact resume (``get_state``).
Observation and reward normalisation (SB3's ``VecNormalize``): ``ppo_lib.normalization``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from .validation import check_positive_int

def check_spaces(observation_space: spaces.Space, action_space: spaces.Space,
                 flat_obs: bool = True) -> None:
    """Refuse spaces the trainer cannot handle, naming the space and what works.

    ``flat_obs``: the MLP policies need a flat Box observation (custom policy classes, e.g.
    a CNN for images, take any Box).
    """
    if not isinstance(observation_space, spaces.Box):
        raise ValueError(f"observation space {observation_space} is not supported: ppo_lib "
                         f"needs a Box observation space (flatten Dict/Tuple/Discrete "
                         f"observations first, e.g. gymnasium.wrappers.FlattenObservation; "
                         f"SB3's MultiInputPolicy has no counterpart here)")
    if flat_obs and len(observation_space.shape) != 1:
        raise ValueError(f"observation space {observation_space} is not flat: \"MlpPolicy\" "
                         f"needs a Box of shape (obs_dim,); for images pass a CNN policy "
                         f"class (ppo_lib.atari.NatureCNNActorCritic), or flatten the "
                         f"observations (gymnasium.wrappers.FlattenObservation)")
    kinds = (spaces.Discrete, spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)
    if not isinstance(action_space, kinds):
        raise ValueError(f"action space {action_space} is not supported: ppo_lib supports "
                         f"Discrete, Box, MultiDiscrete and MultiBinary action spaces")
    if not isinstance(action_space, spaces.Discrete) and len(action_space.shape) != 1:
        raise ValueError(f"action space {action_space} is not supported: "
                         f"{type(action_space).__name__} actions must be flat, shape (action_dim,)")
    if isinstance(action_space, spaces.MultiDiscrete) and np.any(action_space.start != 0):
        raise ValueError(f"action space {action_space} is not supported: MultiDiscrete "
                         f"actions must start at 0 (start={action_space.start.tolist()}): the "
                         f"policy acts in 0..nvec-1; shift them in a gymnasium.ActionWrapper")


class EnvFactory:
    """A picklable zero-argument factory ``gym.make(env_id, **env_kwargs)``."""

    def __init__(self, env_id: str, env_kwargs: dict | None = None,
                 wrapper_class: Callable[[gym.Env], gym.Env] | None = None):
        self.env_id, self.env_kwargs, self.wrapper_class = env_id, env_kwargs or {}, wrapper_class

    def __call__(self) -> gym.Env:
        env = gym.make(self.env_id, **self.env_kwargs)
        return self.wrapper_class(env) if self.wrapper_class is not None else env

    def __repr__(self) -> str:
        return f"gym.make({self.env_id!r})"


class VecEnv:
    """``n_envs`` envs stepped in lockstep, each reset in the step its episode ends.

    ``step(actions) -> obs, rewards, terminated, truncated, infos`` with arrays of shape
    (n_envs, ...); ``infos["final_obs"]`` holds, where ``infos["_final_obs"]`` is True, the
    last observation of the episode that just ended (``obs`` there is already the first
    observation of the next episode). ``infos["episode_return"]`` / ``"episode_length"`` are
    set where an episode ended. Env i is seeded with seed + i on the first reset.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], seed: int | None = None,
                 stats_window: int = 100):
        if len(env_fns) == 0:
            raise ValueError("env_fns must hold at least one env factory, got an empty list")
        self.envs = [_checked_env(fn(), fn, i) for i, fn in enumerate(env_fns)]
        self.num_envs = len(self.envs)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        _check_observation_space(self.observation_space)
        for i, env in enumerate(self.envs[1:], 1):
            if (env.observation_space != self.observation_space
                    or env.action_space != self.action_space):
                raise ValueError(f"env {i} has spaces {env.observation_space}, "
                                 f"{env.action_space} but env 0 has {self.observation_space}, "
                                 f"{self.action_space}: every env of a VecEnv needs the same")
        self.seed = seed
        self.spec = self.envs[0].spec
        self._discrete = isinstance(self.action_space, spaces.Discrete)
        dtype = self.observation_space.dtype
        self._obs_shape = tuple(self.observation_space.shape)
        self._obs = np.zeros((self.num_envs, *self._obs_shape), dtype=dtype)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.episode_returns: deque[float] = deque(maxlen=stats_window)  # last finished ones
        self.episode_lengths: deque[int] = deque(maxlen=stats_window)
        self.episode_count = 0
        self.last_obs: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        """Reset every env (seeded with seed + i if a seed was given) -> obs (n_envs, ...)."""
        for i, env in enumerate(self.envs):
            seed = None if self.seed is None else self.seed + i
            self._obs[i] = self._checked_obs(i, _reset_obs(env, i, seed), "reset()")
            if seed is not None:
                env.action_space.seed(seed)
        self.seed = None  # later resets continue each env's random stream
        self._returns[:] = 0
        self._lengths[:] = 0
        self.last_obs = self._obs.copy()
        return self.last_obs

    def step(self, actions: np.ndarray):
        n = self.num_envs
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        step_rewards, ended = [], []  # rewards as returned; the envs whose episode ended
        final_obs = None
        actions = actions.tolist() if self._discrete else actions
        for i, env in enumerate(self.envs):
            result = env.step(actions[i])
            if not isinstance(result, (tuple, list)) or len(result) != 5:
                raise _old_api_step(env, i, result)
            obs, reward, term, trunc, _ = result
            if np.shape(obs) != self._obs_shape:
                self._checked_obs(i, obs, "step()")
            if not isinstance(reward, (int, float, np.number)):
                reward = _number_reward(env, i, reward)
            step_rewards.append(reward)
            terminated[i], truncated[i] = term, trunc
            if term or trunc:
                if final_obs is None:
                    final_obs = np.zeros_like(self._obs)
                final_obs[i] = obs
                ended.append(i)
                obs = self._checked_obs(i, _reset_obs(env, i), "reset()")
            self._obs[i] = obs
        step_rewards = np.array(step_rewards, dtype=np.float64)
        self._returns += step_rewards
        self._lengths += 1
        infos: dict[str, Any] = {"_final_obs": terminated | truncated,
                                 "final_obs": final_obs if final_obs is not None
                                 else np.zeros_like(self._obs)}
        if ended:  # the finished episodes' statistics, then new episodes start at 0
            ep_returns, ep_lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
            for i in ended:
                ep_returns[i], ep_lengths[i] = self._returns[i], self._lengths[i]
                self.episode_returns.append(float(self._returns[i]))
                self.episode_lengths.append(int(self._lengths[i]))
                self._returns[i], self._lengths[i] = 0.0, 0
            self.episode_count += len(ended)
            infos["episode_return"], infos["episode_length"] = ep_returns, ep_lengths
        self.last_obs = self._obs.copy()
        return self.last_obs, step_rewards.astype(np.float32), terminated, truncated, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _checked_obs(self, i: int, obs, where: str):
        """``obs`` if it has the observation space's shape, else a ValueError saying so."""
        if np.shape(obs) != self._obs_shape:
            raise ValueError(
                f"env {i} ({_name(self.envs[i])}) returned an observation of shape "
                f"{np.shape(obs)} from {where}, but its observation_space is "
                f"{self.observation_space}, shape {self._obs_shape}: the env and its "
                f"observation_space disagree (a wrapper that changes observations must "
                f"change observation_space too)")
        return obs

    # --- exact resume --------------------------------------------------------------------
    def get_state(self) -> dict:
        """The vector env's state as plain data (numbers, arrays, lists, dicts).

        Resumes exactly: envs whose whole state is ``unwrapped.state`` (classic control:
        CartPole, Pendulum, MountainCar, Acrobot), MuJoCo envs (qpos, qvel), plus
        TimeLimit's step counter and each env's random generator. Other envs (e.g. Atari,
        whose emulator state is not saved) resume from a fresh reset seeded from the saved
        generator: the trainer then continues correctly but not bit for bit.
        """
        return {**running_state(self), "envs": [_env_state(env) for env in self.envs]}

    def set_state(self, state: dict) -> bool:
        """Restore ``get_state()``; returns True when every sub-env resumed exactly."""
        self.reset()
        exact = True
        for env, env_state in zip(self.envs, state["envs"]):
            exact &= _set_env_state(env, env_state)
        if exact and state["last_obs"] is not None:
            self._obs[:] = state["last_obs"]
            self._returns[:] = state["returns"]
            self._lengths[:] = state["lengths"]
        self.last_obs = self._obs.copy()
        self.episode_returns.extend(state["episode_returns"])
        self.episode_lengths.extend(state["episode_lengths"])
        self.episode_count = state["episode_count"]
        return exact


def running_state(env) -> dict:
    """What a vector env (``VecEnv``, ``CartPoleVecEnv``) keeps besides its envs: the last
    observation, the running episodes' returns and lengths, the finished episodes' stats."""
    return {
        "last_obs": None if env.last_obs is None else env.last_obs.copy(),
        "returns": env._returns.copy(), "lengths": env._lengths.copy(),
        "episode_returns": list(env.episode_returns),
        "episode_lengths": list(env.episode_lengths),
        "episode_count": env.episode_count,
    }


# --- clear errors for envs ppo_lib cannot use --------------------------------------------
_FLATTEN = ("flatten them into one Box first, e.g. gymnasium.wrappers.FlattenObservation(env) "
            "(SB3's MultiInputPolicy has no counterpart here)")


def _name(env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env).__name__


def _checked_env(env, factory, i: int):
    """What an env factory returned, if it is an env (has the gymnasium API's reset, step
    and spaces), else a ValueError naming the factory and what it returned."""
    if isinstance(env, type):
        raise ValueError(f"env factory {i} ({factory!r}) returned the class {env.__name__}, "
                         f"not an env: return an instance, e.g. lambda: {env.__name__}()")
    if isinstance(env, gym.Env) or all(hasattr(env, a) for a in
                                       ("reset", "step", "observation_space", "action_space")):
        return env
    raise ValueError(f"env factory {i} ({factory!r}) returned {env!r} ({type(env).__name__}), "
                     f"not an env: a factory is a function of no arguments that returns a "
                     f"gymnasium.Env, e.g. lambda: gymnasium.make(\"CartPole-v1\")")


def _check_observation_space(space) -> None:
    if isinstance(space, (spaces.Dict, spaces.Tuple)) or getattr(space, "shape", None) is None:
        raise ValueError(f"observation space {space} is not supported: ppo_lib's policies take "
                         f"a Box observation; {_FLATTEN}")


_OLD_API = ("this looks like the old gym API (gym < 0.26); ppo_lib needs gymnasium's, where "
            "reset(seed=...) returns (obs, info) and step returns (obs, reward, terminated, "
            "truncated, info): port the env, or wrap it with shimmy "
            "(gymnasium.make(\"GymV21Environment-v0\", env=env))")


def _reset_obs(env, i: int, seed: int | None = None):
    """The observation of ``env.reset(seed=seed)``, or a ValueError for the old API."""
    try:
        result = env.reset(seed=seed) if seed is not None else env.reset()
    except TypeError as err:
        if "seed" not in str(err):
            raise
        raise ValueError(f"env {i} ({_name(env)}).reset does not take seed= ({err}): "
                         f"{_OLD_API}") from None
    if type(result) is not tuple or len(result) != 2 or not isinstance(result[1], dict):
        raise ValueError(f"env {i} ({_name(env)}).reset() returned {_short(result)}, not "
                         f"(obs, info): {_OLD_API}")
    return result[0]


def _number_reward(env, i: int, reward) -> float:
    """A reward that is not a Python or numpy number: one number in an array, else an error
    (numpy would store None as NaN and a string as its value, silently)."""
    arr = np.asarray(reward) if not isinstance(reward, (str, bytes)) else np.asarray(None)
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        raise ValueError(f"env {i} ({_name(env)}) returned the reward {_short(reward)} from "
                         f"step(); a reward must be a number (a float)")
    return float(arr.reshape(()))


def _old_api_step(env, i: int, result) -> ValueError:
    count = len(result) if isinstance(result, (tuple, list)) else None
    got = f"{count} values" if count is not None else _short(result)
    return ValueError(f"env {i} ({_name(env)}).step() returned {got}, not (obs, reward, "
                      f"terminated, truncated, info)"
                      + (f": {_OLD_API}" if count == 4 else ""))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _find_wrapper(env: gym.Env, cls: type) -> gym.Env | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return env
        env = env.env
    return None


def _env_state(env: gym.Env) -> dict:
    u = env.unwrapped
    state: dict[str, Any] = {"np_random": u.np_random.bit_generator.state,
                             "action_space": env.action_space.np_random.bit_generator.state}
    limit = _find_wrapper(env, gym.wrappers.TimeLimit)
    if limit is not None:
        state["elapsed_steps"] = limit._elapsed_steps
    if hasattr(u, "set_state") and hasattr(u, "data"):  # MuJoCo
        state["qpos"], state["qvel"] = u.data.qpos.copy(), u.data.qvel.copy()
    elif isinstance(getattr(u, "state", None), np.ndarray):  # classic control
        state["state"] = u.state.copy()
        if hasattr(u, "steps_beyond_terminated"):
            state["steps_beyond_terminated"] = u.steps_beyond_terminated
        if hasattr(u, "last_u"):
            state["last_u"] = u.last_u
    return state


def _set_env_state(env: gym.Env, state: dict) -> bool:
    u = env.unwrapped
    u.np_random.bit_generator.state = state["np_random"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    limit = _find_wrapper(env, gym.wrappers.TimeLimit)
    if limit is not None and "elapsed_steps" in state:
        limit._elapsed_steps = state["elapsed_steps"]
    if "qpos" in state:
        u.set_state(state["qpos"], state["qvel"])
        return True
    if "state" in state:
        u.state = state["state"].copy()
        for key in ("steps_beyond_terminated", "last_u"):
            if key in state:
                setattr(u, key, state[key])
        return True
    return False


VECTORIZATION_MODES = ("sync", "vector_entry_point")


def make_vec_env(env, n_envs: int = 1, seed: int | None = None,
                 env_kwargs: dict | None = None,
                 wrapper_class: Callable[[gym.Env], gym.Env] | None = None,
                 vectorization_mode: str = "sync") -> VecEnv:
    """A ``VecEnv`` from an env id, a gymnasium Env, a list of env factories or a VecEnv.

    ``env``: ``"CartPole-v1"`` (``n_envs`` copies of ``gym.make``), an ``Env`` instance
    (used as is; only with n_envs=1), a list of zero-argument factories (one env each;
    ``n_envs`` is then their number), or a ``VecEnv`` (returned as is).
    ``vectorization_mode``: "sync" (the copies stepped one after another, in ``VecEnv``) or,
    for CartPole's id, "vector_entry_point": gymnasium's numpy-vectorised CartPole, all
    carts in one numpy step (``ppo_lib.vector_cartpole.CartPoleVecEnv``), as gymnasium's
    ``make_vec`` names it.
    """
    from .vector_cartpole import CARTPOLE_IDS, CartPoleVecEnv

    if isinstance(env, (VecEnv, CartPoleVecEnv)):
        return env
    check_positive_int("n_envs", n_envs)
    if vectorization_mode not in VECTORIZATION_MODES:
        raise ValueError(f"vectorization_mode must be one of {VECTORIZATION_MODES}, got "
                         f"{vectorization_mode!r}")
    if vectorization_mode == "vector_entry_point":
        if not isinstance(env, str) or env not in CARTPOLE_IDS:
            raise ValueError(f"vectorization_mode='vector_entry_point' needs an env id with a "
                             f"numpy-vectorised version ({', '.join(CARTPOLE_IDS)}), got env="
                             f"{env!r}; use vectorization_mode='sync' for other envs")
        if wrapper_class is not None:
            raise ValueError(f"wrapper_class={wrapper_class!r} wraps single envs; it cannot "
                             f"wrap the vectorised CartPole: use vectorization_mode='sync'")
        return CartPoleVecEnv(env, int(n_envs), seed=seed, env_kwargs=env_kwargs)
    if isinstance(env, str):
        fns = [EnvFactory(env, env_kwargs, wrapper_class) for _ in range(n_envs)]
    elif isinstance(env, gym.Env):
        if n_envs != 1:
            if env.spec is None:
                raise ValueError(f"n_envs={n_envs} copies of an env instance cannot be made: "
                                 f"pass an env id string or a list of env factories")
            fns = [EnvFactory(env.spec.id, env.spec.kwargs, wrapper_class)
                   for _ in range(n_envs)]
        else:
            fns = [lambda: env]
    elif isinstance(env, (list, tuple)) and all(callable(f) for f in env):
        fns = list(env)
    elif callable(env):
        fns = [env for _ in range(n_envs)]
    else:
        raise ValueError(f"env must be an env id string, a gymnasium Env, a list of env "
                         f"factories or a VecEnv, got {env!r}")
    return VecEnv(fns, seed=seed)


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (as SB3's ``set_random_seed``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
