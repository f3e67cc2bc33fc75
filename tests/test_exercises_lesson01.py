"""Lesson 01's exercises: each reference passes, every registered mistake is rejected, and
the hints name the mistake."""

import pytest
import torch

from ppo_lib import grading
from ppo_lib.exercises import lesson01  # noqa: F401  (registers the exercises)

IDS = ["policy_gradient_loss", "baseline_advantages"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    exercise = grading.EXERCISES[exercise_id]
    assert exercise.lesson == "01"
    assert grading.check(exercise_id, exercise.reference)


@pytest.mark.parametrize("exercise_id, mistake", [
    (eid, m) for eid in IDS for m in grading.EXERCISES[eid].mistakes()],
    ids=lambda x: x if isinstance(x, str) else x.description)
def test_mistake_rejected(exercise_id, mistake):
    assert not grading.check(exercise_id, mistake.answer)


def mistake(exercise_id, description):
    return next(m.answer for m in grading.EXERCISES[exercise_id].mistakes()
                if m.description == description)


@pytest.mark.parametrize("description, words", [
    ("missing minus sign", "minus sign"),
    ("sum instead of mean", "mean"),
    ("probabilities instead of log-probabilities", "log-probabilities"),
    ("advantages not detached", "detach"),
])
def test_pg_messages_name_the_mistake(capsys, description, words):
    assert not grading.check("policy_gradient_loss", mistake("policy_gradient_loss", description))
    assert words in capsys.readouterr().out


@pytest.mark.parametrize("description, words", [
    ("V - G instead of G - V", "G_t - V(s_t)"),
    ("values not detached", "detach"),
    ("no epsilon: division by a zero std", "1e-8"),
])
def test_baseline_messages_name_the_mistake(capsys, description, words):
    assert not grading.check("baseline_advantages", mistake("baseline_advantages", description))
    assert words in capsys.readouterr().out


def test_answers_written_from_the_equations_pass():
    def my_loss(log_probs, advantages):
        return -torch.mean(log_probs * advantages.detach())

    def my_advantages(returns, values, normalize=True):
        a = returns - values.detach()
        if normalize:
            a = (a - a.mean()) / (a.std(unbiased=False) + 1e-8)   # biased std accepted
        return a

    assert grading.check("policy_gradient_loss", my_loss)
    assert grading.check("baseline_advantages", my_advantages)


def test_stub_fails_with_message(capsys):
    def stub(log_probs, advantages):
        raise NotImplementedError()
    assert not grading.check("policy_gradient_loss", stub)
    assert "not done yet" in capsys.readouterr().out
