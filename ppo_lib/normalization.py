"""Running observation and reward normalisation, as SB3's ``VecNormalize`` (lesson 06).

The trainer owns a ``Normalizer`` (part of the model: ``predict`` takes raw observations,
save / load keep its statistics); the envs stay raw.
"""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Running mean and variance of a stream of arrays (parallel algorithm of Chan et al.,
    as SB3's ``RunningMeanStd``; starts at mean 0, var 1, count 1e-4)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray) -> None:
        batch_mean, batch_var, batch_count = np.mean(x, axis=0), np.var(x, axis=0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.mean = self.mean + delta * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = (np.array(state["mean"]), np.array(state["var"]),
                                           float(state["count"]))


class Normalizer:
    """Observation and reward normalisation as SB3's ``VecNormalize`` (defaults clip 10,
    epsilon 1e-8): obs -> clip((obs - mean) / sqrt(var + eps), -10, 10); reward -> reward /
    sqrt(Var(discounted return) + eps), clipped. The statistics update only while training.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_envs: int, gamma: float,
                 normalize_obs: bool, normalize_reward: bool, clip_obs: float = 10.0,
                 clip_reward: float = 10.0, epsilon: float = 1e-8):
        self.normalize_obs, self.normalize_reward = normalize_obs, normalize_reward
        self.obs_rms = RunningMeanStd(obs_shape)
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(n_envs)
        self.gamma, self.clip_obs, self.clip_reward, self.epsilon = gamma, clip_obs, clip_reward, epsilon

    def obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.normalize_obs:
            return obs
        if update:
            self.obs_rms.update(obs)
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def reward(self, rewards: np.ndarray, dones: np.ndarray, update: bool = True) -> np.ndarray:
        if not self.normalize_reward:
            return rewards
        if update:
            self.returns = self.returns * self.gamma + rewards
            self.ret_rms.update(self.returns)
        scaled = rewards / np.sqrt(self.ret_rms.var + self.epsilon)
        self.returns[dones] = 0.0
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(np.float32)

    def state_dict(self) -> dict:
        return {"obs_rms": self.obs_rms.state_dict(), "ret_rms": self.ret_rms.state_dict(),
                "returns": self.returns.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        self.returns = np.array(state["returns"])
