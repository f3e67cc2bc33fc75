"""Lesson 04's own exercise: the reference passes, every registered mistake is rejected."""

import pytest

from ppo_lib import grading
from ppo_lib.exercises import lesson04  # noqa: F401  (registers bootstrap_truncated)

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
