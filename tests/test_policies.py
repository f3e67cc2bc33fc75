import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from ppo_lib.fastpath import run_mlp
from ppo_lib.policies import (CategoricalActorCritic, GaussianActorCritic, clip_actions,
                              layer_init, mlp)


def test_categorical_shapes(cartpole_spaces):
    policy = CategoricalActorCritic(*cartpole_spaces)
    obs = torch.randn(7, 4)
    actions, values, log_probs = policy(obs)
    assert actions.shape == (7,) and actions.dtype == torch.long
    assert values.shape == (7,) and log_probs.shape == (7,)
    v, lp, ent = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(lp, log_probs)
    torch.testing.assert_close(v, values)
    assert ent.shape == (7,)
    assert policy.predict_values(obs).shape == (7,)
    torch.testing.assert_close(policy.get_distribution(obs).log_prob(actions), log_probs)


def test_batch_of_one_keeps_its_axis(cartpole_spaces):
    # notes' error 5: squeezing everything would turn (1,) into ()
    policy = CategoricalActorCritic(*cartpole_spaces)
    assert policy.predict_values(torch.randn(1, 4)).shape == (1,)


def test_gaussian_log_prob_is_of_unclipped_sample(pendulum_spaces):
    obs_space, act_space = pendulum_spaces  # actions in [-2, 2]
    torch.manual_seed(0)
    policy = GaussianActorCritic(obs_space, act_space, log_std_init=2.0)  # std e^2 ~ 7.4
    obs = torch.randn(500, 3)
    actions, values, log_probs = policy(obs)
    assert actions.shape == (500, 1)
    assert (actions.abs() > 2).any(), "samples should often leave the bounds"
    _, lp, _ = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(lp, log_probs)
    clipped = clip_actions(actions.numpy(), act_space)
    assert clipped.min() >= -2 and clipped.max() <= 2
    dist = policy.get_distribution(obs)
    torch.testing.assert_close(dist.log_prob(actions).sum(-1), log_probs)


def test_gaussian_deterministic_is_mean_and_std_param(pendulum_spaces):
    policy = GaussianActorCritic(*pendulum_spaces, log_std_init=-0.5)
    obs = torch.randn(3, 3)
    a1, _, _ = policy(obs, deterministic=True)
    a2, _, _ = policy(obs, deterministic=True)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(policy.log_std.detach(), torch.tensor([-0.5]))
    _, _, ent = policy.evaluate_actions(obs, a1)
    assert ent.shape == (3,)


@pytest.mark.parametrize("net_arch, pi_sizes, vf_sizes, shared_sizes", [
    (None, [64, 64], [64, 64], []),
    ([32], [32], [32], []),
    (dict(pi=[16, 8], vf=[32]), [16, 8], [32], []),
    ([dict(pi=[256, 256], vf=[256, 256])], [256, 256], [256, 256], []),  # notes' SB3 1.x
    (dict(shared=[128, 128], pi=[], vf=[]), [], [], [128, 128]),       # notes' network
])
def test_net_arch_variants(cartpole_spaces, net_arch, pi_sizes, vf_sizes, shared_sizes):
    policy = CategoricalActorCritic(*cartpole_spaces, net_arch=net_arch)

    def sizes(seq):
        return [m.out_features for m in seq if isinstance(m, nn.Linear)]
    ex = policy.mlp_extractor
    assert sizes(ex.policy_net) == pi_sizes
    assert sizes(ex.value_net) == vf_sizes
    assert sizes(ex.shared_net) == shared_sizes
    actions, values, _ = policy(torch.randn(2, 4))
    assert values.shape == (2,)


def test_bad_net_arch_and_spaces(cartpole_spaces, pendulum_spaces):
    with pytest.raises(ValueError, match="net_arch"):
        CategoricalActorCritic(*cartpole_spaces, net_arch=dict(actor=[64]))
    with pytest.raises(ValueError, match="Discrete"):
        CategoricalActorCritic(*pendulum_spaces)
    with pytest.raises(ValueError, match="flat Box"):
        CategoricalActorCritic(gym.spaces.Box(0, 1, (4, 4)), gym.spaces.Discrete(2))


def test_ortho_init_gains(cartpole_spaces):
    torch.manual_seed(0)
    policy = CategoricalActorCritic(*cartpole_spaces)
    w = policy.action_net.weight  # (2, 64): orthogonal rows scaled by 0.01
    torch.testing.assert_close(w @ w.T, 0.01**2 * torch.eye(2), atol=1e-7, rtol=0)
    w = policy.mlp_extractor.policy_net[2].weight  # (64, 64) hidden, gain sqrt(2)
    torch.testing.assert_close(w @ w.T, 2 * torch.eye(64), atol=1e-5, rtol=0)
    w = policy.value_net.weight  # (1, 64), gain 1
    assert math.isclose(w.norm().item(), 1.0, rel_tol=1e-5)
    assert all((m.bias == 0).all() for m in policy.modules() if isinstance(m, nn.Linear))


def test_layer_init_and_mlp():
    layer = layer_init(nn.Linear(3, 3), gain=2.0, bias=0.5)
    torch.testing.assert_close(layer.weight @ layer.weight.T, 4 * torch.eye(3), atol=1e-5, rtol=0)
    assert (layer.bias == 0.5).all()
    net = mlp(4, [8, 8], nn.ReLU)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    assert len(mlp(4, [])) == 0


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU, nn.ELU])
def test_run_mlp_is_calling_the_net(activation):
    torch.manual_seed(0)
    net, x = mlp(4, [8, 8], activation), torch.randn(5, 4)
    assert torch.equal(run_mlp(net, x), net(x))
    assert torch.equal(run_mlp(mlp(4, []), x), x)
    seen = []
    net[2].register_forward_hook(lambda module, inputs, output: seen.append(output))
    assert torch.equal(run_mlp(net, x), net(x)) and len(seen) == 2  # hooks still run


def test_categorical_sampling_follows_logits(cartpole_spaces):
    torch.manual_seed(0)
    policy = CategoricalActorCritic(*cartpole_spaces)
    with torch.no_grad():
        policy.action_net.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # p = (1/4, 3/4)
    actions, _, _ = policy(torch.zeros(8000, 4))
    assert abs(actions.float().mean().item() - 0.75) < 0.02
    assert np.all(policy(torch.zeros(5, 4), deterministic=True)[0].numpy() == 1)
