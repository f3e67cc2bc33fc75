"""ppo_lib's policy and loss against Stable-Baselines3's on one identical batch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import PPO as SB3PPO

from ppo_lib.ppo import PPO
from ppo_lib.rollout import Minibatch


def sb3_loss(model, batch, clip_range, clip_range_vf):
    """SB3 PPO.train()'s loss for one minibatch, line for line."""
    actions = batch.actions
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    values, log_prob, entropy = model.policy.evaluate_actions(batch.obs, actions)
    values = values.flatten()
    advantages = batch.advantages
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = torch.exp(log_prob - batch.old_log_probs)
    policy_loss_1 = advantages * ratio
    policy_loss_2 = advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    policy_loss = -torch.min(policy_loss_1, policy_loss_2).mean()
    values_pred = batch.old_values + torch.clamp(values - batch.old_values, -clip_range_vf,
                                                 clip_range_vf)
    value_loss = F.mse_loss(batch.returns, values_pred)
    entropy_loss = -torch.mean(entropy)
    loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss
    return loss, values, log_prob, entropy


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_policy_outputs_and_loss_match_sb3(env_id):
    kw = dict(n_steps=64, batch_size=64, ent_coef=0.01, vf_coef=0.7, clip_range=0.2,
              clip_range_vf=0.1, seed=0)
    sb3 = SB3PPO("MlpPolicy", env_id, device="cpu", **kw)
    ours = PPO("MlpPolicy", env_id, **kw)
    missing = ours.policy.load_state_dict(sb3.policy.state_dict(), strict=False)
    assert not missing.missing_keys  # every ppo_lib parameter has its SB3 twin, same name
    assert all("features_extractor" in k for k in missing.unexpected_keys)

    g = torch.Generator().manual_seed(1)
    n, obs_dim = 64, ours.observation_space.shape[0]
    obs = torch.randn(n, obs_dim, generator=g)
    if isinstance(ours.action_space, spaces.Discrete):
        actions = torch.randint(0, 2, (n,), generator=g)
    else:
        actions = torch.randn(n, 1, generator=g) * 1.5
    with torch.no_grad():
        _, old_lp, _ = ours.policy.evaluate_actions(obs, actions)
    batch = Minibatch(obs, actions, torch.randn(n, generator=g),
                      old_lp + 0.3 * torch.randn(n, generator=g),  # ratios far from 1
                      torch.randn(n, generator=g), torch.randn(n, generator=g))

    sb3_total, sb3_v, sb3_lp, sb3_ent = sb3_loss(sb3, batch, 0.2, 0.1)
    v, lp, ent = ours.policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(v, sb3_v, atol=1e-5, rtol=0)
    torch.testing.assert_close(lp, sb3_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, sb3_ent.expand_as(ent), atol=1e-5, rtol=0)
    advantages = ours.normalized_advantages(batch.advantages)
    loss, terms, _, ratio = ours.minibatch_loss(batch, advantages, 0.2, 0.1)
    assert abs(loss.item() - sb3_total.item()) < 1e-5
    assert 0.05 < (ratio - 1).abs().gt(0.2).float().mean() < 0.95  # the clip is exercised

    # the gradients too (what the optimizer steps on)
    loss.backward()
    sb3_total.backward()
    ours_grads = dict(ours.policy.named_parameters())
    for name, p in sb3.policy.named_parameters():
        torch.testing.assert_close(ours_grads[name].grad, p.grad, atol=1e-5, rtol=1e-4)


def test_sb3_adam_settings_match():
    sb3 = SB3PPO("MlpPolicy", "CartPole-v1", device="cpu")
    ours = PPO("MlpPolicy", "CartPole-v1")
    assert sb3.policy.optimizer.defaults["eps"] == ours.optimizer.defaults["eps"] == 1e-5
    assert np.isclose(sb3.policy.optimizer.defaults["lr"], ours.optimizer.defaults["lr"])
