"""Lesson 08's exercises: the reference passes, every registered mistake is rejected."""

import pytest

from ppo_lib import grading
from ppo_lib.exercises import lesson08  # noqa: F401  (registers the exercises)
from ppo_lib.sb3_compat import FIXES, read_sb3_log, to_sb3_kwargs

IDS = ["to_sb3_kwargs", "read_sb3_log"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    exercise = grading.EXERCISES[exercise_id]
    assert exercise.lesson == "08"
    assert grading.check(exercise_id, exercise.reference)


@pytest.mark.parametrize("exercise_id,mistake", [
    (ex_id, m) for ex_id in IDS for m in grading.EXERCISES[ex_id].mistakes()],
    ids=lambda v: getattr(v, "description", v))
def test_mistake_rejected(exercise_id, mistake):
    assert not grading.check(exercise_id, mistake.answer)


def test_references_are_the_library_functions():
    assert grading.EXERCISES["to_sb3_kwargs"].reference is to_sb3_kwargs
    assert grading.EXERCISES["read_sb3_log"].reference is read_sb3_log


def test_every_fix_is_expected_by_some_case():
    cases = grading.EXERCISES["read_sb3_log"].cases()
    assert {case.expected for case in cases} == set(FIXES)


def test_hint_shown_for_n_envs(capsys):
    assert not grading.check("to_sb3_kwargs", lambda config: dict(config))
    assert "make_vec_env" in capsys.readouterr().out
