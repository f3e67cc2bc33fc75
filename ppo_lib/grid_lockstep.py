"""``run_grid`` with each grid point's seeds trained together (``ppo_lib.lockstep``): the
same rows as one run per seed, faster. The local engine trains a grid point's seeds in
lockstep; the "processes" engine makes a grid point one task (halved while there are fewer
tasks than cores); ``run_grid(..., lockstep=False)`` turns both off.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .grid import (RESULT_COLUMNS, evaluated, outcome, run_local, run_one,
                   train_and_evaluate)
from .lockstep import supports_lockstep, train_seeds


def train_and_evaluate_seeds(config: Mapping[str, Any], seeds: Sequence[int], env_id: str,
                             total_timesteps: int, n_eval_episodes: int
                             ) -> list[dict[str, Any]]:
    """``train_and_evaluate`` for several seeds of one configuration, trained together by
    ``ppo_lib.lockstep.train_seeds`` (the same numbers as one run per seed), in this process
    (the "local" engine's promise; the "processes" engine has a process per core already)."""
    models = train_seeds(config, env_id, seeds, total_timesteps, processes=1)
    return [evaluated(model, env_id, n_eval_episodes) for model in models]


def run_seeds_together(config: Mapping[str, Any], seeds: Sequence[int], env_id: str,
                       total_timesteps: int, n_eval_episodes: int
                       ) -> list[dict[str, Any]] | None:
    """``run_one`` for several seeds of one configuration trained in lockstep: their result
    columns (each row's ``seconds`` the group's CPU seconds divided among its runs), or None
    when training raised (the caller then runs each seed alone, so that a failing run is
    its own row with its own error)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.process_time()
    try:
        outs = train_and_evaluate_seeds(config, seeds, env_id, total_timesteps, n_eval_episodes)
    except Exception:  # noqa: BLE001 - rerun seed by seed: each error in its own row
        return None
    finally:
        torch.set_num_threads(threads)
    seconds = (time.process_time() - start) / len(seeds)
    return [{column: dict(out, error=None, seconds=seconds).get(column)
             for column in RESULT_COLUMNS} for out in outs]


def run_local_lockstep(tasks, trainer, finish, progress) -> None:
    """As ``run_local``, each grid point's seeds trained together (``ppo_lib.lockstep``)
    where the configuration allows it; the rows are the same."""
    for group in same_config_groups(tasks):
        _, config, _, env_id, total_timesteps, n_eval = group[0]
        results = None
        if len(group) > 1 and supports_lockstep(config, env_id):
            results = run_seeds_together(config, [task[2] for task in group], env_id,
                                         total_timesteps, n_eval)
        if results is None:
            run_local(group, trainer, finish, progress)
            continue
        for task, result in zip(group, results):
            finish(task[0], result)
            progress.update(1)


def same_config_groups(tasks) -> list[list[tuple]]:
    """Consecutive tasks of one configuration (PPO arguments, env, budget, evaluation), in
    order: a grid point's seeds."""
    groups: list[list[tuple]] = []
    for task in tasks:
        if groups and _same_run_settings(groups[-1][0], task):
            groups[-1].append(task)
        else:
            groups.append([task])
    return groups


def _same_run_settings(a: tuple, b: tuple) -> bool:
    """Two tasks (index, config, seed, env_id, total_timesteps, n_eval) that differ at
    most in their seed."""
    try:
        return a[1] == b[1] and a[3:] == b[3:]
    except Exception:  # noqa: BLE001 - arguments that cannot be compared: run apart
        return False


def split_for_workers(units: list[list[tuple]], workers: int) -> list[list[tuple]]:
    """Fewer tasks than workers (a grid of few points, many seeds): the largest halved until
    every worker has one (two half-groups in lockstep on two cores beat one whole group)."""
    units = list(units)
    while len(units) < workers and max(len(unit) for unit in units) > 1:
        largest = max(range(len(units)), key=lambda i: len(units[i]))
        unit = units.pop(largest)
        units[largest:largest] = [unit[:len(unit) // 2], unit[len(unit) // 2:]]
    return units


def run_group(trainer, group) -> list[dict[str, Any]]:
    """Tasks of one configuration (a grid point's seeds, or one task) -> each run's result
    columns: in lockstep when they are several runs of the default trainer and the
    configuration allows it, else ``run_one`` each."""
    _, config, _, env_id, total_timesteps, n_eval = group[0]
    results = None
    if len(group) > 1 and trainer is train_and_evaluate and supports_lockstep(config, env_id):
        results = run_seeds_together(config, [task[2] for task in group], env_id,
                                     total_timesteps, n_eval)
    if results is None:
        results = [run_one(trainer, config, seed, env_id, total_timesteps, n_eval)
                   for _, config, seed, env_id, total_timesteps, n_eval in group]
    return results


def outcomes(future, runs: int) -> list[dict[str, Any]]:
    """The result columns of a finished task's ``runs`` runs (``outcome``: a worker that
    died gives each run a row with its error)."""
    result = outcome(future)
    return result if isinstance(result, list) else [result] * runs
