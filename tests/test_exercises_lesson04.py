"""Lesson 04's own exercise: the reference passes, every registered mistake is rejected."""

import pytest

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson04  # noqa: F401  (registers bootstrap_truncated)

EXERCISE = grading.EXERCISES["bootstrap_truncated"]


def test_reference_passes():
    assert EXERCISE.lesson == "04"
    assert grading.check("bootstrap_truncated", EXERCISE.reference)


@pytest.mark.parametrize("mistake", EXERCISE.mistakes(), ids=lambda m: m.description)
def test_mistake_rejected(mistake):
    assert not grading.check("bootstrap_truncated", mistake.answer)


def test_unfinished_stub_fails_with_message(capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError()
    assert not grading.check("bootstrap_truncated", stub)
    assert "not done yet" in capsys.readouterr().out


def test_reference_does_not_modify_rewards():
    import torch
    rewards = torch.ones(3)
    out = lesson04.bootstrap_truncated(rewards, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]),
                                       torch.full((3,), 10.0), 0.9)
    assert torch.equal(rewards, torch.ones(3)) and out[-1] == 10.0


def test_both_flags_hint(capsys):
    wrong = next(m.answer for m in EXERCISE.mistakes() if "both flags" in m.description)
    assert not grading.check("bootstrap_truncated", wrong)
    assert "AND NOT terminated" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", EXERCISE.mistakes(), ids=lambda m: m.description)
def test_mistake_gets_its_own_hint(mistake):
    v = grading.check("bootstrap_truncated", mistake.answer).verdict
    assert not v.passed and mistake.hint.lower() in (v.message + " " + v.hint).lower(), v.text()


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
