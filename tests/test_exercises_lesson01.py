"""Lesson 01's exercises: right answers written other ways pass, and the hints name the
mistake (tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import pytest
import torch

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson01  # noqa: F401  (registers the exercises)

IDS = ["policy_gradient_loss", "baseline_advantages"]


def test_the_exercises_belong_to_lesson_01():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"01"}


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


def test_more_right_answers_pass():
    def loss_float64(log_probs, advantages):
        return -(log_probs.double() * advantages.detach().double()).mean().float()

    def loss_sum_over_numel(log_probs, advantages):
        return -(log_probs * advantages.detach()).sum() / log_probs.numel()

    def loss_with_torch_no_grad_copy(log_probs, advantages):
        with torch.no_grad():
            weights = advantages.clone()
        return -torch.mean(weights * log_probs)

    for fn in (loss_float64, loss_sum_over_numel, loss_with_torch_no_grad_copy):
        assert grading.check("policy_gradient_loss", fn)

    def advantages_sb3_guard(returns, values, normalize=True):
        a = returns - values.detach()
        if normalize and len(a) > 1:
            a = (a - a.mean()) / (a.std() + 1e-8)
        return a

    def advantages_biased_std_no_guard(returns, values, normalize=True):
        a = (returns - values).detach()
        if normalize:   # a batch of one becomes 0 / 1e-8 = 0: finite, accepted
            a = (a - a.mean()) / (a.std(unbiased=False) + 1e-8)
        return a

    for fn in (advantages_sb3_guard, advantages_biased_std_no_guard):
        assert grading.check("baseline_advantages", fn)


def test_leaf_only_answers_are_rejected(capsys):
    def flag_off(log_probs, advantages):
        advantages.requires_grad_(False)
        return -(log_probs * advantages).mean()
    assert not grading.check("policy_gradient_loss", flag_off)
    assert "requires_grad_(False)" in capsys.readouterr().out

    def unguarded(returns, values, normalize=True):
        a = returns - values.detach()
        if normalize:
            a = (a - a.mean()) / (a.std() + 1e-8)
        return a
    assert not grading.check("baseline_advantages", unguarded)
    assert "batch of one" in capsys.readouterr().out
