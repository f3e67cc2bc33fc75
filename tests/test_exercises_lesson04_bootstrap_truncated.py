"""Lesson 04's bootstrap_truncated (ppo_lib/course/exercises/lesson04_bootstrap_truncated.py):
what its cases catch beyond what tests/test_exercises_all.py proves for every exercise."""

import pytest

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson04_bootstrap_truncated

EXERCISE = grading.EXERCISES["bootstrap_truncated"]


def test_the_exercise_belongs_to_lesson_04():
    assert EXERCISE.lesson == "04"


def test_reference_does_not_modify_rewards():
    import torch
    rewards = torch.ones(3)
    out = lesson04_bootstrap_truncated.bootstrap_truncated(rewards, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]),
                                       torch.full((3,), 10.0), 0.9)
    assert torch.equal(rewards, torch.ones(3)) and out[-1] == 10.0


def test_both_flags_hint(capsys):
    wrong = next(m.answer for m in EXERCISE.mistakes() if "both flags" in m.description)
    assert not grading.check("bootstrap_truncated", wrong)
    assert "AND NOT terminated" in capsys.readouterr().out


def test_more_right_answers_pass():
    import torch

    def solution_notebook(rewards, terminated, truncated, final_values, gamma):
        time_limit = truncated.bool() & ~terminated.bool()
        return rewards + gamma * final_values * time_limit.to(rewards.dtype)

    def with_where(rewards, terminated, truncated, final_values, gamma):
        bootstrap = torch.logical_and(truncated.bool(), torch.logical_not(terminated.bool()))
        return torch.where(bootstrap, rewards + gamma * final_values, rewards)

    def float_flags(rewards, terminated, truncated, final_values, gamma):
        return rewards + gamma * final_values * truncated.float() * (1 - terminated.float())

    def clone_then_add(rewards, terminated, truncated, final_values, gamma):
        out = rewards.clone()
        mask = truncated.bool() & ~terminated.bool()
        out[mask] += gamma * final_values[mask]
        return out

    for fn in (solution_notebook, with_where, float_flags, clone_then_add):
        assert grading.check("bootstrap_truncated", fn)
