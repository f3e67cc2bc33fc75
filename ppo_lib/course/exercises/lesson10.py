"""Lesson 10 exercises: the interquartile mean (rliable's IQM) and reading a results table of
confidence intervals (which variants are clearly worse than the base)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from ...stats import clearly_worse, interquartile_mean
from ..grading import Case, Exercise, register
from .cases import Known, graded_case, mistakes_of

# ---------------------------------------------------------------------------------------
# interquartile_mean (kind "function"), graded against ppo_lib.stats.interquartile_mean


def _flat(scores: Any) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64).ravel()


def _trimmed(scores: Any, drop: int, top_only: bool = False, sort: bool = True) -> float:
    x = _flat(scores)
    x = np.sort(x) if sort else x
    return float(x[:len(x) - drop].mean() if top_only else x[drop:len(x) - drop].mean())


def _trim_share(scores: Any, share: float) -> float:
    return _trimmed(scores, int(share * len(_flat(scores))))


def _per_task(scores: Any) -> float:
    x = np.asarray(scores, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    return float(np.mean([_trimmed(x[:, m], len(x) // 4) for m in range(x.shape[1])]))


def _percentile_mask(scores: Any) -> float:
    x = _flat(scores)
    q25, q75 = np.percentile(x, [25, 75])
    return float(x[(x >= q25) & (x <= q75)].mean())


def _quartiles_mean(scores: Any) -> float:
    return float(np.mean(np.percentile(_flat(scores), [25, 75])))


IQM_KNOWN = [
    Known("plain mean", lambda scores: float(np.mean(_flat(scores))), "plain mean",
          "you take the plain mean: the IQM first drops the lowest and the highest quarter of "
          "the runs"),
    Known("median", lambda scores: float(np.median(_flat(scores))), "median",
          "you take the median: the IQM averages the middle half of the runs"),
    Known("trim 10%", lambda scores: _trim_share(scores, 0.10), "10%",
          "you trim 10% at each end: the IQM trims 25%, floor(n / 4) runs at each end"),
    Known("trim 20%", lambda scores: _trim_share(scores, 0.20), "20%",
          "you trim 20% at each end: the IQM trims 25%, floor(n / 4) runs at each end"),
    Known("percentile mask", _percentile_mask, "percentiles",
          "you keep the runs between the percentiles, (x >= q25) & (x <= q75): that keeps a "
          "different number of runs when n is not a multiple of 4; the IQM drops floor(n / 4) "
          "runs at each end of the sorted scores, as scipy.stats.trim_mean(x, 0.25) does"),
    Known("drop only at the top", lambda scores: _trimmed(scores, len(_flat(scores)) // 4,
                                                          top_only=True),
          "only at the top", "you drop runs only at the top: drop floor(n / 4) at both ends"),
    Known("mean of the two quartiles", _quartiles_mean, "two quartiles",
          "you average the two quartiles, (q25 + q75) / 2: average the runs between them"),
    Known("round(n / 4) dropped", lambda scores: _trimmed(scores, round(len(_flat(scores)) / 4)),
          "round(n / 4)", "you drop round(n / 4) runs at each end: it is floor(n / 4)"),
    Known("ceil(n / 4) dropped", lambda scores: _trimmed(scores,
                                                         math.ceil(len(_flat(scores)) / 4)),
          "ceil(n / 4)", "you drop ceil(n / 4) runs at each end: it is floor(n / 4)"),
    Known("slice without sorting", lambda scores: _trimmed(scores, len(_flat(scores)) // 4,
                                                           sort=False),
          "without sorting", "you slice without sorting: sort the scores first"),
    Known("ties removed", lambda scores: _trimmed(sorted(set(_flat(scores).tolist())),
                                                  len(set(_flat(scores).tolist())) // 4),
          "tied", "you remove tied scores (set or np.unique): every run counts, ties too"),
    Known("IQM per task, then averaged", _per_task, "each task's IQM",
          "you average each task's IQM: the IQM pools the runs of all tasks and trims them "
          "together"),
]

HINT_POOLED = ("the IQM of a (runs, tasks) array pools all its entries into one number "
               "(scipy.stats.trim_mean(x, 0.25, axis=None)); it is not computed per task")


def _iqm_cases() -> list[Case]:
    ref, known = interquartile_mean, IQM_KNOWN
    rng = np.random.default_rng(10)
    return [
        graded_case("8 runs, sorted", ref, ([0.0, 1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0],),
                    known=known, hint="sort, drop floor(8 / 4) = 2 runs at each end, average "
                                      "the 4 left: (2 + 3 + 10 + 20) / 4"),
        graded_case("ties", ref, ([0.0, 0.0, 10.0, 0.0, 20.0, 0.0, 10.0, 0.0],), known=known,
                    hint="ties count as runs: sort the 8 scores, drop 2 at each end whatever "
                         "their values, average the 4 left"),
        graded_case("10 runs, unsorted", ref,
                    ([20.0, 0.0, 50.0, 3.0, 10.0, 2.0, 40.0, 1.0, 30.0, 4.0],), known=known,
                    hint="sort first, then drop floor(10 / 4) = 2 runs at each end and average "
                         "the 6 left"),
        graded_case("7 runs", ref, ([6.0, 1.0, 40.0, 2.0, 5.0, 3.0, 7.0],), known=known,
                    hint="floor(7 / 4) = 1: drop one run at each end, average the 5 left"),
        graded_case("4 runs", ref, ([10.0, 1.0, 0.0, 2.0],), known=known,
                    hint="floor(4 / 4) = 1: drop the lowest and the highest, average the 2 "
                         "left"),
        graded_case("5 runs", ref, ([5.0, 1.0, 4.0, 2.0, 30.0],), known=known,
                    hint="floor(5 / 4) = 1: drop one at each end, average the 3 left"),
        graded_case("3 runs: nothing dropped", ref, ([1.0, 2.0, 9.0],), known=known,
                    hint="floor(3 / 4) = 0: with 3 runs the IQM is the mean of all of them"),
        graded_case("one run", ref, ([7.0],), known=known,
                    hint="one run (a batch of one): nothing is dropped, the IQM is that score"),
        graded_case("(runs, tasks) = (4, 2)", ref,
                    (np.array([[0.0, 10.0], [0.0, 1.0], [0.0, 3.0], [0.0, 2.0]]),), known=known,
                    hint=HINT_POOLED),
        graded_case("a numpy array of 10 runs", ref, (rng.normal(size=10),), known=known,
                    hint="scores may be a numpy array (of eval_mean over seeds)"),
        graded_case("(runs, tasks) = (10, 3)", ref, (rng.normal(size=(10, 3)),), known=known,
                    hint=HINT_POOLED),
        graded_case("(runs, tasks) as lists", ref,
                    ([[3.0, 100.0], [1.0, 300.0], [2.0, 200.0]],), known=known,
                    hint=HINT_POOLED + "; scores may come as a list of lists"),
    ]


register(Exercise(
    id="interquartile_mean", lesson="10",
    title="The interquartile mean (IQM): the mean of the middle half of the runs",
    cases=_iqm_cases, reference=interquartile_mean, mistakes=lambda: mistakes_of(IQM_KNOWN)))


# ---------------------------------------------------------------------------------------
# clearly_worse (kind "function"): reading a table of IQMs and their confidence intervals,
# graded against ppo_lib.stats.clearly_worse. The answer is a set or a list of names.


def _table(rows: list[tuple[str, float, float, float]]):
    import pandas as pd

    return pd.DataFrame(rows, columns=["variant", "iqm", "ci_low", "ci_high"])


def _interval(row: Any) -> str:
    return f"[{row.ci_low:g}, {row.ci_high:g}]"


def _names(answer: Any) -> tuple[set[str] | None, str | None]:
    """The answer as a set of names, or a message saying why it is not one."""
    import pandas as pd

    if answer is None:
        return None, "your function returned None: did you forget `return`?"
    if isinstance(answer, pd.DataFrame):
        return None, ("you return the rows (a DataFrame): return the variants' names, e.g. "
                      "set(rows['variant'])")
    if isinstance(answer, (str, bytes, dict)) or not hasattr(answer, "__iter__"):
        return None, (f"expected a set (or list) of variant names, got "
                      f"{type(answer).__name__} {answer!r}")
    return {str(name) for name in answer}, None


def _difference(table: Any, base: str, got: set[str], want: set[str]) -> str:
    rows = {str(row.variant): row for row in table.itertuples()}
    b = rows[base]
    if base in got:
        return (f"you included the base {base!r}: a variant is not clearly worse than "
                f"itself")
    for name in sorted(got - want):
        if name not in rows:
            return f"{name!r} is not a variant of this table: {sorted(rows)}"
        row = rows[name]
        if row.ci_low > b.ci_high:
            return (f"{name!r} is clearly better, not worse: its interval {_interval(row)} "
                    f"lies above the base's {_interval(b)}")
        if row.ci_high == b.ci_low:
            return (f"{name!r} only touches the base's interval (its ci_high = the base's "
                    f"ci_low = {b.ci_low:g}): clearly worse needs ci_high < the base's ci_low")
        return (f"{name!r} is not clearly worse: its interval {_interval(row)} overlaps the "
                f"base's {_interval(b)}, so the data cannot tell them apart")
    name = sorted(want - got)[0]
    return (f"{name!r} is clearly worse and missing: its whole interval "
            f"{_interval(rows[name])} lies below the base's {_interval(b)} (ci_high < the "
            f"base's ci_low)")


def _verify_clearly_worse(table: Any, base: str, known: list[Known], got: Any) -> str | None:
    names, problem = _names(got)
    if problem:
        return problem
    want = set(clearly_worse(table.copy(), base))
    if names == want:
        return None
    message = _difference(table, base, names, want)
    matches = []
    for k in known:
        try:
            theirs, _ = _names(k.answer(table.copy(), base))
        except Exception:
            continue
        if k.says is not None and theirs == names and k.says not in matches:
            matches.append(k.says)
    if matches:
        message += " (this is what you get if " + "; or if ".join(matches) + ")"
    return message


def _base_row(table: Any, base: str) -> Any:
    return table[table["variant"] == base].iloc[0]


def _worse_by(rule) -> Any:
    """A wrong answer: the variants (not the base) for which rule(row, base_row) holds."""
    def answer(table, base="base"):
        b = _base_row(table, base)
        return sorted(row.variant for row in table.itertuples()
                      if row.variant != base and rule(row, b))
    return answer


CLEARLY_WORSE_KNOWN = [
    Known("compares the point estimates", _worse_by(lambda r, b: r.iqm < b.iqm),
          "point estimates", "you compare the point estimates (iqm < the base's iqm): with a "
          "few seeds a lower IQM can be noise; compare the intervals"),
    Known("compares with the base's point estimate",
          _worse_by(lambda r, b: r.ci_high < b.iqm), "base's point estimate",
          "you compare with the base's point estimate (ci_high < the base's iqm): the base's "
          "IQM is uncertain too, compare with its interval's low end"),
    Known("overlapping intervals taken as different",
          _worse_by(lambda r, b: r.ci_low < b.ci_low), "lower ends",
          "you compare the lower ends (ci_low < the base's ci_low): intervals that overlap do "
          "not show a difference"),
    Known("touching intervals taken as different",
          _worse_by(lambda r, b: r.ci_high <= b.ci_low), "touching",
          "you count touching intervals (ci_high <= the base's ci_low) as different"),
    Known("better variants included",
          _worse_by(lambda r, b: r.ci_high < b.ci_low or r.ci_low > b.ci_high),
          "better ones too", "you take every variant whose interval is apart from the "
          "base's, better ones too"),
    Known("the base included", lambda table, base="base": sorted(
        row.variant for row in table.itertuples()
        if row.ci_high <= _base_row(table, base).ci_high
        and row.ci_low <= _base_row(table, base).ci_low), "than itself", None),
    Known("base fixed to 'base'", lambda table, base="base": clearly_worse(table, "base"),
          "base argument", None),
    Known("returns the rows", lambda table, base="base": table[
        table["ci_high"] < _base_row(table, base).ci_low], "names", None),
]

TABLE_MISLEADING = [  # three seeds: the IQMs alone would call three variants worse
    ("base", 300.0, 250.0, 350.0), ("lr_high", 150.0, 100.0, 200.0),
    ("small_batch", 240.0, 210.0, 280.0), ("no_adv_norm", 260.0, 120.0, 380.0),
    ("skewed", 310.0, 200.0, 330.0), ("ent_bonus", 420.0, 360.0, 480.0),
]


def _clearly_worse_case(name: str, rows: list, base: str, hint: str) -> Case:
    table = _table(rows)
    return Case(name, args=(table, base), hint=hint,
                verify=partial(_verify_clearly_worse, table, base, CLEARLY_WORSE_KNOWN))


def _clearly_worse_cases() -> list[Case]:
    return [
        _clearly_worse_case(
            "a 3-seed table whose IQMs mislead", TABLE_MISLEADING, "base",
            "a variant is clearly worse when its whole interval lies below the base's: "
            "ci_high < the base's ci_low"),
        _clearly_worse_case(
            "one variant and the base: clearly worse",
            [("no_norm", 0.4, 0.3, 0.5), ("base", 0.9, 0.85, 0.95)], "base",
            "the base's row need not come first: find it by its name"),
        _clearly_worse_case(
            "one variant and the base: not clearly worse",
            [("base", 0.9, 0.8, 0.95), ("no_clip", 0.75, 0.5, 0.85)], "base",
            "the intervals overlap: nothing is clearly worse (return an empty set or list)"),
        _clearly_worse_case(
            "touching intervals", [("base", 300.0, 200.0, 400.0), ("touch", 150.0, 100.0, 200.0),
                                   ("below", 150.0, 100.0, 199.5)], "base",
            "an interval whose ci_high equals the base's ci_low only touches it: not clearly "
            "worse (ci_high < the base's ci_low, strictly)"),
        _clearly_worse_case(
            "the base has another name",
            [("lr_low", 0.2, 0.1, 0.3), ("defaults", 0.8, 0.7, 0.9),
             ("no_gae", 0.5, 0.35, 0.72), ("orthogonal_init", 0.81, 0.74, 0.88)], "defaults",
            "use the base argument: here the base is called 'defaults'"),
    ]


register(Exercise(
    id="clearly_worse", lesson="10",
    title="Read a results table: which variants are clearly worse than the base?",
    cases=_clearly_worse_cases, reference=clearly_worse,
    mistakes=lambda: mistakes_of(CLEARLY_WORSE_KNOWN)))
