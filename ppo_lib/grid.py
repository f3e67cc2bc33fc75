"""Grids of PPO runs: one row per (grid point, seed), on one core, all local cores or a Ray
cluster (re-exported by ``ppo_lib.sweeps``, its public path).

    frame = run_grid(presets.get("cartpole_fast"), {"n_epochs": [1, 5], "gae_lambda": [0.8, 0.95]},
                     seeds=range(5), total_timesteps=20_000, engine="processes",
                     results="cartpole_grid.csv")
    # named variants, each changing some arguments (one-at-a-time ablations, lesson 10):
    frame = run_grid(base, {"base": {}, "no advantage normalisation":
                            {"normalize_advantage": False}}, seeds=range(10))

Each run is seeded by its own seed only and trains on one torch thread, so every engine
gives the same numbers bit for bit. ``results=PATH`` appends each row to a CSV as it
finishes, and a re-run skips the rows already there: a sweep killed halfway resumes. The
Ray engine (``ppo_lib.grid_ray``) runs each run as a Ray task with one CPU.
"""

from __future__ import annotations

import csv
import inspect
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .validation import check_positive_int

ENGINES = ("local", "processes", "ray")
STEP_KEY, REWARD_KEY = "time/total_timesteps", "rollout/ep_rew_mean"
# Evaluation episode i of every run starts from EVAL_SEED + i: all runs meet the same
# episodes, none of them the ones a training seed (0, 1, ...) starts from.
EVAL_SEED = 10_000
RESULT_COLUMNS = ("eval_mean", "ep_rew_mean", "seconds", "error", "curve_steps",
                  "curve_ep_rew_mean")
# PPO arguments a grid may not vary: the run's identity is (env_id, seed), set by run_grid.
NOT_IN_GRID = ("self", "policy", "env", "seed", "verbose", "tensorboard_log")


def train_and_evaluate(config: Mapping[str, Any], seed: int, env_id: str,
                       total_timesteps: int, n_eval_episodes: int) -> dict[str, Any]:
    """Train ``PPO(env_id, seed=seed, **config)`` and evaluate it deterministically on
    ``n_eval_episodes`` seeded episodes: ``eval_mean``, the last logged ep_rew_mean and the
    curve (time steps and ep_rew_mean at each update that logged one)."""
    from .evaluation import evaluate_policy
    from .ppo import PPO

    model = PPO("MlpPolicy", env_id, seed=seed, **config)
    model.learn(total_timesteps)
    return evaluated(model, env_id, n_eval_episodes)


def evaluated(model, env_id: str, n_eval_episodes: int) -> dict[str, Any]:
    """A trained model's result columns (but seconds and error): ``eval_mean`` over
    ``n_eval_episodes`` deterministic episodes seeded EVAL_SEED + i, the last logged
    ep_rew_mean and the curve."""
    from .evaluation import evaluate_policy

    eval_mean, _ = evaluate_policy(model, env_id, n_eval_episodes=n_eval_episodes,
                                   deterministic=True, seed=EVAL_SEED)
    curve = [(row[STEP_KEY], row[REWARD_KEY]) for row in model.logger.rows
             if row.get(STEP_KEY) is not None and row.get(REWARD_KEY) is not None]
    return dict(eval_mean=float(eval_mean),
                ep_rew_mean=float(curve[-1][1]) if curve else math.nan,
                curve_steps=[int(step) for step, _ in curve],
                curve_ep_rew_mean=[float(reward) for _, reward in curve])


def run_one(trainer: Callable[..., dict[str, Any]], config: Mapping[str, Any], seed: int,
            env_id: str, total_timesteps: int, n_eval_episodes: int) -> dict[str, Any]:
    """One run on one torch thread: its result columns, or its error as text (a failing run
    is a row, not a lost sweep). KeyboardInterrupt is not caught: it stops the sweep."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.process_time()
    try:
        out = dict(trainer(config, seed, env_id, total_timesteps, n_eval_episodes), error=None)
    except Exception as error:  # noqa: BLE001 - any failure of one run becomes its row
        out = dict(eval_mean=math.nan, ep_rew_mean=math.nan, curve_steps=[],
                   curve_ep_rew_mean=[], error=f"{type(error).__name__}: {error}")
    finally:
        torch.set_num_threads(threads)
    out["seconds"] = time.process_time() - start
    return {column: out.get(column) for column in RESULT_COLUMNS}


def one_thread() -> None:
    """Process-pool initializer: each worker trains on one torch thread."""
    import torch

    torch.set_num_threads(1)


def ppo_arguments() -> list[str]:
    """The PPO constructor arguments a grid (or base_config) may set."""
    from .ppo import PPO

    return [name for name in inspect.signature(PPO.__init__).parameters
            if name not in NOT_IN_GRID]


def check_engine(engine: str, address: str | None) -> None:
    """``engine`` is one of ENGINES; ``address`` (a Ray cluster's) only with engine="ray"."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, "
                         f"got {engine!r}")
    if address is not None and engine != "ray":
        raise ValueError(f"address={address!r} joins a Ray cluster and needs engine='ray'; "
                         f"with engine={engine!r} leave it None")


def check_grid_inputs(base_config: Mapping[str, Any], grid: Mapping[str, Sequence[Any]],
                      seeds: Iterable[int], env_id: str, total_timesteps: int,
                      engine: str, address: str | None, n_eval_episodes: int) -> list[int]:
    """Every argument of run_grid checked before anything runs; the seeds as a list."""
    check_engine(engine, address)
    known = ppo_arguments()
    if not isinstance(base_config, Mapping):
        raise ValueError(f"base_config must be a dict of PPO arguments, got "
                         f"{type(base_config).__name__}")
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict mapping a PPO argument to a list of "
                         f"values, or a variant name to a dict of PPO arguments, got {grid!r}")
    variants = is_variants(grid)
    if variants and not all(isinstance(changes, Mapping) for changes in grid.values()):
        raise ValueError(f"grid mixes variants (name -> dict of PPO arguments) with argument "
                         f"lists: use one form, got {grid!r}")
    settings = [("base_config", base_config)]
    settings += ([(f"grid[{name!r}]", changes) for name, changes in grid.items()] if variants
                 else [("grid", grid)])
    for where, names in settings:
        for name in names:
            if name not in known:
                raise ValueError(f"{where} key {name!r} is not a PPO argument run_grid can "
                                 f"set; expected one of: {', '.join(known)}")
    for name, values in ({} if variants else grid).items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, "
                             f"got {values!r}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; expected at least one integer seed")
    for seed in seeds:
        if isinstance(seed, bool) or not hasattr(seed, "__index__"):
            raise ValueError(f"seeds must be integers, got seed {seed!r} "
                             f"({type(seed).__name__})")
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a gymnasium env id (a str), got {env_id!r}")
    check_positive_int("total_timesteps", total_timesteps)
    check_positive_int("n_eval_episodes", n_eval_episodes)
    return [int(seed) for seed in seeds]


def is_variants(grid: Mapping[str, Any]) -> bool:
    """A grid of named variants (name -> PPO arguments), not a Cartesian product."""
    return any(isinstance(changes, Mapping) for changes in grid.values())


def grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grid's points as columns: the Cartesian product of the argument lists, or one
    point per variant, ``variant`` (its name) and ``changes`` (its PPO arguments as JSON,
    so a variant whose arguments change is a new run)."""
    if is_variants(grid):
        return [dict(variant=name, changes=as_text(dict(changes)))
                for name, changes in grid.items()]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_config(grid: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """The PPO arguments a point sets."""
    return dict(grid[point["variant"]]) if is_variants(grid) else dict(point)


def as_text(value: Any) -> str:
    """A CSV cell: JSON text (floats round-trip exactly), repr for what JSON cannot hold."""
    return json.dumps(value, default=repr)


def from_text(text: str) -> Any:
    return json.loads(text)


def header(keys: Sequence[str]) -> list[str]:
    return ["env_id", "total_timesteps", *keys, "seed", *RESULT_COLUMNS]


def identity(point: Mapping[str, Any], seed: int, env_id: str,
             total_timesteps: int) -> tuple[str, ...]:
    """What makes two rows the same run: env, budget, grid values and seed, as CSV text."""
    return (as_text(env_id), as_text(total_timesteps),
            *(as_text(value) for value in point.values()), as_text(seed))


def read_results(path: Path, keys: Sequence[str]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The rows already in a results file: {identity: result columns}."""
    if not path.exists() or path.stat().st_size == 0:
        return {}
    with path.open(newline="") as file:
        reader = csv.reader(file)
        columns = next(reader)
        if columns != header(keys):
            raise ValueError(f"results file {str(path)!r} has columns {columns}; this grid "
                             f"writes {header(keys)}: use another file for another grid")
        done = {}
        for cells in reader:
            if len(cells) != len(columns):  # a line cut short when a sweep was killed
                continue
            result = dict(zip(RESULT_COLUMNS, map(from_text, cells[-len(RESULT_COLUMNS):])))
            done[tuple(cells[:-len(RESULT_COLUMNS)])] = result
    return done


def ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) in (b"\n", b"\r")


def append_result(path: Path, keys: Sequence[str], run_id: tuple[str, ...],
                  result: Mapping[str, Any]) -> None:
    """One finished row at the end of the results file (its header first if it is new)."""
    new = not path.exists() or path.stat().st_size == 0
    cut_short = not new and not ends_with_newline(path)   # a sweep killed mid-line
    with path.open("a", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(header(keys))
        if cut_short:
            file.write("\r\n")
        writer.writerow([*run_id, *(as_text(result[column]) for column in RESULT_COLUMNS)])
        file.flush()


class Finished(dict):
    """{run index: result columns} of the finished runs; ``finish`` also appends the row to
    the results file (when there is one) the moment a run ends."""

    def __init__(self, path: Path | None, keys: Sequence[str], ids: Sequence[tuple[str, ...]]):
        super().__init__()
        self.path, self.keys, self.ids = path, keys, ids

    def finish(self, index: int, result: dict[str, Any]) -> None:
        self[index] = result
        if self.path is not None:
            append_result(self.path, self.keys, self.ids[index], result)


def run_local(tasks, trainer, finish, progress) -> None:
    """Each run in this process, one after another."""
    for index, config, seed, env_id, total_timesteps, n_eval in tasks:
        finish(index, run_one(trainer, config, seed, env_id, total_timesteps, n_eval))
        progress.update(1)


def run_processes(tasks, trainer, finish, progress, lockstep: bool = False) -> None:
    """All local cores: one spawned worker process per core, one torch thread each.
    ``lockstep``: a grid point's seeds are one task, trained together (``run_group``).

    Ctrl-C cancels the runs not started; the runs under way finish and are kept (a second
    Ctrl-C drops them). A Ctrl-C that also reached the workers (a terminal's) ends them too.
    """
    from .grid_lockstep import outcomes, run_group, same_config_groups, split_for_workers

    units = same_config_groups(tasks) if lockstep else [[task] for task in tasks]
    units = split_for_workers(units, os.cpu_count() or 1)
    workers = max(1, min(os.cpu_count() or 1, len(units)))
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=one_thread)
    futures, recorded = {}, set()
    try:
        for unit in units:
            futures[executor.submit(run_group, trainer, unit)] = unit
        for future in as_completed(futures):
            recorded.add(future)
            for task, result in zip(futures[future], outcomes(future, len(futures[future]))):
                finish(task[0], result)
                progress.update(1)
    except KeyboardInterrupt:  # keep what finished; a worker Ctrl-C ended is not a row
        executor.shutdown(wait=True, cancel_futures=True)
        for future, unit in futures.items():
            if future not in recorded and future.done() and not future.cancelled() \
                    and not isinstance(future.exception(), (KeyboardInterrupt,
                                                            BrokenProcessPool)):
                for task, result in zip(unit, outcomes(future, len(unit))):
                    finish(task[0], result)
                    progress.update(1)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def outcome(future) -> dict[str, Any]:
    """A finished run's result columns; a worker that died is a row with its error.
    A KeyboardInterrupt inside the worker stops the sweep."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - e.g. a worker process that died
        why = f"{type(error).__name__}: {error}"
        if isinstance(error, BrokenProcessPool):
            why += (" (worker processes import your script: in a script, call run_grid under "
                    "`if __name__ == \"__main__\":`)")
        return dict(eval_mean=math.nan, ep_rew_mean=math.nan, seconds=math.nan,
                    curve_steps=[], curve_ep_rew_mean=[], error=why)


def run_grid(base_config: Mapping[str, Any], grid: Mapping[str, Sequence[Any]],
             seeds: Iterable[int], env_id: str = "CartPole-v1",
             total_timesteps: int = 50_000, engine: str = "local",
             address: str | None = None, results: str | os.PathLike | None = None,
             n_eval_episodes: int = 10, progress_bar: bool = True,
             trainer: Callable[..., dict[str, Any]] | None = None, lockstep: bool = True):
    """``PPO(env_id, seed=seed, **base_config, **point)`` for every point of the Cartesian
    product of ``grid`` (PPO argument -> list of values), or of every named variant when
    ``grid`` maps names to dicts of PPO arguments, and every seed; a pandas DataFrame with one
    row per run, in grid order.

    Columns: ``env_id``, ``total_timesteps``, the grid's keys (for variants: ``variant``, the
    name, and ``changes``, its arguments as JSON), ``seed``, ``eval_mean`` (mean
    return of a deterministic evaluation on ``n_eval_episodes`` episodes seeded EVAL_SEED +
    i), ``ep_rew_mean`` (the last logged rollout/ep_rew_mean), ``seconds`` (CPU seconds),
    ``error`` (None, or the exception of a run that raised), and the curve as two lists,
    ``curve_steps`` and ``curve_ep_rew_mean``.

    ``engine``: "local" (this process, one run after another), "processes" (all local
    cores) or "ray" (each run a Ray task with one CPU: ``address`` or RAY_ADDRESS joins a
    running cluster, otherwise a local Ray starts and stops with the sweep); all give the
    same numbers bit for bit. ``results``: a CSV path; each row is appended as it finishes
    and rows already there (same env_id, total_timesteps, grid values and seed; keep grid
    values plain numbers, strings, bools or None for that) are not run again. Ctrl-C stops the sweep and returns the
    finished rows, with a warning. ``trainer(config, seed, env_id, total_timesteps,
    n_eval_episodes) -> dict`` replaces ``train_and_evaluate`` (module-level, so worker
    processes can import it). ``lockstep``: with engines "local" and "processes" and the
    default trainer, train each grid point's seeds together (``ppo_lib.lockstep``: the same
    rows, faster; on "processes" a grid point is then one task); the "ray" engine runs one
    task per run either way.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    seeds = check_grid_inputs(base_config, grid, seeds, env_id, total_timesteps, engine,
                              address, n_eval_episodes)
    trainer = train_and_evaluate if trainer is None else trainer
    points = grid_points(grid)
    keys = list(points[0])
    runs = [(point, seed) for point in points for seed in seeds]
    ids = [identity(point, seed, env_id, total_timesteps) for point, seed in runs]
    path = None if results is None else Path(results)
    done = {} if path is None else read_results(path, keys)
    finished = Finished(path, keys, ids)
    finished.update({index: done[run_id] for index, run_id in enumerate(ids) if run_id in done})
    tasks = [(index, {**base_config, **point_config(grid, point)}, seed, env_id,
              total_timesteps, n_eval_episodes)
             for index, (point, seed) in enumerate(runs) if index not in finished]
    if engine == "ray":
        from .grid_ray import run_ray

        def run(tasks, trainer, finish, progress):
            run_ray(tasks, trainer, finish, progress, address=address)
    elif engine == "local":
        from .grid_lockstep import run_local_lockstep

        run = run_local_lockstep if lockstep and trainer is train_and_evaluate else run_local
    else:
        run = partial(run_processes, lockstep=lockstep and trainer is train_and_evaluate)
    with tqdm(total=len(tasks), desc="runs", disable=not progress_bar) as progress:
        try:
            run(tasks, trainer, finished.finish, progress)
        except KeyboardInterrupt:
            warnings.warn(f"sweep interrupted: returning the {len(finished)} of {len(runs)} "
                          f"runs that finished" + ("" if path is None else
                                                   f" (all kept in {str(path)!r})"),
                          stacklevel=2)
    rows = [dict(env_id=env_id, total_timesteps=total_timesteps, **runs[index][0],
                 seed=runs[index][1], **finished[index])
            for index in range(len(runs)) if index in finished]
    frame = pd.DataFrame(rows, columns=header(keys))
    # object dtype keeps None as None (a text column would turn it into NaN)
    frame["error"] = pd.Series([row["error"] for row in rows], index=frame.index, dtype=object)
    return frame
