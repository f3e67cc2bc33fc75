"""Lesson 06's exercises: the references pass, every registered mistake is rejected."""

import math

import pytest
import torch

from ppo_lib import grading
from ppo_lib.exercises import lesson06  # noqa: F401  (registers the Gaussian exercises)

IDS = ["gaussian_log_prob", "gaussian_entropy"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    exercise = grading.EXERCISES[exercise_id]
    assert exercise.lesson == "06"
    assert grading.check(exercise_id, exercise.reference)


@pytest.mark.parametrize("exercise_id,mistake", [
    (ex_id, m) for ex_id in IDS for m in grading.EXERCISES[ex_id].mistakes()],
    ids=lambda v: getattr(v, "description", v))
def test_mistake_rejected(exercise_id, mistake):
    assert not grading.check(exercise_id, mistake.answer)


def test_torch_normal_passes_both():
    def log_prob(mean, log_std, actions):
        return torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)

    def entropy(log_std):
        return torch.distributions.Normal(torch.zeros_like(log_std),
                                          log_std.exp()).entropy().sum(-1)
    assert grading.check("gaussian_log_prob", log_prob)
    assert grading.check("gaussian_entropy", entropy)


def test_unfinished_stub_fails_with_message(capsys):
    def stub(log_std):
        raise NotImplementedError()
    assert not grading.check("gaussian_entropy", stub)
    assert "not done yet" in capsys.readouterr().out


def test_hint_names_the_sum(capsys):
    def per_dim(mean, log_std, actions):
        return (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std
                - 0.5 * math.log(2 * math.pi))
    assert not grading.check("gaussian_log_prob", per_dim)
    assert "SUM" in capsys.readouterr().out
