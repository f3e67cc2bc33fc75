"""Lesson 05's exercise: the reference passes, every registered mistake is rejected."""

import pytest
import torch

from ppo_lib import grading
from ppo_lib.exercises import lesson05  # noqa: F401  (registers ppo_loss)
from ppo_lib.losses import ppo_loss

EXERCISE = grading.EXERCISES["ppo_loss"]


def test_reference_passes():
    assert EXERCISE.lesson == "05"
    assert grading.check("ppo_loss", EXERCISE.reference)


@pytest.mark.parametrize("mistake", EXERCISE.mistakes(), ids=lambda m: m.description)
def test_mistake_rejected(mistake):
    assert not grading.check("ppo_loss", mistake.answer)


def test_unfinished_stub_fails_with_message(capsys):
    def stub(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
             ent_coef=0.0, old_values=None, clip_range_vf=None):
        raise NotImplementedError()
    assert not grading.check("ppo_loss", stub)
    assert "not done yet" in capsys.readouterr().out


def test_hint_names_the_entropy_sign(capsys):
    wrong = next(m.answer for m in EXERCISE.mistakes() if "wrong sign" in m.description)
    assert not grading.check("ppo_loss", wrong)
    assert "bonus" in capsys.readouterr().out


def test_a_loss_written_from_the_equation_passes():
    def mine(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
             ent_coef=0.0, old_values=None, clip_range_vf=None):
        surrogate = torch.min(ratio * advantages,
                              ratio.clamp(1 - clip_range, 1 + clip_range) * advantages)
        if clip_range_vf is not None:
            values = old_values + (values - old_values).clamp(-clip_range_vf, clip_range_vf)
        return (-surrogate.mean() + vf_coef * (returns - values).pow(2).mean()
                - ent_coef * entropy.mean())
    assert grading.check("ppo_loss", mine)


def test_cases_separate_the_three_terms():
    # each coefficient changes the reference's value on the graded batch, so a term left
    # out cannot pass by accident
    b = lesson05._batch(0)
    base = ppo_loss(**b, clip_range=0.2, vf_coef=0.0, ent_coef=0.0)
    assert ppo_loss(**b, clip_range=0.2, vf_coef=0.5, ent_coef=0.0) != base
    assert ppo_loss(**b, clip_range=0.2, vf_coef=0.0, ent_coef=0.5) != base
    assert ppo_loss(**b, clip_range=0.1, vf_coef=0.0, ent_coef=0.0) != base
