"""Lesson 07's exercises: the reference passes, every registered mistake is rejected."""

import pytest

from ppo_lib import grading
from ppo_lib.exercises import lesson07

IDS = ["diagnose_runs", "should_stop_early"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    exercise = grading.EXERCISES[exercise_id]
    assert exercise.lesson == "07"
    assert grading.check(exercise_id, exercise.reference)


@pytest.mark.parametrize("exercise_id,mistake", [
    (ex_id, m) for ex_id in IDS for m in grading.EXERCISES[ex_id].mistakes()],
    ids=lambda v: getattr(v, "description", v))
def test_mistake_rejected(exercise_id, mistake):
    assert not grading.check(exercise_id, mistake.answer)


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


def test_should_stop_early_matches_sb3_rule():
    stop = lesson07.should_stop_early
    assert stop(0.031, 0.02) and not stop(0.03, 0.02) and not stop(1.0, None)
