"""ppo_lib vs Stable-Baselines3 on CartPole-v1, same hyperparameters, same process.

    .venv/bin/python benchmarks/cartpole_vs_sb3.py [--seeds 5] [--steps 100000]

Both libraries train with rl-baselines3-zoo's CartPole-v1 set (ppo_lib.presets
"cartpole_tuned") for --steps steps, seed by seed, interleaved (ppo_lib sync seed 0, ppo_lib
vector seed 0, SB3 seed 0, ppo_lib sync seed 1, ...) so that a busy machine slows all alike;
ppo_lib runs twice, on SB3's kind of env (gym.make copies stepped one after another,
vectorization_mode "sync") and on gymnasium's numpy-vectorised CartPole ("vector_entry_point").
torch runs on one thread in all. Per seed it prints the wall time, the first step at which
the moving mean of the last 20 training-episode returns reached 475, and the final
deterministic evaluation (20 episodes); then the median SB3 / ppo_lib wall-time ratios and
the median steps to a 475 moving return (sample efficiency). Last, the wall time to *solve*
CartPole (stop as soon as a 20-episode deterministic evaluation reaches 475) with ppo_lib's
"cartpole_fast" preset at its own budget (presets.budget) vs SB3's zoo run at the zoo's
100k steps, and how many seeds each solved; the evaluation, checked every 2k steps once the
moving return is >= 475, counts in the time, and both libraries run its 20 episodes side by
side (ppo_lib's evaluate_policy on an env id, SB3's on a 20-env DummyVecEnv).

    --skip-solve    only the wall-time ratio       --skip-ratio    only the time to solve
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import deque

import gymnasium as gym
import numpy as np
import torch

from ppo_lib import presets
from ppo_lib.ablations import machine
from ppo_lib.callbacks import BaseCallback
from ppo_lib.evaluation import evaluate_policy
from ppo_lib.ppo import PPO

SOLVED = 475.0


class FirstSolved(BaseCallback):
    """ppo_lib: the step at which the mean of the last 20 episode returns reached 475; with
    ``stop_on_eval`` also stop once a 20-episode deterministic evaluation reaches 475."""

    def __init__(self, stop_on_eval: bool = False):
        super().__init__()
        self.stop_on_eval, self.first_step, self.solved_step = stop_on_eval, None, None
        self.seen, self.window, self.last_eval = 0, deque(maxlen=20), -10**9

    def _on_update_end(self) -> None:
        env = self.model.env
        new = env.episode_count - self.seen
        self.seen = env.episode_count
        self.window.extend(list(env.episode_returns)[-new:] if new else [])
        if self.first_step is None and len(self.window) == 20 and np.mean(self.window) >= SOLVED:
            self.first_step = self.num_timesteps
        if (self.stop_on_eval and self.first_step is not None
                and self.num_timesteps - self.last_eval >= 2000):
            self.last_eval = self.num_timesteps
            if evaluate_policy(self.model, "CartPole-v1", 20, seed=10_000)[0] >= SOLVED:
                self.solved_step = self.num_timesteps

    def _on_step(self) -> bool:
        return self.solved_step is None


def run_ppo_lib(seed: int, steps: int, preset: str = "cartpole_tuned", stop: bool = False,
                mode: str | None = None):
    start = time.perf_counter()
    cb = FirstSolved(stop_on_eval=stop)
    config = presets.get(preset)
    if mode is not None:
        config["vectorization_mode"] = mode
    model = PPO("MlpPolicy", "CartPole-v1", seed=seed, **config)
    model.learn(steps, callback=cb)
    wall = time.perf_counter() - start
    final = evaluate_policy(model, "CartPole-v1", 20, seed=10_000)[0]
    return wall, cb.first_step, cb.solved_step, final


def run_sb3(seed: int, steps: int, stop: bool = False):
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback as SB3Callback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy as sb3_evaluate

    class SB3FirstSolved(SB3Callback):
        def __init__(self):
            super().__init__()
            self.window, self.first_step, self.solved_step, self.last_eval = (
                deque(maxlen=20), None, None, -10**9)

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.window.append(info["episode"]["r"])
            if (self.first_step is None and len(self.window) == 20
                    and np.mean(self.window) >= SOLVED):
                self.first_step = self.num_timesteps
            return self.solved_step is None

        def _on_rollout_end(self) -> None:
            if stop and self.first_step is not None and self.num_timesteps - self.last_eval >= 2000:
                self.last_eval = self.num_timesteps
                # 20 envs side by side, one episode each: as ppo_lib's evaluate_policy does
                eval_env = make_vec_env("CartPole-v1", n_envs=20, seed=10_000)
                mean, _ = sb3_evaluate(self.model, eval_env, 20)
                if mean >= SOLVED:
                    self.solved_step = self.num_timesteps

    zoo = presets.get("cartpole_tuned")
    n_envs = zoo.pop("n_envs")
    start = time.perf_counter()
    cb = SB3FirstSolved()
    model = SB3PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed),
                   seed=seed, device="cpu", **zoo)
    model.learn(steps, callback=cb)
    wall = time.perf_counter() - start
    final = evaluate_policy(model, "CartPole-v1", 20, seed=10_000)[0]
    return wall, cb.first_step, cb.solved_step, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--skip-solve", action="store_true")
    parser.add_argument("--skip-ratio", action="store_true", help="only the time to solve")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}, SB3 {sb3_version()}, gymnasium {gym.__version__}")
    run_ppo_lib(0, 256)  # the first PPO in a process imports torch._dynamo (Adam): not timed

    # SB3's default logger makes a /tmp/SB3-<time> folder per learn() unless $SB3_LOGDIR is set
    with tempfile.TemporaryDirectory(prefix="sb3-logs-") as logs:
        os.environ.setdefault("SB3_LOGDIR", logs)
        if not args.skip_ratio:
            wall_time_ratio(args)
        if not args.skip_solve:
            time_to_solve(args)


def sb3_version() -> str:
    import stable_baselines3
    return stable_baselines3.__version__


def wall_time_ratio(args) -> None:
    """The zoo set in all three: ppo_lib on SB3's kind of env (gym.make copies stepped one
    after another, "sync") and on gymnasium's numpy-vectorised CartPole, and SB3."""
    print(f"{'seed':>4} | {'run':>14} | {'wall s':>7} | {'475 at step':>11} | {'final eval':>10}")
    walls = {name: [] for name in ("sync", "vector", "sb3")}
    firsts = {name: [] for name in walls}
    for seed in range(args.seeds):
        runs = {"sync": run_ppo_lib(seed, args.steps),
                "vector": run_ppo_lib(seed, args.steps, mode="vector_entry_point"),
                "sb3": run_sb3(seed, args.steps)}
        for name, (wall, first, _, final) in runs.items():
            walls[name].append(wall)
            firsts[name].append(first)
            print(f"{seed:>4} | {LABELS[name]:>14} | {wall:7.2f} | {str(first):>11} | "
                  f"{final:10.1f}", flush=True)
    for name in ("sync", "vector"):
        ratios = [theirs / ours for theirs, ours in zip(walls["sb3"], walls[name])]
        print(f"ppo_lib {name}: median SB3 / ppo_lib wall-time ratio "
              f"{statistics.median(ratios):.2f} (per seed: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
    for name, steps in firsts.items():
        reached = [s for s in steps if s is not None]
        print(f"{LABELS[name]}: 475 moving return reached by {len(reached)}/{len(steps)} "
              f"seeds, median step {statistics.median(reached) if reached else None}")


LABELS = {"sync": "ppo_lib sync", "vector": "ppo_lib vector", "sb3": "SB3"}


def time_to_solve(args) -> None:
    budget = presets.budget("cartpole_fast")
    print(f"\ntime to solve (stop when a 20-episode deterministic evaluation reaches 475): "
          f"ppo_lib cartpole_fast at its budget ({budget:,} steps), SB3 zoo at 100,000:")
    fast, zoo, solved_fast, solved_zoo = [], [], 0, 0
    for seed in range(args.seeds):
        wall, _, solved, _ = run_ppo_lib(seed, budget, "cartpole_fast", stop=True)
        fast.append(wall)
        solved_fast += solved is not None
        print(f"  seed {seed}: ppo_lib cartpole_fast {wall:6.2f} s (solved at {solved})",
              flush=True)
        wall, _, solved, _ = run_sb3(seed, 100_000, stop=True)
        zoo.append(wall)
        solved_zoo += solved is not None
        print(f"  seed {seed}: SB3 zoo              {wall:6.2f} s (solved at {solved})",
              flush=True)
    print(f"median: ppo_lib cartpole_fast {statistics.median(fast):.2f} s "
          f"({solved_fast}/{args.seeds} solved), SB3 zoo {statistics.median(zoo):.2f} s "
          f"({solved_zoo}/{args.seeds} solved), ratio "
          f"{statistics.median(zoo) / statistics.median(fast):.2f}")


if __name__ == "__main__":
    main()
