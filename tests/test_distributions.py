import math

import torch
from torch.distributions import Categorical, Normal

import pytest

from ppo_lib.distributions import (categorical_entropy, categorical_log_prob,
                                   categorical_log_prob_entropy, categorical_sample,
                                   categorical_sample_multinomial, gaussian_entropy,
                                   gaussian_log_prob)


def test_categorical_log_prob_and_entropy_equal_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 5, generator=g) * 3
    actions = torch.randint(0, 5, (50,), generator=g)
    dist = Categorical(logits=logits)
    torch.testing.assert_close(categorical_log_prob(logits, actions), dist.log_prob(actions))
    torch.testing.assert_close(categorical_entropy(logits), dist.entropy())
    lp, ent = categorical_log_prob_entropy(logits, actions)
    torch.testing.assert_close(lp, dist.log_prob(actions))
    torch.testing.assert_close(ent, dist.entropy())


def test_categorical_extreme_logits_stay_finite():
    # softmax-then-log would give -inf for the unlikely action (notes' error 8)
    logits = torch.tensor([[0.0, -200.0]])
    lp = categorical_log_prob(logits, torch.tensor([1]))
    assert torch.isfinite(lp).all() and lp.item() == -200.0
    assert torch.isfinite(categorical_entropy(logits)).all()


def test_entropy_sums_over_actions_not_mean():
    logits = torch.zeros(1, 4)  # uniform over 4 actions: H = log 4
    assert math.isclose(categorical_entropy(logits).item(), math.log(4), rel_tol=1e-6)


@pytest.mark.parametrize("sample", [categorical_sample, categorical_sample_multinomial])
def test_categorical_sample_frequencies(sample):
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(20000, 3)
    actions = sample(logits)
    assert actions.dtype == torch.int64 and actions.shape == (20000,)
    counts = torch.bincount(actions, minlength=3).float() / 20000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.6, 0.3]), atol=0.015, rtol=0)


def test_the_two_samplers_draw_different_random_streams():
    """Same distribution, other random numbers: PPO's policies use the Gumbel-max draw,
    VPG and TRPO the multinomial one, and each keeps its own (training runs are seeded)."""
    logits = torch.zeros(1000, 5)
    torch.manual_seed(0)
    gumbel = categorical_sample(logits)
    torch.manual_seed(0)
    multinomial = categorical_sample_multinomial(logits)
    assert not torch.equal(gumbel, multinomial)


def test_gaussian_log_prob_and_entropy_equal_torch():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(40, 3, generator=g)
    log_std = torch.randn(3, generator=g) * 0.5
    actions = torch.randn(40, 3, generator=g) * 2
    dist = Normal(mean, log_std.exp().expand_as(mean))
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, actions),
                               dist.log_prob(actions).sum(-1))
    torch.testing.assert_close(gaussian_entropy(log_std),
                               Normal(torch.zeros(3), log_std.exp()).entropy().sum(-1))
