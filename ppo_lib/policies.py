"""Actor-critic networks (lessons 05 and 06).

A policy here is an ``nn.Module`` with four methods, the interface the trainer relies on:

    forward(obs, deterministic=False) -> actions, values, log_probs     (collecting data)
    evaluate_actions(obs, actions)    -> values, log_probs, entropy     (the PPO update)
    predict_values(obs)               -> values                         (bootstrapping)
    get_distribution(obs)             -> a torch.distributions object   (inspection)

Shapes: obs (B, obs_dim); values, log_probs and entropy (B,); actions (B,) for a discrete
policy and (B, action_dim) for a Gaussian one.

The module names are SB3's MlpPolicy names, so its weights copy across one to one:
``mlp_extractor.policy_net``, ``mlp_extractor.value_net``, ``action_net``, ``value_net``,
``log_std`` (plus ``mlp_extractor.shared_net`` for a shared trunk, which SB3 2.x dropped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Categorical, Normal
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from .distributions import (categorical_log_prob, categorical_log_prob_entropy,
                            categorical_sample, gaussian_entropy, gaussian_log_prob)

DEFAULT_NET_ARCH = dict(pi=[64, 64], vf=[64, 64])  # SB3 MlpPolicy for PPO


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights scaled by ``gain``, constant bias (SB3's ``ortho_init``).

    Gains as SB3: sqrt(2) for hidden layers, 0.01 for the policy head (a near uniform first
    policy), 1 for the value head.
    """
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, sizes: Sequence[int], activation_fn: type[nn.Module] = nn.Tanh,
        ) -> nn.Sequential:
    """Linear -> activation for each size in ``sizes`` (an empty list is the identity)."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), activation_fn()]
        in_dim = size
    return nn.Sequential(*layers)


_FUNCTIONAL = {nn.Tanh: torch.tanh, nn.ReLU: torch.relu}


def run_mlp(net: nn.Sequential, x: Tensor) -> Tensor:
    """``net(x)`` for an ``mlp()``, each Linear and Tanh / ReLU applied as the function it
    is: the same operations and numbers, without ``nn.Module.__call__``, whose bookkeeping
    costs more than a 64-unit layer's arithmetic on a CartPole batch (the trainer runs this
    tens of thousands of times). A layer of another kind, or one with hooks, is called."""
    hooked = bool(_global_forward_hooks or _global_forward_pre_hooks)
    for layer in net:
        kind = type(layer)
        if hooked or layer._forward_hooks or layer._forward_pre_hooks:
            x = layer(x)
        elif kind is nn.Linear:
            x = F.linear(x, layer.weight, layer.bias)
        elif kind in _FUNCTIONAL:
            x = _FUNCTIONAL[kind](x)
        else:
            x = layer(x)
    return x


def _parse_net_arch(net_arch) -> tuple[list[int], list[int], list[int]]:
    """-> (shared, pi, vf) layer sizes from SB3-style ``net_arch``."""
    if net_arch is None:
        net_arch = DEFAULT_NET_ARCH
    if isinstance(net_arch, (list, tuple)) and len(net_arch) == 1 and isinstance(net_arch[0], dict):
        net_arch = net_arch[0]  # SB3 1.x spelling [dict(pi=..., vf=...)], as in the notes
    if isinstance(net_arch, dict):
        unknown = set(net_arch) - {"pi", "vf", "shared"}
        if unknown:
            raise ValueError(f"net_arch keys must be 'pi', 'vf' and optionally 'shared', "
                             f"got {sorted(net_arch)}")
        return (list(net_arch.get("shared", [])), list(net_arch.get("pi", [])),
                list(net_arch.get("vf", [])))
    if isinstance(net_arch, (list, tuple)) and all(isinstance(s, int) for s in net_arch):
        return [], list(net_arch), list(net_arch)  # SB3 2.x: separate nets of these sizes
    raise ValueError(f"net_arch must be a list of layer sizes or dict(pi=[...], vf=[...], "
                     f"shared=[...]), got {net_arch!r}")


class MlpExtractor(nn.Module):
    """Optional shared trunk, then separate policy and value MLPs (SB3's MlpExtractor)."""

    def __init__(self, in_dim: int, net_arch=None, activation_fn: type[nn.Module] = nn.Tanh):
        super().__init__()
        shared, pi, vf = _parse_net_arch(net_arch)
        self.shared_net = mlp(in_dim, shared, activation_fn)
        trunk_dim = shared[-1] if shared else in_dim
        self.policy_net = mlp(trunk_dim, pi, activation_fn)
        self.value_net = mlp(trunk_dim, vf, activation_fn)
        self.latent_dim_pi = pi[-1] if pi else trunk_dim
        self.latent_dim_vf = vf[-1] if vf else trunk_dim

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        trunk = run_mlp(self.shared_net, obs)
        return run_mlp(self.policy_net, trunk), run_mlp(self.value_net, trunk)

    def forward_critic(self, obs: Tensor) -> Tensor:
        return run_mlp(self.value_net, run_mlp(self.shared_net, obs))


class ActorCritic(nn.Module):
    """What both MLP policies share: the extractor, the value head and orthogonal init."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Space,
                 net_arch=None, activation_fn: type[nn.Module] = nn.Tanh,
                 ortho_init: bool = True):
        super().__init__()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"observation_space must be a flat Box (obs_dim,) for an MLP "
                             f"policy, got {observation_space}; for images pass a CNN policy "
                             f"class such as ppo_lib.atari.NatureCNNActorCritic")
        self.observation_space, self.action_space = observation_space, action_space
        self.obs_dim = int(observation_space.shape[0])
        self.mlp_extractor = MlpExtractor(self.obs_dim, net_arch, activation_fn)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        self.ortho_init = ortho_init

    def _init_weights(self) -> None:
        """Orthogonal init with SB3's gains; called by subclasses once the heads exist."""
        if not self.ortho_init:
            return
        for module in self.mlp_extractor.modules():
            if isinstance(module, nn.Linear):
                layer_init(module, math.sqrt(2))
        layer_init(self.action_net, 0.01)
        layer_init(self.value_net, 1.0)

    def predict_values(self, obs: Tensor) -> Tensor:
        """V(s)   -> (B,)."""
        return self.value_net(self.mlp_extractor.forward_critic(obs.float())).squeeze(-1)


class CategoricalActorCritic(ActorCritic):
    """Discrete actions: pi(a|s) = softmax(action_net(latent))_a, from logits."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Discrete,
                 net_arch=None, activation_fn: type[nn.Module] = nn.Tanh,
                 ortho_init: bool = True):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"CategoricalActorCritic needs a Discrete action space, "
                             f"got {action_space}")
        super().__init__(observation_space, action_space, net_arch, activation_fn, ortho_init)
        self.action_net = nn.Linear(self.mlp_extractor.latent_dim_pi, int(action_space.n))
        self._init_weights()

    def _logits_values(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        latent_pi, latent_vf = self.mlp_extractor(obs.float())
        return self.action_net(latent_pi), self.value_net(latent_vf).squeeze(-1)

    def get_distribution(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self._logits_values(obs)[0])  # logits, not softmax probs

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> actions (B,) int64, values (B,), log_probs (B,)."""
        logits, values = self._logits_values(obs)
        actions = logits.argmax(-1) if deterministic else categorical_sample(logits)
        return actions, values, categorical_log_prob(logits, actions)

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> values (B,), log_probs (B,), entropy (B,) of the given actions."""
        logits, values = self._logits_values(obs)
        log_probs, entropy = categorical_log_prob_entropy(logits, actions.long().reshape(-1))
        return values, log_probs, entropy


class GaussianActorCritic(ActorCritic):
    """Continuous actions: a ~ N(mu(s), diag(sigma^2)), sigma = exp(log_std) a learned
    parameter that does not depend on the state (SB3's DiagGaussianDistribution).

    ``forward`` returns the *unclipped* sample and its log-probability; whoever steps the
    env clips it to the action space (``clip_actions``), as SB3 does (the notes' error 9).
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box,
                 net_arch=None, activation_fn: type[nn.Module] = nn.Tanh,
                 ortho_init: bool = True, log_std_init: float = 0.0):
        if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"GaussianActorCritic needs a flat Box action space, "
                             f"got {action_space}")
        super().__init__(observation_space, action_space, net_arch, activation_fn, ortho_init)
        action_dim = int(action_space.shape[0])
        self.action_net = nn.Linear(self.mlp_extractor.latent_dim_pi, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self._init_weights()

    def _mean_values(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        latent_pi, latent_vf = self.mlp_extractor(obs.float())
        return self.action_net(latent_pi), self.value_net(latent_vf).squeeze(-1)

    def get_distribution(self, obs: Tensor) -> Normal:
        mean, _ = self._mean_values(obs)
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> actions (B, action_dim) unclipped, values (B,), log_probs (B,)."""
        mean, values = self._mean_values(obs)
        if deterministic:
            actions = mean
        else:
            # a sample, not a reparameterised path: no gradient flows through it (as .sample())
            actions = (mean + self.log_std.exp() * torch.randn_like(mean)).detach()
        return actions, values, gaussian_log_prob(mean, self.log_std, actions)

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, values = self._mean_values(obs)
        entropy = gaussian_entropy(self.log_std).expand(mean.shape[0])
        return values, gaussian_log_prob(mean, self.log_std, actions), entropy


def clip_actions(actions: np.ndarray, action_space: spaces.Space) -> np.ndarray:
    """Clip Box actions into the env's bounds (the log-prob stays the unclipped sample's)."""
    if isinstance(action_space, spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


def policy_class_for(action_space: spaces.Space) -> type[ActorCritic]:
    """"MlpPolicy" resolved by the action space, as SB3 does."""
    if isinstance(action_space, spaces.Discrete):
        return CategoricalActorCritic
    if isinstance(action_space, spaces.Box):
        return GaussianActorCritic
    raise ValueError(f"action space {action_space} is not supported: use Discrete or Box")
