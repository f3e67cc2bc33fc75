"""Evaluating a trained policy: mean and std of episode returns (lesson 05)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ._checks import check_positive_int


def evaluate_policy(model, env, n_eval_episodes: int = 10, deterministic: bool = True,
                    seed: int | None = None, return_episode_rewards: bool = False):
    """Run ``n_eval_episodes`` full episodes with ``model.predict`` (SB3's evaluate_policy).

    ``env``: an env id, a gymnasium Env, or a ppo_lib VecEnv (its first sub-env is used).
    Episode i is reset with seed + i when ``seed`` is given. Returns (mean, std) of the
    episode returns, or (returns, lengths) lists with ``return_episode_rewards=True``.
    The model normalises observations itself (normalize_obs) inside ``predict``.
    """
    check_positive_int("n_eval_episodes", n_eval_episodes)
    owned = isinstance(env, str)
    if owned:
        env = gym.make(env)
    elif hasattr(env, "envs"):
        env = env.envs[0]
    returns, lengths = [], []
    try:
        for i in range(n_eval_episodes):
            obs, _ = env.reset(seed=None if seed is None else seed + i)
            done, total, length = False, 0.0, 0
            while not done:
                action, _ = model.predict(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        if owned:
            env.close()
    if return_episode_rewards:
        return returns, lengths
    return float(np.mean(returns)), float(np.std(returns))
