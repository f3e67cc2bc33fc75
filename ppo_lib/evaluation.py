"""Evaluating a trained policy: mean and std of episode returns (lesson 05)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .validation import check_positive_int

# Episodes run side by side (one batched predict per step) when evaluate_policy makes the
# envs itself; more than this run in waves.
MAX_PARALLEL_EPISODES = 32


def evaluate_policy(model, env, n_eval_episodes: int = 10, deterministic: bool = True,
                    seed: int | None = None, return_episode_rewards: bool = False):
    """Run ``n_eval_episodes`` full episodes with ``model.predict`` (SB3's evaluate_policy).

    ``env``: an env id, a gymnasium Env, or a ppo_lib VecEnv (its first sub-env is used; a
    vectorised CartPole's env id).
    Episode i is reset with seed + i when ``seed`` is given. Returns (mean, std) of the
    episode returns, or (returns, lengths) lists with ``return_episode_rewards=True``.
    The model normalises observations itself (normalize_obs) inside ``predict``.

    Given an env id, the episodes run side by side in their own copies of the env, one
    batched ``predict`` per step, many times faster: episode i still starts from seed + i,
    so a deterministic policy plays the same episodes as one after another (a stochastic
    one draws its actions in another order).
    """
    check_positive_int("n_eval_episodes", n_eval_episodes)
    returns, lengths = [], []
    if hasattr(env, "vector_env"):  # the vectorised CartPole: its env id, side by side
        env = env.spec.id
    if isinstance(env, str):
        for first in range(0, n_eval_episodes, MAX_PARALLEL_EPISODES):
            count = min(MAX_PARALLEL_EPISODES, n_eval_episodes - first)
            seeds = [None if seed is None else seed + i for i in range(first, first + count)]
            wave_returns, wave_lengths = _side_by_side(model, env, seeds, deterministic)
            returns += wave_returns
            lengths += wave_lengths
    else:
        if hasattr(env, "envs"):
            env = env.envs[0]
        for i in range(n_eval_episodes):
            total, length = _one_episode(model, env, None if seed is None else seed + i,
                                         deterministic)
            returns.append(total)
            lengths.append(length)
    if return_episode_rewards:
        return returns, lengths
    return float(np.mean(returns)), float(np.std(returns))


def _one_episode(model, env, seed: int | None, deterministic: bool) -> tuple[float, int]:
    obs, _ = env.reset(seed=seed)
    done, total, length = False, 0.0, 0
    while not done:
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        length += 1
        done = terminated or truncated
    return total, length


def _side_by_side(model, env_id: str, seeds: list[int | None], deterministic: bool,
                  ) -> tuple[list[float], list[int]]:
    """One episode in each of len(seeds) fresh copies of ``env_id``, stepped together."""
    envs = [gym.make(env_id) for _ in seeds]
    try:
        obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
        totals, lengths = [0.0] * len(envs), [0] * len(envs)
        running = list(range(len(envs)))
        while running:
            actions, _ = model.predict(np.stack([obs[i] for i in running]),
                                       deterministic=deterministic)
            still = []
            for i, action in zip(running, actions):
                obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                totals[i] += float(reward)
                lengths[i] += 1
                if not (terminated or truncated):
                    still.append(i)
            running = still
        return totals, lengths
    finally:
        for env in envs:
            env.close()
