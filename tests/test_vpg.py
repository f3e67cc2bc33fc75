"""ppo_lib.vpg: REINFORCE pieces, episode collection and a learning check."""

import pytest
import torch
from torch import nn

from ppo_lib.distributions import categorical_sample_multinomial
from ppo_lib.vpg import (baseline_advantages, collect_episodes, evaluate, make_env,
                         make_policy, mlp, mlp_with_linear_output, policy_update,
                         sample_actions, train_vpg, training_loop)

torch.set_num_threads(1)


def assert_close(got, want, rtol=1e-5, atol=1e-8):
    """torch.allclose with a message (torch.testing.assert_close costs ~2 s on first use)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.allclose(got, want, rtol=rtol, atol=atol), (got, want)


def test_mlp_shapes_and_activations():
    net = mlp_with_linear_output([4, 8, 8, 2])
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert net(torch.zeros(5, 4)).shape == (5, 2)
    assert mlp is mlp_with_linear_output   # lesson 02's name


def test_sample_actions_is_the_multinomial_sampler():
    assert sample_actions is categorical_sample_multinomial


def test_sample_actions_matches_probabilities():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4_000, 3)
    counts = torch.bincount(sample_actions(logits), minlength=3).float() / 4_000
    assert_close(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.03, rtol=0)


def test_collect_episodes_one_whole_episode_per_env():
    envs = make_env("CartPole-v1", 4)
    torch.manual_seed(0)
    policy = make_policy(envs)
    batch = collect_episodes(envs, policy, gamma=0.9, seed=0)
    # CartPole pays 1 per step, so each episode's return is its length.
    assert batch.n_steps == int(batch.episode_returns.sum().item())
    assert batch.obs.shape == (batch.n_steps, 4)
    assert batch.actions.shape == batch.returns.shape == (batch.n_steps,)
    # Reward-to-go of the last step of every episode is 1; the returns of an episode of
    # length L start at (1 - 0.9^L) / (1 - 0.9).
    assert (batch.returns == 1.0).sum().item() == 4
    lengths = batch.episode_returns
    first = batch.returns.max().item()
    assert first == pytest.approx((1 - 0.9 ** lengths.max().item()) / 0.1, rel=1e-5)
    envs.close()


def test_collect_episodes_is_seeded():
    envs = make_env("CartPole-v1", 3)
    policy = make_policy(envs)
    torch.manual_seed(1)
    a = collect_episodes(envs, policy, seed=5)
    torch.manual_seed(1)
    b = collect_episodes(envs, policy, seed=5)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)


def test_baseline_advantages():
    returns = torch.tensor([3.0, 1.0, 2.0])
    values = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    raw = baseline_advantages(returns, values, normalize=False)
    assert_close(raw, torch.tensor([2.0, 0.0, 1.0]))
    assert not raw.requires_grad                      # the baseline is a constant
    norm = baseline_advantages(returns, values)
    assert_close(norm, torch.tensor([1.0, -1.0, 0.0]), atol=1e-6, rtol=0)
    constant = baseline_advantages(torch.ones(4), torch.zeros(4))
    assert torch.isfinite(constant).all()             # std 0: the 1e-8 keeps it finite
    assert baseline_advantages(torch.ones(1), torch.zeros(1)).item() == 1.0


def test_baseline_advantages_bad_shapes():
    with pytest.raises(ValueError, match="values"):
        baseline_advantages(torch.ones(3), torch.ones(3, 1))
    with pytest.raises(TypeError, match="returns"):
        baseline_advantages([1.0, 2.0], torch.ones(2))


def test_policy_update_raises_log_prob_of_positive_advantage_actions():
    envs = make_env("CartPole-v1", 2)
    torch.manual_seed(0)
    policy = make_policy(envs)
    batch = collect_episodes(envs, policy, seed=0)
    advantages = torch.where(batch.actions == 1, 1.0, -1.0)
    before = torch.softmax(policy(batch.obs), -1)[:, 1].mean().item()
    policy_update(policy, torch.optim.SGD(policy.parameters(), lr=0.1), batch, advantages)
    after = torch.softmax(policy(batch.obs), -1)[:, 1].mean().item()
    assert after > before
    envs.close()


def test_evaluate_is_seeded_and_leaves_global_rng_alone():
    envs = make_env("CartPole-v1", 1)
    torch.manual_seed(0)
    policy = make_policy(envs)
    state = torch.get_rng_state()
    a = evaluate(policy, n_episodes=3, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, evaluate(policy, n_episodes=3, seed=2))
    assert a.shape == (3,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_iterations=0), "n_iterations"), (dict(learning_rate=0.0), "learning_rate"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(n_envs=0), "n_envs"),
    (dict(total_timesteps=-5), "total_timesteps"), (dict(gamma=1.5), "gamma"),
    (dict(env_id="Pendulum-v1"), "discrete")])
def test_train_vpg_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_vpg(**kwargs)


@pytest.mark.slow
def test_vpg_learns_cartpole():
    result = train_vpg(n_iterations=25, learning_rate=3e-2, seed=0)
    returns = result.get("mean_return")
    assert returns[0] < 50
    assert sum(returns[-3:]) / 3 >= 300
    final = evaluate(result.policy, n_episodes=10, seed=123)
    assert final.mean().item() >= 200


@pytest.mark.slow
def test_vpg_without_baseline_still_learns_a_little():
    result = train_vpg(n_iterations=15, learning_rate=3e-2, baseline=False, seed=0)
    returns = result.get("mean_return")
    assert sum(returns[-3:]) / 3 > 2 * returns[0]


def test_training_loop_runs_the_given_policy_step():
    torch.manual_seed(0)
    envs = make_env("CartPole-v1", 3)
    policy = make_policy(envs)
    seen = []

    def no_step(batch, advantages):
        seen.append((batch.n_steps, advantages.shape))
        return dict(stepped=1.0)

    result = training_loop(envs, policy, None, None, no_step, n_iterations=2, gamma=0.99,
                           seed=0)
    envs.close()
    assert [n for n, _ in seen] == result.get("timesteps")[:1] + [
        result.get("timesteps")[1] - result.get("timesteps")[0]]
    assert all(shape == (n,) for n, shape in seen)
    assert result.get("stepped") == [1.0, 1.0] and result.value_fn is None
