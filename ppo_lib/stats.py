"""Statistics that do not lie with few seeds (lesson 10): rliable's interquartile mean,
stratified bootstrap confidence intervals and performance profiles (Agarwal et al. 2021,
"Deep RL at the edge of the statistical precipice").

Scores are arranged as rliable arranges them: an array of shape (runs, tasks), one column
per task (env) and one row per run (seed), or (runs,) for a single task. ``scores_by`` builds
them from a ``ppo_lib.sweeps.run_grid`` DataFrame.

    scores = scores_by(frame, normalize={"CartPole-v1": (9.0, 500.0)})
    estimates = stratified_bootstrap_ci(scores)       # {variant: (iqm, low, high)}
    table = estimates_table(estimates)                 # variant, iqm, ci_low, ci_high
    clearly_worse(table, base="base")                  # the variants whose CI lies below

The definitions are rliable's (``rliable.metrics.aggregate_iqm`` is scipy's trimmed mean;
rliable's StratifiedBootstrap resamples runs within each task). The bootstrap is
``scipy.stats.bootstrap`` with one sample per task: it resamples each task's runs
independently, which is that stratified bootstrap, and it is seeded by its own generator.
The default statistic, the IQM, is computed for all resamples in one trim_mean call (about
0.1 s for 17 variants x 2000 resamples); any other statistic, e.g. a learner's IQM, is
called on each (runs, tasks) resample. (``rliable.library`` draws its resamples from NumPy's
global random state whatever ``random_state`` it is given; tests/test_stats.py compares the
two.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Estimate = tuple[float, float, float]  # (point, low, high)


# ---------------------------------------------------------------------------------------
# checking scores


def as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a float64 array of shape (runs, tasks): a 1-D array is one task.
    Raises ValueError naming ``name`` for an empty, non-numeric, non-finite or 3-D input."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers (runs,) or (runs, tasks), got "
                         f"{scores!r}") from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty array of shape (runs,) or (runs, tasks), "
                         f"got shape {np.shape(scores)}")
    bad = ~np.isfinite(array)
    if bad.any():
        run, task = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be finite numbers, got {array[run, task]} at run {run}, "
                         f"task {task} (drop failed runs first: frame[frame.error.isna()])")
    return array


def _score_dict(scores: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"scores must be a non-empty dict {{name: array (runs, tasks)}}, "
                         f"got {type(scores).__name__}")
    arrays = {key: as_scores(value, f"scores[{key!r}]") for key, value in scores.items()}
    tasks = {array.shape[1] for array in arrays.values()}
    if len(tasks) > 1:
        shapes = {key: array.shape for key, array in arrays.items()}
        raise ValueError(f"every entry of scores must have the same number of tasks, got "
                         f"shapes {shapes}")
    return arrays


def _check_confidence(confidence: float) -> None:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_reps(reps: int) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")


# ---------------------------------------------------------------------------------------
# the statistics


def interquartile_mean(scores: Any) -> float:
    """IQM: the mean of the middle half of all the runs (of all the tasks).

    Sort the n = runs x tasks scores x_(1) <= ... <= x_(n), drop k = floor(n / 4) at each
    end and average the rest:  IQM = 1 / (n - 2k) * sum_{i=k+1}^{n-k} x_(i).
    This is rliable's ``aggregate_iqm``, scipy.stats.trim_mean(x, 0.25) over all entries:
    it ignores the worst and best quarter of the runs (robust to a few outlier seeds, unlike
    the mean) and uses half of them (less noisy than the median).
    """
    from scipy.stats import trim_mean

    return float(trim_mean(as_scores(scores), proportiontocut=0.25, axis=None))


def _bootstrap(array: np.ndarray, on_batch: Callable[[np.ndarray], np.ndarray], reps: int,
               confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The stratified percentile bootstrap, by scipy.stats.bootstrap: each task's column is
    a sample of its own, resampled independently (runs within tasks). ``on_batch`` maps
    resamples stacked as (B, runs, tasks) to the statistic of each, (B,) or (B, k).
    Returns the interval's (low, high), each a number or of shape (k,)."""
    from scipy.stats import bootstrap

    tasks = tuple(array[:, task] for task in range(array.shape[1]))

    def on_resamples(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        samples = np.stack(columns, axis=-1)                     # (..., runs, tasks)
        batch = samples.shape[:-2]
        values = np.asarray(on_batch(samples.reshape(-1, *samples.shape[-2:])))
        values = values.reshape(batch + values.shape[1:])
        return np.moveaxis(values, -1, 0) if values.ndim > len(batch) else values

    interval = bootstrap(tasks, on_resamples, n_resamples=reps, vectorized=True,
                         paired=False, confidence_level=confidence, method="percentile",
                         rng=np.random.default_rng(seed)).confidence_interval
    return interval.low, interval.high


def _iqm_of_each(samples: np.ndarray) -> np.ndarray:
    """interquartile_mean of each (runs, tasks) sample of a (B, runs, tasks) batch, in one
    call of trim_mean (which costs about 0.2 ms a call)."""
    from scipy.stats import trim_mean

    return trim_mean(samples.reshape(len(samples), -1), proportiontocut=0.25, axis=1)


def _each(statistic: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    if statistic is interquartile_mean:
        return _iqm_of_each
    return lambda samples: np.array([float(statistic(sample)) for sample in samples])


def stratified_bootstrap_ci(scores: Mapping[Any, Any],
                            statistic: Callable[[np.ndarray], float] = interquartile_mean,
                            reps: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> dict[Any, Estimate]:
    """{name: (point, low, high)}: the statistic (IQM by default) of each entry of
    ``scores`` ({name: array (runs,) or (runs, tasks)}) and its percentile confidence
    interval from a stratified bootstrap (rliable's ``get_interval_estimates``).

    One bootstrap sample redraws, for every task m, its N runs with replacement from that
    task's own N runs: x*_{n,m} = x_{J(n,m),m}, J uniform on 1..N. The interval is the
    ((1 - confidence) / 2, (1 + confidence) / 2) quantiles of the statistic over ``reps``
    samples. Seeded: the same call gives the same numbers. With one run per task every
    resample is the data itself, and the interval is the point.
    """
    arrays = _score_dict(scores)
    _check_reps(reps)
    _check_confidence(confidence)
    estimates = {}
    for key, array in arrays.items():
        point = float(statistic(array))
        if array.shape[0] == 1:  # nothing to resample (scipy would refuse one observation)
            estimates[key] = (point, point, point)
            continue
        low, high = _bootstrap(array, _each(statistic), reps, confidence, seed)
        estimates[key] = (point, float(low), float(high))
    return estimates


def score_distribution(scores: Any, taus: Sequence[float]) -> np.ndarray:
    """The performance profile at each threshold tau: the fraction of all runs (of all
    tasks) whose score is above tau, F(tau) = 1 / (N M) sum_{n,m} [x_{n,m} > tau]
    (rliable's ``run_score_deviation``, its default profile)."""
    return _fraction_above(as_scores(scores)[None], _taus(taus))[0]


def _fraction_above(samples: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """(B, runs, tasks) -> (B, len(taus)): each sample's share of scores above each tau."""
    return np.mean(samples.reshape(len(samples), -1, 1) > taus, axis=1)


def _taus(taus: Sequence[float]) -> np.ndarray:
    values = np.asarray(taus, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"taus must be a non-empty 1-D sequence of finite thresholds, got "
                         f"{taus!r}")
    return values


def performance_profile(scores: Mapping[Any, Any], taus: Sequence[float], reps: int = 2000,
                        confidence: float = 0.95,
                        seed: int = 0) -> dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{name: (profile, low, high)}, each of shape (len(taus),): ``score_distribution`` of
    each entry and its pointwise stratified bootstrap interval (as rliable's
    ``create_performance_profile``). A profile that lies above another's everywhere is
    better whatever threshold one cares about (stochastic dominance)."""
    arrays = _score_dict(scores)
    thresholds = _taus(taus)
    _check_reps(reps)
    _check_confidence(confidence)
    profiles = {}
    for key, array in arrays.items():
        profile = score_distribution(array, thresholds)
        if array.shape[0] == 1:
            profiles[key] = (profile, profile.copy(), profile.copy())
            continue
        low, high = _bootstrap(array, lambda samples: _fraction_above(samples, thresholds),
                               reps, confidence, seed)
        profiles[key] = (profile, np.asarray(low, dtype=np.float64),
                         np.asarray(high, dtype=np.float64))
    return profiles


def probability_of_improvement(x: Any, y: Any) -> float:
    """P(X > Y): the probability that a run of X scores above a run of Y on the same task,
    ties counting one half, averaged over tasks (rliable's
    ``metrics.probability_of_improvement``, the Mann-Whitney U statistic over N_x N_y)."""
    from rliable.metrics import probability_of_improvement as rliable_poi

    x, y = as_scores(x, "x"), as_scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of tasks, got shapes {x.shape} "
                         f"and {y.shape}")
    return float(rliable_poi(x, y))


# ---------------------------------------------------------------------------------------
# from a run_grid DataFrame to scores, and from estimates to a table


def scores_by(frame: Any, by: str | Sequence[str] = "variant", score: str = "eval_mean",
              task: str = "env_id",
              normalize: Mapping[str, tuple[float, float]] | None = None) -> dict[Any, np.ndarray]:
    """{variant: array (runs, tasks)} from a ``run_grid`` DataFrame: a row per run, its seed
    in ``seed``. Rows are the seeds (sorted), columns the tasks (sorted), so run n of every
    task is the same seed. ``by``: the column naming a variant (a list of grid keys gives
    tuples). Every variant must have the same tasks, and the same seeds on each of its
    tasks, once each; a failed run (its score NaN) is an error: drop it first.

    ``normalize``: {task: (low, high)} scores each task as (x - low) / (high - low), so
    tasks on different scales can be pooled: low = a random policy's score (0 means
    random), high = the best possible or a reference score (1 means solved; CartPole-v1:
    500).
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, score, task, "seed"] if c not in getattr(frame, "columns", ())]
    if missing:
        raise ValueError(f"frame has no column(s) {missing}; its columns are "
                         f"{list(getattr(frame, 'columns', []))}")
    if frame.empty:
        raise ValueError("frame has no rows")
    # tolist(): Python numbers and strings as keys (not numpy scalars)
    names = frame[by].tolist() if isinstance(by, str) else list(
        zip(*(frame[k].tolist() for k in keys)))
    rows = list(zip(names, frame[task].tolist(), frame["seed"].tolist(),
                    frame[score].astype(float).tolist()))
    _check_rows(rows, score)
    tasks = sorted(set(frame[task].tolist()))
    scale = _scales(tasks, normalize)
    table: dict[Any, dict[Any, dict[int, float]]] = {}
    for name, env, seed, value in rows:
        table.setdefault(name, {}).setdefault(env, {})[seed] = value
    return {name: _aligned(name, per_task, tasks, scale) for name, per_task in table.items()}


def _check_rows(rows: list[tuple], score: str) -> None:
    seen = set()
    for name, env, seed, value in rows:
        if (name, env, seed) in seen:
            raise ValueError(f"frame has two rows for variant {name!r}, task {env!r}, seed "
                             f"{seed}: one row per run (concatenated results twice?)")
        seen.add((name, env, seed))
        if not math.isfinite(value):
            raise ValueError(f"frame: variant {name!r}, task {env!r}, seed {seed} has {score} "
                             f"= {value} (a failed run? drop it: frame[frame.error.isna()])")


def _scales(tasks: list, normalize: Mapping[str, tuple[float, float]] | None) -> dict:
    if normalize is None:
        return {env: (0.0, 1.0) for env in tasks}
    absent = [env for env in tasks if env not in normalize]
    if absent:
        raise ValueError(f"normalize has no (low, high) for task(s) {absent}")
    for env in tasks:
        low, high = normalize[env]
        if not high > low:
            raise ValueError(f"normalize[{env!r}] must be (low, high) with high > low, got "
                             f"{normalize[env]!r}")
    return {env: (float(normalize[env][0]), float(normalize[env][1])) for env in tasks}


def _aligned(name: Any, per_task: dict, tasks: list, scale: dict) -> np.ndarray:
    if sorted(per_task) != tasks:
        raise ValueError(f"variant {name!r} ran on tasks {sorted(per_task)}, not on all of "
                         f"{tasks}")
    seeds = sorted(per_task[tasks[0]])
    for env in tasks:
        if sorted(per_task[env]) != seeds:
            raise ValueError(f"variant {name!r} has seeds {sorted(per_task[env])} on {env!r} "
                             f"but {seeds} on {tasks[0]!r}: every task needs the same seeds")
    return np.array([[(per_task[env][seed] - scale[env][0]) / (scale[env][1] - scale[env][0])
                      for env in tasks] for seed in seeds])


def estimates_table(estimates: Mapping[Any, Estimate], statistic: str = "iqm"):
    """A DataFrame with columns variant, iqm, ci_low, ci_high, one row per entry of
    ``stratified_bootstrap_ci``'s result, in its order (the table lesson 10 prints)."""
    import pandas as pd

    return pd.DataFrame([(name, *map(float, estimate)) for name, estimate in estimates.items()],
                        columns=["variant", statistic, "ci_low", "ci_high"])


def clearly_worse(table: Any, base: str = "base") -> list[str]:
    """The variants whose whole confidence interval lies below the base's: ci_high <
    base's ci_low (sorted). Intervals that overlap, or only touch, do not show a
    difference, whatever the point estimates say; the base is not worse than itself."""
    missing = {"variant", "ci_low", "ci_high"} - set(getattr(table, "columns", ()))
    if missing:
        raise ValueError(f"table must have the columns variant, ci_low and ci_high (as "
                         f"estimates_table gives), missing {sorted(missing)}")
    rows = table.set_index("variant")
    if rows.index.has_duplicates:
        raise ValueError(f"table has several rows for variant(s) "
                         f"{sorted(map(str, rows.index[rows.index.duplicated()]))}")
    if base not in rows.index:
        raise ValueError(f"base {base!r} is not a variant of the table: "
                         f"{list(rows.index)}")
    base_low = rows.loc[base, "ci_low"]
    return sorted(str(name) for name, high in rows["ci_high"].items() if high < base_low)
