"""ppo_lib.returns.gae equals SB3's RolloutBuffer.compute_returns_and_advantage.

Convention translation: our dones[t] = 1 when the transition at step t ended an episode.
SB3 stores episode_starts[t] = 1 when the observation at step t starts a new episode, i.e.
episode_starts[t] = dones[t - 1] (episode_starts[0] is whatever came before the rollout and
is never read), and gets the last step's done as the ``dones`` argument.
"""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from ppo_lib.returns import gae


def sb3_gae(rewards, values, dones, last_values, gamma, gae_lambda):
    n_steps, n_envs = rewards.shape
    buffer = RolloutBuffer(n_steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), device="cpu",
                           gae_lambda=gae_lambda, gamma=gamma, n_envs=n_envs)
    buffer.rewards[:] = rewards.numpy()
    buffer.values[:] = values.numpy()
    buffer.episode_starts[0] = 1.0  # never read by SB3's GAE; any value
    buffer.episode_starts[1:] = dones[:-1].numpy()
    buffer.compute_returns_and_advantage(last_values.clone(), dones[-1].numpy().astype(bool))
    return torch.as_tensor(buffer.advantages), torch.as_tensor(buffer.returns)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(16, 1), (32, 4), (7, 3)])
def test_gae_matches_sb3(seed, shape):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(shape, generator=g)
    values = torch.randn(shape, generator=g)
    dones = (torch.rand(shape, generator=g) < 0.15).float()
    dones[-1, 0] = 1.0  # an episode end on the last step, too
    last_values = torch.randn(shape[1], generator=g)
    gamma, gae_lambda = [(0.99, 0.95), (0.9, 0.5), (0.999, 1.0), (0.8, 0.0), (0.97, 0.9)][seed]
    adv, ret = gae(rewards, values, dones, last_values, gamma, gae_lambda)
    want_adv, want_ret = sb3_gae(rewards, values, dones, last_values, gamma, gae_lambda)
    assert torch.allclose(adv, want_adv, atol=1e-5)
    assert torch.allclose(ret, want_ret, atol=1e-5)


def test_translation_matters():
    """Sanity check of the test itself: passing dones as episode_starts unshifted differs."""
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(10, 2, generator=g), torch.randn(10, 2, generator=g)
    dones = torch.zeros(10, 2)
    dones[3] = 1.0
    last = torch.zeros(2)
    adv, _ = gae(rewards, values, dones, last, 0.99, 0.95)
    wrong_adv, _ = sb3_gae(rewards, values, torch.roll(dones, 1, 0), last, 0.99, 0.95)
    assert not np.allclose(adv.numpy(), wrong_adv.numpy(), atol=1e-3)
