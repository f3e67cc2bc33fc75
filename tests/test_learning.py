"""Learning checks: PPO must actually solve the tasks (slow; part of `make test`)."""

import numpy as np
import pytest

from ppo_lib import presets
from ppo_lib.callbacks import BaseCallback
from ppo_lib.evaluation import evaluate_policy
from ppo_lib.ppo import PPO


class StopWhenSolved(BaseCallback):
    """Stop once a deterministic evaluation (``n_eval`` episodes) reaches ``threshold``;
    evaluate only when the last 20 training episodes' mean return passes ``gate`` (cheap),
    at most every ``gap`` steps."""

    def __init__(self, env_id, threshold, gate, n_eval=20, gap=4000):
        super().__init__()
        self.env_id, self.threshold, self.gate, self.n_eval, self.gap = (env_id, threshold,
                                                                        gate, n_eval, gap)
        self.solved_mean, self.last_eval = None, -10**9

    def _on_update_end(self):
        recent = list(self.model.env.episode_returns)[-20:]
        near = len(recent) == 20 and np.mean(recent) >= self.gate
        if near and self.num_timesteps - self.last_eval >= self.gap:
            self.last_eval = self.num_timesteps
            mean, _ = evaluate_policy(self.model, self.env_id, self.n_eval, seed=12_345)
            if mean >= self.threshold:
                self.solved_mean = mean

    def _on_step(self):
        return self.solved_mean is None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cartpole_solved_for_4_of_5_seeds():
    solved = []
    for seed in range(5):
        cb = StopWhenSolved("CartPole-v1", threshold=475, gate=450, gap=2000)
        PPO("MlpPolicy", "CartPole-v1", seed=seed, **presets.get("cartpole_fast")).learn(
            presets.budget("cartpole_fast"), callback=cb)
        solved.append(cb.solved_mean is not None)
        if sum(solved) >= 4 or solved.count(False) >= 2:
            break
    assert sum(solved) >= 4, (f"CartPole solved (eval >= 475 within the preset's budget, "
                              f"{presets.budget('cartpole_fast'):,} steps) for {solved}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pendulum_reaches_minus_300():
    cb = StopWhenSolved("Pendulum-v1", threshold=-300, gate=-400, n_eval=10, gap=10_000)
    model = PPO("MlpPolicy", "Pendulum-v1", seed=0, **presets.get("pendulum"))
    model.learn(300_000, callback=cb)
    assert cb.solved_mean is not None, (
        f"Pendulum not solved in 300k steps; last training returns "
        f"{np.round(model.logger.get('rollout/ep_rew_mean')[-5:], 1)}")
