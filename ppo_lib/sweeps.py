"""Small multi-seed runs and sweeps that return data for plots (lessons 07 and 08).

A *trainer* here is any function ``train(config, seed) -> (rows, seconds)`` that trains one
run and returns its logger rows (one dict per update, SB3 keys) and the CPU seconds it took
(``time.process_time``: on a shared machine wall time mostly measures the neighbours).
``train_ppo_lib`` is one and ``ppo_lib.lab.sb3.train_sb3`` (Stable-Baselines3's PPO)
another, to be bound to an env and a budget with ``functools.partial``:

    train = partial(train_ppo_lib, env_id="CartPole-v1", total_timesteps=15_000)
    curves = run_seeds(train, config, seeds=[0, 1, 2], grid=np.linspace(0, 15_000, 31))
    mean, low, high = band(curves.values)

Nothing here plots or imports Stable-Baselines3; ``Curves`` holds arrays and the notebook
draws them. ``run_grid`` (from ``ppo_lib.grid``) runs a grid x seeds on one core or all local
cores and returns a pandas DataFrame, one row per run.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .grid import run_grid, train_and_evaluate  # noqa: F401 - public here (issue 14)
from .validation import check_in_range

Rows = list[dict[str, float]]
Trainer = Callable[[Mapping[str, Any], int], tuple[Rows, float]]

# Lesson 07's three broken runs on CartPole-v1 (which is which is the exercise
# ``diagnose_runs``; the healthy baseline is ``HEALTHY``).
HEALTHY = dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, learning_rate=1e-3,
               gamma=0.98, gae_lambda=0.8, clip_range=0.2, ent_coef=0.0)
BROKEN_RUNS: dict[str, dict[str, Any]] = {
    "A": dict(HEALTHY, learning_rate=1e-6, n_epochs=1),                       # timid
    "B": dict(HEALTHY, vf_coef=0.0),                                         # no critic
    "C": dict(HEALTHY, learning_rate=0.03),                                  # too large
}


@dataclass
class Curves:
    """One configuration over several seeds, on a common grid of time steps."""

    steps: np.ndarray                 # (P,) time steps of the grid
    values: np.ndarray                # (S, P) the metric per seed (NaN before it exists)
    seconds: np.ndarray               # (S,) CPU seconds of each run
    rows: list[Rows] = field(default_factory=list)   # each seed's logger rows

    def final(self, last: int = 1) -> np.ndarray:
        """Each seed's mean over its last ``last`` grid points, shape (S,) (NaN if none)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.values[:, -last:], axis=1)


def on_grid(rows: Sequence[Mapping[str, float]], key: str, grid: np.ndarray,
            step_key: str = "time/total_timesteps") -> np.ndarray:
    """A logged metric as a step function of time steps, read at each grid point: the last
    value logged at or before it (NaN before the first)."""
    pairs = [(row[step_key], row[key]) for row in rows
             if row.get(key) is not None and row.get(step_key) is not None]
    out = np.full(len(grid), np.nan)
    if not pairs:
        return out
    steps, values = np.array(pairs, dtype=np.float64).T
    index = np.searchsorted(steps, np.asarray(grid, dtype=np.float64), side="right") - 1
    seen = index >= 0
    out[seen] = values[index[seen]]
    return out


def train_ppo_lib(config: Mapping[str, Any], seed: int, env_id: str = "CartPole-v1",
                  total_timesteps: int = 15_000) -> tuple[Rows, float]:
    """Train ppo_lib's PPO(**config) for ``total_timesteps``; its logger rows and seconds."""
    from .ppo import PPO

    start = time.process_time()
    model = PPO("MlpPolicy", env_id, seed=seed, **config)
    model.learn(total_timesteps)
    return [dict(row) for row in model.logger.rows], time.process_time() - start


def train_ppo_lib_seeds(config: Mapping[str, Any], seeds: Sequence[int],
                        env_id: str = "CartPole-v1", total_timesteps: int = 15_000,
                        ) -> list[tuple[Rows, float]]:
    """``train_ppo_lib`` for several seeds of one configuration, trained together
    (``ppo_lib.lockstep.train_seeds``, on one torch thread per group, a group per core): the
    same rows as one run per seed on one thread; each run's seconds are the CPU seconds of
    all the groups (this process and its children) divided among them."""
    from .lockstep import train_seeds
    from .seed_processes import cpu_seconds

    start = cpu_seconds()
    models = train_seeds(config, env_id, seeds, total_timesteps)
    seconds = (cpu_seconds() - start) / len(models)
    return [([dict(row) for row in model.logger.rows], seconds) for model in models]


def lockstep_settings(train: Trainer, config: Mapping[str, Any], seeds: Sequence[int],
                      ) -> dict[str, Any] | None:
    """{env_id, total_timesteps} when ``train`` is ``train_ppo_lib`` (or a ``partial`` of it
    binding only those) and ``config``'s ``seeds`` (distinct ints) can train in lockstep,
    else None.

    Only on one torch thread (lessons 07 and 08 set it): the lockstep run reproduces a lone
    run on one thread, and a lone run's low bits depend on how torch splits its matrix
    products among threads."""
    import torch

    from .lockstep import check_seeds, supports_lockstep

    keywords: dict[str, Any] = {}
    if isinstance(train, partial) and train.func is train_ppo_lib and not train.args:
        keywords = dict(train.keywords)
    elif train is not train_ppo_lib:
        return None
    settings = dict(env_id="CartPole-v1", total_timesteps=15_000)
    if set(keywords) - set(settings) or torch.get_num_threads() != 1:
        return None
    try:
        check_seeds(seeds)
    except ValueError:  # e.g. a seed twice: trained twice, one after the other, as before
        return None
    settings.update(keywords)
    return settings if supports_lockstep(config, settings["env_id"]) else None


def run_seeds(train: Trainer, config: Mapping[str, Any], seeds: Iterable[int],
              grid: np.ndarray, key: str = "rollout/ep_rew_mean",
              progress: Any = None, lockstep: bool = True) -> Curves:
    """``train(config, seed)`` for every seed, the metric ``key`` read on ``grid``.
    ``progress`` (e.g. a tqdm bar) gets ``update(1)`` after each run.

    ``lockstep``: when ``train`` is ``train_ppo_lib`` (a ``partial`` binding env_id and
    total_timesteps) and torch runs on one thread, the seeds train together
    (``train_ppo_lib_seeds``): the same rows, faster (benchmarks/README.md)."""
    grid = np.asarray(grid, dtype=np.float64)
    seeds = list(seeds)
    settings = lockstep_settings(train, config, seeds) if lockstep and len(seeds) > 1 else None
    if settings is not None:
        results = iter(train_ppo_lib_seeds(config, seeds, **settings))
    else:
        results = (train(config, seed) for seed in seeds)
    all_rows, values, seconds = [], [], []
    for rows, elapsed in results:
        all_rows.append(rows)
        values.append(on_grid(rows, key, grid))
        seconds.append(elapsed)
        if progress is not None:
            progress.update(1)
    if not values:
        raise ValueError("seeds is empty; expected at least one seed")
    return Curves(grid, np.stack(values), np.array(seconds), all_rows)


def sweep(train: Trainer, base_config: Mapping[str, Any],
          grid_of_values: Mapping[str, Sequence[Any]], seeds: Sequence[int],
          grid: np.ndarray, key: str = "rollout/ep_rew_mean",
          progress: Any = None, lockstep: bool = True) -> dict[str, dict[Any, Curves]]:
    """One parameter at a time around ``base_config``: ``{param: {value: Curves}}``.

    A value equal to the base config's is trained once and shared by every parameter.
    ``lockstep``: as ``run_seeds`` (each value's seeds trained together).
    """
    base_curves = None
    out: dict[str, dict[Any, Curves]] = {}
    for param, values in grid_of_values.items():
        out[param] = {}
        for value in values:
            is_base = param in base_config and base_config[param] == value
            if is_base and base_curves is not None:  # trained already: no progress to add
                out[param][value] = base_curves
                continue
            curves = run_seeds(train, {**base_config, param: value}, seeds, grid, key,
                               progress, lockstep)
            if is_base:
                base_curves = curves
            out[param][value] = curves
    return out


def sweep_runs(base_config: Mapping[str, Any], grid_of_values: Mapping[str, Sequence[Any]],
               n_seeds: int) -> int:
    """How many training runs ``sweep`` makes (for a progress bar's total)."""
    distinct = sum(1 for param, values in grid_of_values.items() for value in values
                   if not (param in base_config and base_config[param] == value))
    shared = any(param in base_config and base_config[param] == value
                 for param, values in grid_of_values.items() for value in values)
    return (distinct + int(shared)) * n_seeds


def band(values: np.ndarray, kind: str = "std", level: float = 0.95, n_boot: int = 2000,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and a band around it: ``kind="std"`` gives mean +- one
    standard deviation, ``kind="ci"`` a bootstrap confidence interval of the mean at
    ``level`` (percentile method, resampling seeds, fixed ``seed``)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (seeds, points), got shape {values.shape}")
    with warnings.catch_warnings():  # grid points before any episode ended are all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return _band(values, kind, level, n_boot, seed)


def _band(values: np.ndarray, kind: str, level: float, n_boot: int, seed: int):
    mean = np.nanmean(values, axis=0)
    if kind == "std":
        std = np.nanstd(values, axis=0)
        return mean, mean - std, mean + std
    if kind == "ci":
        check_in_range("level", level, 0.0, 1.0, low_open=True, high_open=True)
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, values.shape[0], size=(n_boot, values.shape[0]))
        means = np.nanmean(values[picks], axis=1)           # (n_boot, P)
        tail = (1 - level) / 2 * 100
        low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)
        return mean, low, high
    raise ValueError(f"kind must be 'std' or 'ci', got {kind!r}")
