"""Lesson 06's exercises: other right answers pass, and what the cases catch
(tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson06  # noqa: F401  (registers the Gaussian exercises)

IDS = ["gaussian_log_prob", "gaussian_entropy"]


def test_the_exercises_belong_to_lesson_06():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"06"}


# right answers written in other ways ------------------------------------------------------

def solution_log_prob(mean, log_std, actions):
    """The body of solutions/06_continuous_actions.ipynb."""
    std = torch.exp(log_std)
    per_dim = -((actions - mean) ** 2) / (2 * std ** 2) - log_std - 0.5 * math.log(2 * math.pi)
    return per_dim.sum(-1)


def solution_entropy(log_std):
    return (0.5 * math.log(2 * math.pi * math.e) + log_std).sum(-1)


def normal_log_prob(mu, log_sigma, a):
    return Normal(mu, log_sigma.exp()).log_prob(a).sum(-1)


def independent_log_prob(mean, log_std, actions):
    return Independent(Normal(mean, log_std.exp().expand_as(mean)), 1).log_prob(actions)


def multivariate_log_prob(mean, log_std, actions):
    scale = torch.diag_embed(log_std.exp().expand_as(mean))
    return MultivariateNormal(mean, scale_tril=scale).log_prob(actions)


def variance_form_log_prob(mean, log_std, actions):
    var = torch.exp(2 * log_std)
    return (-0.5 * (actions - mean).pow(2) / var - 0.5 * torch.log(2 * math.pi * var)).sum(-1)


def normal_entropy(log_std):
    return Normal(torch.zeros_like(log_std), log_std.exp()).entropy().sum(-1)


def counted_entropy(s):
    return s.sum(dim=-1) + s.shape[-1] * (0.5 + 0.5 * math.log(2 * math.pi))


@pytest.mark.parametrize("answer", [solution_log_prob, normal_log_prob, independent_log_prob,
                                    multivariate_log_prob, variance_form_log_prob],
                         ids=lambda f: f.__name__)
def test_right_log_probs_pass(answer, capsys):
    assert grading.check("gaussian_log_prob", answer), capsys.readouterr().out


@pytest.mark.parametrize("answer", [solution_entropy, normal_entropy, counted_entropy],
                         ids=lambda f: f.__name__)
def test_right_entropies_pass(answer, capsys):
    assert grading.check("gaussian_entropy", answer), capsys.readouterr().out


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


@pytest.mark.parametrize("exercise_id", IDS)
def test_cases_include_batched_shapes_and_graph_inputs(exercise_id):
    cases = grading.EXERCISES[exercise_id].cases()
    first = [(c.args or tuple(c.kwargs.values()))[0] for c in cases]
    dims = {t.dim() for t in first}
    assert 3 in dims                                        # (T, N, D)
    assert any(t.dim() >= 2 and t.shape[0] == 1 for t in first)   # a batch of one
    assert any(t.requires_grad for t in first)
