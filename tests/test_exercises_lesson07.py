"""Lesson 07's exercises: other right answers pass, and what the cases catch
(tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import numpy as np
import pytest
import torch

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson07

IDS = ["diagnose_runs", "should_stop_early", "adaptive_kl_coefficient"]


def test_the_exercises_belong_to_lesson_07():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"07"}


def stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("exercise_id", IDS)
def test_unfinished_stub_fails_with_message(exercise_id, capsys):
    assert not grading.check(exercise_id, stub)
    assert "not done yet" in capsys.readouterr().out


def test_hint_names_the_metric(capsys):
    wrong = dict(lesson07.DIAGNOSE_RUNS_ANSWER, B="healthy")
    assert not grading.check("diagnose_runs", lambda: wrong)
    assert "explained_variance" in capsys.readouterr().out


def test_diagnose_runs_labels_come_from_the_list():
    assert set(lesson07.DIAGNOSE_RUNS_ANSWER.values()) <= set(lesson07.PROBLEMS)
    assert len(set(lesson07.DIAGNOSE_RUNS_ANSWER.values())) == 3


def test_diagnose_runs_accepts_case_and_spacing():
    def mine():  # the notebook's solution, typed with other capitals and spaces
        return {"A": "Updates too timid", "B": " critic  broken", "C": "learning rate too HIGH"}
    assert grading.check("diagnose_runs", mine)


def test_should_stop_early_matches_sb3_rule():
    stop = lesson07.should_stop_early
    assert stop(0.031, 0.02) and not stop(0.03, 0.02) and not stop(1.0, None)


def solution_07(approx_kl, target_kl):
    """The body of solutions/07_diagnostics_and_tuning.ipynb."""
    if target_kl is None:
        return False
    return bool(approx_kl > 1.5 * target_kl)


def one_liner(kl, target):
    return target is not None and kl > 1.5 * target


def as_tensor(kl, target):
    if target is None:
        return torch.tensor(False)
    return torch.as_tensor(kl) > 1.5 * target


def with_numpy(approx_kl, target_kl):
    return False if target_kl is None else np.float64(float(approx_kl)) > 1.5 * target_kl


@pytest.mark.parametrize("answer", [solution_07, one_liner, as_tensor, with_numpy],
                         ids=lambda f: f.__name__)
def test_right_should_stop_early_pass(answer, capsys):
    assert grading.check("should_stop_early", answer), capsys.readouterr().out


def solution_07_beta(beta, kl, target_kl):
    """The body of solutions/07_diagnostics_and_tuning.ipynb."""
    if kl < target_kl / 1.5:
        return beta / 2
    if kl > target_kl * 1.5:
        return beta * 2
    return beta


def multiplied_out(beta, kl, target_kl):  # 1.5 * kl < target_kl: same on the exact bounds
    kl = float(kl)
    return beta * 0.5 if 1.5 * kl < target_kl else beta * 2.0 if kl > 1.5 * target_kl else beta


def with_a_factor(beta, kl, target_kl):
    factor = 1.0
    if float(kl) > 1.5 * target_kl:
        factor = 2.0
    elif float(kl) < target_kl / 1.5:
        factor = 0.5
    return float(beta * factor)


def with_tensor_kl(beta, kl, target_kl):
    kl = torch.as_tensor(kl, dtype=torch.float64)
    return beta / 2 if (kl < target_kl / 1.5).item() else (
        beta * 2 if (kl > target_kl * 1.5).item() else beta)


@pytest.mark.parametrize("answer", [solution_07_beta, multiplied_out, with_a_factor,
                                    with_tensor_kl], ids=lambda f: f.__name__)
def test_right_adaptive_kl_coefficient_pass(answer, capsys):
    assert grading.check("adaptive_kl_coefficient", answer), capsys.readouterr().out


def test_adaptive_kl_coefficient_reference_is_the_library_function():
    from ppo_lib.kl import adaptive_kl_coefficient
    assert grading.EXERCISES["adaptive_kl_coefficient"].reference is adaptive_kl_coefficient
