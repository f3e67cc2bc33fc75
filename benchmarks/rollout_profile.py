"""Where a rollout's time goes: one vector step of CartPole-v1, split into its parts.

    .venv/bin/python benchmarks/rollout_profile.py [--repeats 2000]

For n_envs = 8, 16, 64 and both vectorization modes ("sync": gym.make copies stepped one
after another in ppo_lib's VecEnv, as SB3's DummyVecEnv; "vector_entry_point": gymnasium's
numpy-vectorised CartPole behind the same interface), it times, per vector step (median of
``--repeats`` calls, microseconds):

    policy   the policy's forward pass and sampling on the n_envs observations
             (``policy(obs)``: actions, values, log-probabilities), under no_grad
    env      ``env.step(actions)`` with its same-step resets and episode statistics
    rollout  a whole ``collect_rollout`` divided by its steps: policy + env + writing the
             buffers, the timeout bootstrap and the observation copy

and the rollout's cost per env step. torch on one thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ppo_lib.ablations import machine
from ppo_lib.ppo import PPO
from ppo_lib.rollout import collect_rollout, obs_tensor


def per_call(fn, repeats: int) -> float:
    """Median microseconds of ``fn()`` over ``repeats`` calls, timed in blocks of 50."""
    fn()
    blocks = []
    for _ in range(max(1, repeats // 50)):
        start = time.perf_counter()
        for _ in range(50):
            fn()
        blocks.append((time.perf_counter() - start) / 50 * 1e6)
    return statistics.median(blocks)


def profile(n_envs: int, mode: str, repeats: int) -> dict[str, float]:
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=n_envs, n_steps=32, batch_size=32 * n_envs,
                seed=0, vectorization_mode=mode)
    model.learn(32 * n_envs)  # a trained-once policy and a running env
    obs = obs_tensor(model.last_obs)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, size=(repeats + 1, n_envs))
    step = iter(actions)

    def policy():
        with torch.no_grad():
            model.policy(obs)

    def env():
        model.env.step(next(step))

    def rollout():
        model.last_obs, _ = collect_rollout(model.policy, model.env, model.rollout,
                                            model.last_obs, model.gamma)

    return {"policy": per_call(policy, repeats), "env": per_call(env, repeats),
            "rollout": per_call(rollout, max(50, repeats // 32)) / 32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    print(f"{'n_envs':>6} | {'mode':>18} | {'policy us':>9} | {'env us':>7} | "
          f"{'rollout us':>10} | {'us per env step':>15}")
    for n_envs in (8, 16, 64):
        for mode in ("sync", "vector_entry_point"):
            t = profile(n_envs, mode, args.repeats)
            print(f"{n_envs:>6} | {mode:>18} | {t['policy']:9.1f} | {t['env']:7.1f} | "
                  f"{t['rollout']:10.1f} | {t['rollout'] / n_envs:15.2f}", flush=True)


if __name__ == "__main__":
    main()
