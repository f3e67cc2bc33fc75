"""ppo_lib.evaluation: episodes run side by side give the episodes run one after another."""

import gymnasium as gym
import numpy as np
import pytest

from ppo_lib import evaluation
from ppo_lib.evaluation import evaluate_policy
from ppo_lib.ppo import PPO


class Scripted:
    """A deterministic 'model' whose predict handles one observation or a batch: push the
    cart towards the pole's lean: episodes of 30-60 steps; with ``lookahead`` (the pole's
    angular velocity too) every episode lasts to the 500-step time limit."""

    def __init__(self, lookahead=0.0):
        self.batch_sizes, self.lookahead = [], lookahead

    def predict(self, obs, deterministic=True):
        obs = np.asarray(obs)
        batch = obs if obs.ndim == 2 else obs[None]
        self.batch_sizes.append(len(batch))
        actions = (batch[:, 2] + self.lookahead * batch[:, 3] > 0).astype(np.int64)
        return (actions if obs.ndim == 2 else actions[0]), None


@pytest.mark.parametrize("n", [1, 5, 40])
def test_side_by_side_equals_one_after_another(monkeypatch, n):
    monkeypatch.setattr(evaluation, "MAX_PARALLEL_EPISODES", 16)  # 40 episodes: three waves
    model = Scripted()
    fast = evaluate_policy(model, "CartPole-v1", n, seed=7, return_episode_rewards=True)
    assert max(model.batch_sizes) == min(n, 16)
    env = gym.make("CartPole-v1")                 # an Env instance: one after another
    slow = evaluate_policy(Scripted(), env, n, seed=7, return_episode_rewards=True)
    assert fast == slow
    assert len(set(fast[1])) > 1 or n == 1, "episodes of different lengths"
    assert max(fast[1]) < 100


def test_side_by_side_stops_at_the_time_limit():
    fast = evaluate_policy(Scripted(lookahead=0.05), "CartPole-v1", 3, seed=7,
                           return_episode_rewards=True)
    assert fast == ([500.0] * 3, [500] * 3)   # truncated, not run past the limit


def test_side_by_side_with_a_trained_ppo_model():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=64).learn(128)
    fast = evaluate_policy(model, "CartPole-v1", 6, seed=3, return_episode_rewards=True)
    slow = evaluate_policy(model, gym.make("CartPole-v1"), 6, seed=3,
                           return_episode_rewards=True)
    assert fast == slow
    mean, std = evaluate_policy(model, "CartPole-v1", 6, seed=3)
    assert mean == pytest.approx(np.mean(fast[0])) and std == pytest.approx(np.std(fast[0]))


def test_bad_episode_count_is_refused():
    with pytest.raises(ValueError, match="n_eval_episodes"):
        evaluate_policy(Scripted(), "CartPole-v1", 0)
