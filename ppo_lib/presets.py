"""Named hyperparameter sets, usable as ``PPO("MlpPolicy", env, **presets.get(name))``
(lesson 07).

"cartpole", "atari" and "mujoco" are the source notes' rows exactly (everything else at
PPO's defaults); "cartpole_tuned" is rl-baselines3-zoo's CartPole-v1 set; "cartpole_fast"
is the quickest set we found that solves CartPole-v1 reliably (benchmarks/README.md), on
gymnasium's numpy-vectorised CartPole (``vectorization_mode="vector_entry_point"``, a PPO
argument like the others).
"pendulum" is rl-zoo's Pendulum-v1 set with gSDE off and batch_size 256 (fewer, larger
gradient steps: reaches about -200 in ~100k steps, seed 0).
"""

from __future__ import annotations

import copy
from typing import Any

from .schedules import linear_schedule

PRESETS: dict[str, dict[str, Any]] = {
    # Source notes, "For simple environments (CartPole)".
    "cartpole": dict(learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=4,
                     clip_range=0.2),
    # Source notes, "For Atari" (clip_range 0.1: more conservative).
    "atari": dict(learning_rate=2.5e-4, n_steps=128, batch_size=256, n_epochs=4,
                  clip_range=0.1),
    # Source notes, "For continuous control (MuJoCo)" (= SB3's defaults).
    "mujoco": dict(learning_rate=3e-4, n_steps=2048, batch_size=64, n_epochs=10,
                   clip_range=0.2),
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1.
    "cartpole_tuned": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                           n_epochs=20, ent_coef=0.0, learning_rate=linear_schedule(1e-3),
                           clip_range=linear_schedule(0.2)),
    # Fewest seconds to a solved CartPole-v1 we measured (benchmarks/cartpole_vs_sb3.py):
    # gymnasium's numpy-vectorised CartPole (16 carts in one numpy step), the zoo's gamma and
    # lambda, 2.5x fewer gradient steps per sample than the zoo (8 epochs of one 256-sample
    # minibatch per 256 steps, against 20) at a 5x larger step size, annealed.
    "cartpole_fast": dict(n_envs=16, n_steps=16, batch_size=256, gae_lambda=0.8, gamma=0.98,
                          n_epochs=8, ent_coef=0.0, learning_rate=linear_schedule(5e-3),
                          clip_range=linear_schedule(0.25),
                          vectorization_mode="vector_entry_point"),
    # rl-baselines3-zoo hyperparams/ppo.yml, Pendulum-v1, without gSDE, batch_size 256.
    "pendulum": dict(n_envs=4, n_steps=1024, batch_size=256, gae_lambda=0.95, gamma=0.9,
                     n_epochs=10, ent_coef=0.0, learning_rate=1e-3, clip_range=0.2),
}


# The number of environment steps each preset is meant for (``budget(name)``): what its
# source trains for, or what we measured it to need.
BUDGETS: dict[str, int] = {
    "cartpole": 100_000,          # rl-baselines3-zoo's CartPole-v1 n_timesteps
    "atari": 2_500_000,           # the PPO paper: 10M frames = 2.5M agent steps (frame skip 4)
    "mujoco": 1_000_000,          # the PPO paper's MuJoCo runs
    "cartpole_tuned": 100_000,    # rl-baselines3-zoo's CartPole-v1 n_timesteps
    "cartpole_fast": 100_000,     # solved at 25k-41k steps for seeds 0-4 (benchmarks/README)
    "pendulum": 100_000,          # rl-baselines3-zoo's Pendulum-v1 n_timesteps
}


def budget(name: str) -> int:
    """The number of environment steps the preset ``name`` is meant to train for."""
    _known(name)
    return BUDGETS[name]


def _known(name: str) -> None:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")


def get(name: str) -> dict[str, Any]:
    """A fresh copy of the preset ``name`` (edit it freely)."""
    _known(name)
    return copy.deepcopy(PRESETS[name])
