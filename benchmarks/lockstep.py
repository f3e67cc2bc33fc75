"""Seeds in lockstep: K = 8 seeds of one configuration trained together
(``ppo_lib.lockstep.train_seeds``) against the same 8 runs of ``PPO`` one after another.

    .venv/bin/python benchmarks/lockstep.py [--repeats 3] [--cases healthy vector ... grid10]

Cases: (a) lesson 07's HEALTHY set (sync envs), (b) the same on gymnasium's vectorised
CartPole, (c) rl-zoo's CartPole set (presets "cartpole_tuned"), (d) the Pendulum preset at a
small budget, lesson 07's sweep as the notebook runs it (``sweeps.sweep``, K = 3 seeds per
configuration, lockstep=False against the default), and lesson 10's grid on the local and
"processes" engines for two CartPole variants x 10 seeds (``run_grid``, lockstep off and
on).

For (a)-(d), four ways to train the same 8 runs, alternating (a busy machine slows all
alike), each on one torch thread per process, the best of ``--repeats``:
  * one after another: 8 lone ``PPO(...).learn(N)`` in this process (the target's baseline);
  * lockstep, one core: ``train_seeds(..., processes=1)``, all 8 seeds in one batched network;
  * lockstep, all cores: ``train_seeds(...)``, a group of seeds in lockstep per core (the
    default; ``ppo_lib.seed_processes``);
  * lone runs on all cores: the 8 lone runs split the same way over one process per core,
    one after another in each: what the other cores give without lockstep.
Throughput is env steps over all seeds per second of wall time; CPU seconds (of this process
and its children) are printed too. Every lockstep result is checked equal to the lone runs'
(the last update's loss and the policy's weights of every seed; the sweep's curves; the
grid's rows).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch

from ppo_lib import presets
from ppo_lib.ablations import machine
from ppo_lib.lockstep import _with_fast_path, _without_fast_path, train_seeds
from ppo_lib.ppo import PPO
from ppo_lib.seed_processes import cpu_seconds, seed_groups, train_groups, usable_cores
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
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def lone_runs(config, env_id, steps, seeds=SEEDS):
    return [PPO("MlpPolicy", env_id, seed=seed, **config).learn(steps) for seed in seeds]


def lone_runs_on_all_cores(config, env_id, steps):
    """The lone runs, one process per core (the groups ``train_seeds`` would make), one after
    another in each."""
    def train_group(seeds, bar_total):
        return lone_runs(config, env_id, steps, seeds)
    return train_groups(train_group, seed_groups(SEEDS, None), None,
                        prepare=_without_fast_path, finish=_with_fast_path)


def check_equal(lone, together) -> None:
    for a, b in zip(lone, together):
        assert a.logger.rows[-1]["train/loss"] == b.logger.rows[-1]["train/loss"]
        assert all(torch.equal(x, y) for x, y in zip(a.policy.state_dict().values(),
                                                      b.policy.state_dict().values()))


WAYS = {
    "one after another": lambda config, env_id, steps: lone_runs(config, env_id, steps),
    "lockstep, one core": lambda config, env_id, steps: train_seeds(
        config, env_id, SEEDS, steps, processes=1),
    "lockstep, all cores": lambda config, env_id, steps: train_seeds(
        config, env_id, SEEDS, steps),
    "lone runs, all cores": lone_runs_on_all_cores,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    extra = ["sweep07", "grid10", "grid10-processes"]
    parser.add_argument("--cases", nargs="+", default=[*CASES, *extra],
                        choices=[*CASES, *extra])
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine()
    print(f"machine: {info['cpu']} ({info['cpu_capability']}), {usable_cores()} usable "
          f"cores, torch {info['torch']}, 1 torch thread per process; K = {len(SEEDS)} seeds "
          f"(lesson 07's sweep: 3, lesson 10's grid: 10)")
    print("| case | steps per run | " + " | ".join(f"{way}: s wall (CPU)" for way in WAYS)
          + " | steps/s one after another | steps/s lockstep, all cores | ratio lockstep, "
          "one core | **ratio lockstep, all cores** | ratio lone runs, all cores |")
    print("|---|---|" + "---|" * (len(WAYS) + 5))
    extra_header, spread = False, {}
    for name in args.cases:
        if name in extra and not extra_header:
            print("\n| sweep | steps per run | lockstep off: s wall (CPU) | lockstep on: s "
                  "wall (CPU) | steps/s off | steps/s on | ratio wall | ratio CPU |")
            print("|---|---|---|---|---|---|---|---|")
            extra_header = True
        if name == "sweep07":
            lesson_07_sweep(args.repeats)
            continue
        if name.startswith("grid10"):
            lesson_10_grid(args.repeats, "processes" if name.endswith("processes") else "local")
            continue
        label, config, env_id, steps = CASES[name]
        train_seeds(config, env_id, SEEDS, 1024)  # warm up imports and caches
        best = {way: (float("inf"), float("inf")) for way in WAYS}
        for _ in range(args.repeats):
            results, walls = {}, {}
            for way, train in WAYS.items():
                results[way], walls[way], cpu = timed(lambda: train(config, env_id, steps))
                best[way] = min(best[way], (walls[way], cpu))
            spread.setdefault(label, []).append(
                walls["one after another"] / walls["lockstep, all cores"])
            for way in WAYS:
                check_equal(results["one after another"], results[way])
        total = steps * len(SEEDS)
        walls = {way: best[way][0] for way in WAYS}
        base = walls["one after another"]
        print(f"| {label} | {steps:,} | "
              + " | ".join(f"{wall:.2f} ({cpu:.2f})" for wall, cpu in best.values())
              + f" | {total / base:,.0f} | {total / walls['lockstep, all cores']:,.0f} | "
              f"{base / walls['lockstep, one core']:.2f} | "
              f"**{base / walls['lockstep, all cores']:.2f}** | "
              f"{base / walls['lone runs, all cores']:.2f} |", flush=True)
    for label, ratios in spread.items():  # each repeat's own pair, not the best of each
        print(f"{label}: lockstep on all cores / one after another, repeat by repeat: "
              f"{', '.join(f'{r:.2f}' for r in ratios)} (median {np.median(ratios):.2f})")


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
