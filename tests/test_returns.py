"""ppo_lib.returns: hand-computed cases (SB3's constant-value trick), identities, shapes."""

import pytest
import torch

from ppo_lib.returns import discounted_returns, gae

T = torch.tensor


def test_discounted_returns_by_hand():
    got = discounted_returns(T([1.0, 1.0, 1.0]), T([0.0, 0.0, 0.0]), 0.9)
    assert torch.allclose(got, T([2.71, 1.9, 1.0]))


def test_discounted_returns_reset_at_episode_end():
    got = discounted_returns(T([1.0, 2.0, 3.0, 4.0]), T([0.0, 1.0, 0.0, 0.0]), 0.5)
    assert torch.allclose(got, T([2.0, 2.0, 5.0, 4.0]))


def test_discounted_returns_bootstrap_and_no_bootstrap_after_end():
    rewards = T([1.0, 1.0])
    assert torch.allclose(discounted_returns(rewards, T([0.0, 0.0]), 0.5, T(4.0)), T([2.5, 3.0]))
    assert torch.allclose(discounted_returns(rewards, T([0.0, 1.0]), 0.5, T(4.0)), T([1.5, 1.0]))


def test_discounted_returns_columns_are_independent_envs():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(6, 3, generator=g)
    dones = (torch.rand(6, 3, generator=g) < 0.3).float()
    last = torch.rand(3, generator=g)
    got = discounted_returns(rewards, dones, 0.9, last)
    assert got.shape == (6, 3)
    for i in range(3):
        col = discounted_returns(rewards[:, i], dones[:, i], 0.9, last[i])
        assert torch.allclose(got[:, i], col)


def test_discounted_returns_does_not_modify_inputs():
    rewards, dones = T([1.0, 2.0]), T([0.0, 1.0])
    discounted_returns(rewards, dones, 0.9)
    assert torch.equal(rewards, T([1.0, 2.0])) and torch.equal(dones, T([0.0, 1.0]))


def test_gae_constant_value_trick():
    # SB3's test: rewards 1, V = c everywhere, no ends: delta_t = 1 + gamma c - c.
    c, gamma, lam, n = 2.0, 0.5, 0.8, 5
    adv, ret = gae(torch.ones(n), torch.full((n,), c), torch.zeros(n), T(c), gamma, lam)
    delta = 1 + gamma * c - c
    expected = T([delta * sum((gamma * lam) ** k for k in range(n - t)) for t in range(n)])
    assert torch.allclose(adv, expected)
    assert torch.allclose(ret, expected + c)


def test_gae_episode_end_mid_rollout_by_hand():
    adv, ret = gae(torch.ones(3), torch.ones(3), T([0.0, 1.0, 0.0]), T(1.0), 0.5, 1.0)
    assert torch.allclose(adv, T([0.5, 0.0, 0.5]))
    assert torch.allclose(ret, T([1.5, 1.0, 1.5]))


def test_gae_truncation_bootstrap_in_the_reward():
    # A time limit at step 1: the rollout adds gamma * V(final_obs) = 0.5 * 4 to r_1 and
    # marks it done; the advantage there is then r_1 + gamma V(final) - V(s_1).
    gamma, v_final = 0.5, 4.0
    rewards = T([1.0, 1.0 + gamma * v_final, 1.0])
    adv, _ = gae(rewards, T([1.0, 1.0, 1.0]), T([0.0, 1.0, 0.0]), T(1.0), gamma, 0.0)
    assert torch.allclose(adv, T([0.5, 2.0, 0.5]))


def test_gae_uses_next_state_value_and_last_values():
    adv, _ = gae(torch.zeros(3), T([0.0, 1.0, 2.0]), torch.zeros(3), T(3.0), 1.0, 0.0)
    assert torch.allclose(adv, T([1.0, 1.0, 1.0]))
    adv, _ = gae(torch.zeros(2), torch.zeros(2), torch.zeros(2), T(10.0), 0.5, 1.0)
    assert torch.allclose(adv, T([2.5, 5.0]))


@pytest.fixture
def rollout():
    g = torch.Generator().manual_seed(1)
    rewards = torch.randn(8, 3, generator=g)
    values = torch.randn(8, 3, generator=g)
    dones = (torch.rand(8, 3, generator=g) < 0.25).float()
    last = torch.randn(3, generator=g)
    return rewards, values, dones, last


def test_gae_lambda_0_is_the_td_error(rollout):
    rewards, values, dones, last = rollout
    adv, _ = gae(rewards, values, dones, last, 0.9, 0.0)
    next_values = torch.cat([values[1:], last[None]])
    assert torch.allclose(adv, rewards + 0.9 * next_values * (1 - dones) - values, atol=1e-6)


def test_gae_lambda_1_is_discounted_return_minus_value(rollout):
    rewards, values, dones, last = rollout
    adv, ret = gae(rewards, values, dones, last, 0.9, 1.0)
    g = discounted_returns(rewards, dones, 0.9, last)
    assert torch.allclose(adv, g - values, atol=1e-5)
    assert torch.allclose(ret, g, atol=1e-5)


def test_gae_1d_matches_columns(rollout):
    rewards, values, dones, last = rollout
    adv, _ = gae(rewards, values, dones, last, 0.99, 0.95)
    for i in range(3):
        col, _ = gae(rewards[:, i], values[:, i], dones[:, i], last[i], 0.99, 0.95)
        assert torch.allclose(adv[:, i], col, atol=1e-6)


def test_gae_errors_name_the_argument():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="gae_lambda"):
        gae(x, x, x, T(0.0), 0.99, 1.5)
    with pytest.raises(ValueError, match="values"):
        gae(x, torch.zeros(5), x, T(0.0), 0.99, 0.95)
    with pytest.raises(ValueError, match="last_values"):
        gae(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3), 0.99, 0.95)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(x, x, -0.1)
