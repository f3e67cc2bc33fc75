"""Lesson 10's exercises: right answers written other ways pass, and what the cases catch
(tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import statistics

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from ppo_lib import stats
from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson10

IDS = ["interquartile_mean", "clearly_worse"]


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(grading, "RESULTS", {})
    monkeypatch.delenv(grading.NBGRADER_ENV, raising=False)


def test_the_exercises_belong_to_lesson_10():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"10"}


def test_references_are_the_library_functions():
    assert grading.EXERCISES["interquartile_mean"].reference is stats.interquartile_mean
    assert grading.EXERCISES["clearly_worse"].reference is stats.clearly_worse


def stub(*args):
    # YOUR CODE HERE
    raise NotImplementedError()


@pytest.mark.parametrize("exercise_id", IDS)
def test_unfinished_stub_is_not_done_yet(exercise_id, capsys):
    assert not grading.check(exercise_id, stub)
    assert f"✗ {exercise_id}: not done yet" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# interquartile_mean written other ways


def solution_10(scores):
    """The body of solutions/10_what_matters.ipynb."""
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    k = len(x) // 4
    return x[k:len(x) - k].mean()


def with_scipy(scores):
    return scipy.stats.trim_mean(scores, 0.25, axis=None)


def with_sorted_and_statistics(scores):
    flat = sorted(np.ravel(scores).tolist())
    k = len(flat) // 4
    return statistics.mean(flat[k:len(flat) - k])


def with_torch(scores):
    x = torch.as_tensor(np.asarray(scores, dtype=np.float64)).flatten().sort().values
    k = x.numel() // 4
    return x[k:x.numel() - k].mean()


def with_a_loop(scores):
    flat = sorted(float(v) for v in np.ravel(scores))
    n, total, count = len(flat), 0.0, 0
    for i, value in enumerate(flat):
        if n // 4 <= i < n - n // 4:
            total, count = total + value, count + 1
    return total / count


def with_pandas(scores):
    s = pd.Series(np.ravel(scores)).sort_values().reset_index(drop=True)
    k = len(s) // 4
    return s.iloc[k:len(s) - k].mean()


@pytest.mark.parametrize("answer", [solution_10, with_scipy, with_sorted_and_statistics,
                                    with_torch, with_a_loop, with_pandas],
                         ids=lambda f: f.__name__)
def test_right_interquartile_means_pass(answer, capsys):
    assert grading.check("interquartile_mean", answer), capsys.readouterr().out


def test_sorting_the_callers_list_in_place_is_caught(capsys):
    def sorts_in_place(scores):
        scores.sort()
        k = len(scores) // 4
        return float(np.mean(scores[k:len(scores) - k]))
    result = grading.check("interquartile_mean", sorts_in_place)
    assert not result and "changed its inputs in place" in result.verdict.message


def test_one_iqm_per_task_is_named(capsys):
    result = grading.check("interquartile_mean",
                           lambda scores: scipy.stats.trim_mean(scores, 0.25, axis=0)
                           if np.ndim(scores) == 2 else scipy.stats.trim_mean(scores, 0.25))
    assert not result
    assert "not computed per task" in result.verdict.hint


def test_cases_cover_the_shapes_the_lesson_uses():
    shapes = {np.shape(case.args[0]) for case in grading.EXERCISES["interquartile_mean"].cases()}
    assert {(1,), (3,), (4,), (5,), (7,), (8,), (10,)} <= shapes
    assert {(4, 2), (10, 3), (3, 2)} <= shapes
    kinds = {type(case.args[0]) for case in grading.EXERCISES["interquartile_mean"].cases()}
    assert kinds == {list, np.ndarray}


# ---------------------------------------------------------------------------------------
# clearly_worse written other ways, and what its verdicts say


def solution_10_worse(table, base="base"):
    """The body of solutions/10_what_matters.ipynb."""
    base_low = table.loc[table["variant"] == base, "ci_low"].item()
    return set(table.loc[table["ci_high"] < base_low, "variant"])


def with_index(table, base="base"):
    rows = table.set_index("variant")
    return sorted(rows.index[rows.ci_high < rows.loc[base, "ci_low"]])


def with_iterrows(table, base="base"):
    base_low = next(row["ci_low"] for _, row in table.iterrows() if row["variant"] == base)
    return [row["variant"] for _, row in table.iterrows() if row["ci_high"] < base_low]


def with_query(table, base="base"):
    base_low = table.query("variant == @base")["ci_low"].iloc[0]
    return table.query("ci_high < @base_low")["variant"]             # a Series of names


def as_numpy_array(table, base="base"):
    low = table["ci_low"].to_numpy()[table["variant"].to_numpy() == base][0]
    return table["variant"].to_numpy()[table["ci_high"].to_numpy() < low]


def as_tuple(table, base="base"):
    return tuple(solution_10_worse(table, base))


@pytest.mark.parametrize("answer", [solution_10_worse, with_index, with_iterrows, with_query,
                                    as_numpy_array, as_tuple], ids=lambda f: f.__name__)
def test_right_clearly_worse_pass(answer, capsys):
    assert grading.check("clearly_worse", answer), capsys.readouterr().out


def test_the_library_answer_is_a_sorted_list():
    """A sorted list prints the same in every run (a set of strings does not: hash seeds)."""
    table = lesson10._table(lesson10.TABLE_MISLEADING)
    assert stats.clearly_worse(table, "base") == ["lr_high"]


def test_the_misleading_table_misleads():
    """Three variants have a lower IQM than the base; one of them is clearly worse."""
    table = lesson10._table(lesson10.TABLE_MISLEADING)
    base_iqm = table.set_index("variant").loc["base", "iqm"]
    assert sorted(table.variant[table.iqm < base_iqm]) == ["lr_high", "no_adv_norm",
                                                            "small_batch"]


@pytest.mark.parametrize("answer,words", [
    (lambda table, base="base": "lr_high", "expected a set (or list) of variant names"),
    (lambda table, base="base": ["lr_high", "nope"], "'nope' is not a variant"),
    (lambda table, base="base": [], "'lr_high' is clearly worse and missing"),
])
def test_clearly_worse_messages(answer, words, capsys):
    result = grading.check("clearly_worse", answer)
    assert not result and words in result.verdict.message


def test_a_learner_changing_the_table_does_not_change_the_next_cases(capsys):
    def renames(table, base="base"):
        table["variant"] = "x"          # the learner's copy only
        return []
    result = grading.check("clearly_worse", renames)
    assert not result and "changed its inputs in place" in result.verdict.message
    assert grading.check("clearly_worse", stats.clearly_worse), "the cases are intact after"
