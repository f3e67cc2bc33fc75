"""Seeds in lockstep: K = 8 seeds of one configuration trained together
(``ppo_lib.lockstep.train_seeds``) against the same 8 runs of ``PPO`` one after another.

    .venv/bin/python benchmarks/lockstep.py [--repeats 2] [--cases healthy vector ... grid10]

Cases: (a) lesson 07's HEALTHY set (sync envs), (b) the same on gymnasium's vectorised
CartPole, (c) rl-zoo's CartPole set (presets "cartpole_tuned"), (d) the Pendulum preset at a
small budget, lesson 07's sweep as the notebook runs it (``sweeps.sweep``, K = 3 seeds per
configuration, lockstep=False against the default), and lesson 10's grid on the local and
"processes" engines for two CartPole variants x 10 seeds (``run_grid``, lockstep off and
on). Both sides on one torch thread, alternating (a busy machine slows both alike), the
best of ``--repeats`` per side. Throughput is env steps over all seeds per second, of wall
time and of CPU time (``time.process_time``: on a shared machine wall time also measures
the neighbours; not for "processes", whose work is in its workers). Every lockstep result
is checked equal to the lone runs' (the last update's loss and the policy's weights of
every seed; the sweep's curves; the grid's rows).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from ppo_lib import presets
from ppo_lib.ablations import machine
from ppo_lib.lockstep import train_seeds
from ppo_lib.ppo import PPO
from ppo_lib.sweeps import HEALTHY

CASES = {
    "healthy": ("HEALTHY (lesson 07), sync", HEALTHY, "CartPole-v1", 15_000),
    "vector": ("HEALTHY, vector_entry_point",
               dict(HEALTHY, vectorization_mode="vector_entry_point"), "CartPole-v1", 15_000),
    "tuned": ("cartpole_tuned (rl-zoo), sync", presets.get("cartpole_tuned"), "CartPole-v1",
              15_000),
    "pendulum": ("pendulum preset", presets.get("pendulum"), "Pendulum-v1", 8_192),
}
# Lesson 07's sweep as the notebook runs it: 13 configurations x 3 seeds, 8,000 steps each
LESSON_07_SWEEP = {"clip_range": [0.05, 0.2, 0.5], "learning_rate": [1e-4, 1e-3, 1e-2],
                   "n_epochs": [3, 10, 20], "n_steps": [32, 64, 128],
                   "gae_lambda": [0.0, 0.8, 0.99]}
SEEDS = list(range(8))


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def lone_runs(config, env_id, steps):
    return [PPO("MlpPolicy", env_id, seed=seed, **config).learn(steps) for seed in SEEDS]


def check_equal(lone, together) -> None:
    for a, b in zip(lone, together):
        assert a.logger.rows[-1]["train/loss"] == b.logger.rows[-1]["train/loss"]
        assert all(torch.equal(x, y) for x, y in zip(a.policy.state_dict().values(),
                                                      b.policy.state_dict().values()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    extra = ["sweep07", "grid10", "grid10-processes"]
    parser.add_argument("--cases", nargs="+", default=[*CASES, *extra],
                        choices=[*CASES, *extra])
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine()
    print(f"machine: {info['cpu']} ({info['cpu_capability']}), torch {info['torch']}, "
          f"1 torch thread; K = {len(SEEDS)} seeds (lesson 07's sweep: 3, lesson 10's grid: 10)")
    print("| case | steps per run | runs one after another: s wall (CPU) | lockstep: s wall "
          "(CPU) | steps/s one after another | steps/s lockstep | ratio wall | ratio CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        if name == "sweep07":
            lesson_07_sweep(args.repeats)
            continue
        if name.startswith("grid10"):
            lesson_10_grid(args.repeats, "processes" if name.endswith("processes") else "local")
            continue
        label, config, env_id, steps = CASES[name]
        train_seeds(config, env_id, [0], 1024)  # warm up imports and caches
        best = {"lone": (float("inf"), float("inf")), "lockstep": (float("inf"), float("inf"))}
        for _ in range(args.repeats):
            lone, wall, cpu = timed(lambda: lone_runs(config, env_id, steps))
            best["lone"] = min(best["lone"], (wall, cpu))
            together, wall, cpu = timed(lambda: train_seeds(config, env_id, SEEDS, steps))
            best["lockstep"] = min(best["lockstep"], (wall, cpu))
            check_equal(lone, together)
        total = steps * len(SEEDS)
        (lw, lc), (kw, kc) = best["lone"], best["lockstep"]
        print(f"| {label} | {steps:,} | {lw:.1f} ({lc:.1f}) | {kw:.1f} ({kc:.1f}) | "
              f"{total / lw:,.0f} | {total / kw:,.0f} | {lw / kw:.2f} | {lc / kc:.2f} |",
              flush=True)


def lesson_07_sweep(repeats: int) -> None:
    """``sweeps.sweep`` of lesson 07 (K = 3 seeds per configuration), lockstep off and on."""
    import numpy as np

    from ppo_lib.sweeps import sweep, sweep_runs, train_ppo_lib

    base, seeds, steps = dict(HEALTHY, n_epochs=10), [0, 1, 2], 8_000
    train, grid = partial(train_ppo_lib, total_timesteps=steps), np.linspace(0, steps, 17)
    best = {False: (float("inf"),) * 2, True: (float("inf"),) * 2}
    for _ in range(repeats):
        curves = {}
        for lockstep in (False, True):
            curves[lockstep], wall, cpu = timed(
                lambda: sweep(train, base, LESSON_07_SWEEP, seeds, grid, lockstep=lockstep))
            best[lockstep] = min(best[lockstep], (wall, cpu))
        assert all(np.array_equal(curves[False][p][v].values, curves[True][p][v].values,
                                  equal_nan=True) for p in LESSON_07_SWEEP
                   for v in LESSON_07_SWEEP[p])
    total = sweep_runs(base, LESSON_07_SWEEP, len(seeds)) * steps
    (lw, lc), (kw, kc) = best[False], best[True]
    print(f"| lesson 07's sweep (13 configs x 3 seeds) | {steps:,} | {lw:.1f} ({lc:.1f}) | "
          f"{kw:.1f} ({kc:.1f}) | {total / lw:,.0f} | {total / kw:,.0f} | {lw / kw:.2f} | "
          f"{lc / kc:.2f} |", flush=True)


def lesson_10_grid(repeats: int, engine: str) -> None:
    """``run_grid`` on ``engine`` of two lesson-10 CartPole variants x 10 seeds at their
    50k-step budget (K = 10 per variant, or two halves of 5 on two cores with "processes"),
    lockstep off and on: the rows must be equal."""
    from ppo_lib.ablations import BUDGETS, base_config, variants
    from ppo_lib.sweeps import run_grid

    grid = {name: variants("CartPole-v1")[name] for name in ("base", "ReLU")}
    steps = BUDGETS["CartPole-v1"]
    kwargs = dict(env_id="CartPole-v1", total_timesteps=steps, progress_bar=False,
                  engine=engine)
    best = {False: (float("inf"),) * 2, True: (float("inf"),) * 2}
    for _ in range(repeats):
        frames = {}
        for lockstep in (False, True):
            frames[lockstep], wall, cpu = timed(lambda: run_grid(
                base_config("CartPole-v1"), grid, range(10), lockstep=lockstep, **kwargs))
            best[lockstep] = min(best[lockstep], (wall, cpu))
        assert frames[True].drop(columns="seconds").equals(frames[False].drop(columns="seconds"))
    total = 2 * 10 * steps
    (lw, lc), (kw, kc) = best[False], best[True]
    cpu = engine == "local"  # "processes": the work is in the workers, not counted here
    print(f"| lesson 10's grid, {engine}: 2 CartPole variants x 10 seeds (+ evaluation) | "
          f"{steps:,} | {lw:.1f}{f' ({lc:.1f})' if cpu else ''} | "
          f"{kw:.1f}{f' ({kc:.1f})' if cpu else ''} | {total / lw:,.0f} | {total / kw:,.0f} | "
          f"{lw / kw:.2f} | {f'{lc / kc:.2f}' if cpu else '-'} |", flush=True)


if __name__ == "__main__":
    main()
