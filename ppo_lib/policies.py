"""Actor-critic networks (lessons 05 and 06).

A policy here is an ``nn.Module`` with these methods (the trainer relies on the last four):

    heads(obs)                        -> logits or mean, values       (the two linear heads)
    forward(obs, deterministic=False) -> actions, values, log_probs     (collecting data)
    evaluate_actions(obs, actions)    -> values, log_probs, entropy     (the PPO update)
    predict_values(obs)               -> values                         (bootstrapping)
    get_distribution(obs)             -> a torch.distributions object   (inspection)

Shapes: obs (B, obs_dim); values, log_probs and entropy (B,); actions (B,) for a discrete
policy, (B, action_dim) for a Gaussian one, (B, len(nvec)) or (B, n) int64 for MultiDiscrete
or MultiBinary.

The module names are SB3's MlpPolicy names, so its weights copy across one to one:
``mlp_extractor.policy_net``, ``mlp_extractor.value_net``, ``action_net``, ``value_net``,
``log_std`` (plus ``mlp_extractor.shared_net`` for a shared trunk, which SB3 2.x dropped).

    ActorCritic                 heads(obs) from a body's latents(obs)
      CategoricalPolicy         the categorical distribution (MLP here, Nature CNN in atari)
      MlpActorCritic            the MLP body: mlp_extractor, value_net, orthogonal init
        CategoricalActorCritic  (CategoricalPolicy + MlpActorCritic)
        GaussianActorCritic     the diagonal Gaussian with a learned log_std
        MultiCategoricalActorCritic  MultiDiscrete: one categorical per dimension
        BernoulliActorCritic    MultiBinary: one Bernoulli per bit
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

from .distributions import (bernoulli_log_prob_entropy, bernoulli_sample, categorical_log_prob,
                            categorical_log_prob_entropy, categorical_sample, gaussian_entropy,
                            gaussian_log_prob, multi_categorical_log_prob_entropy,
                            multi_categorical_sample)
from .fastpath import run_mlp

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
    """The base of every actor-critic here: a body gives latent features for the actor and
    the critic (``latents``), two linear heads map them to the distribution's parameters
    (logits, or a Gaussian's mean) and to V(s).

        heads(obs) = action_net(latent_pi), value_net(latent_vf)
    """

    def latents(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """-> latent_pi, latent_vf (the same tensor when the body is shared)."""
        raise NotImplementedError

    def heads(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """-> distribution parameters (B, n_actions or action_dim), values (B,)."""
        latent_pi, latent_vf = self.latents(obs)
        return self.action_net(latent_pi), self.value_net(latent_vf).squeeze(-1)

    def predict_values(self, obs: Tensor) -> Tensor:
        """V(s)   -> (B,)."""
        return self.heads(obs)[1]


class CategoricalPolicy(ActorCritic):
    """Discrete actions: pi(a|s) = softmax(z)_a for the logits z = action_net(latent_pi).
    The MLP (``CategoricalActorCritic``) and the Nature CNN (``ppo_lib.atari``) add a body."""

    def get_distribution(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.heads(obs)[0])  # logits, not softmax probs

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> actions (B,) int64, values (B,), log_probs (B,)."""
        logits, values = self.heads(obs)
        actions, log_probs = self.sample(logits, deterministic)
        return actions, values, log_probs

    def sample(self, logits: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """An action (``draw``) and its log pi(a|s)   -> actions (B,) int64, log_probs (B,)."""
        actions = self.draw(logits, deterministic)
        return actions, categorical_log_prob(logits, actions)

    def draw(self, logits: Tensor, deterministic: bool = False) -> Tensor:
        """a ~ pi(.|s) from the logits (the most likely action if ``deterministic``)   -> (B,)
        int64."""
        return logits.argmax(-1) if deterministic else categorical_sample(logits)

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> values (B,), log_probs (B,), entropy (B,) of the given actions."""
        logits, values = self.heads(obs)
        log_probs, entropy = categorical_log_prob_entropy(logits, actions.long().reshape(-1))
        return values, log_probs, entropy


class MlpActorCritic(ActorCritic):
    """The MLP body both MLP policies share: the extractor, the value head and orthogonal
    init (the action head and its distribution are the subclass's)."""

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

    def latents(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return self.mlp_extractor(obs.float())

    def predict_values(self, obs: Tensor) -> Tensor:
        """V(s)   -> (B,), through the critic's layers only."""
        return self.value_net(self.mlp_extractor.forward_critic(obs.float())).squeeze(-1)


class CategoricalActorCritic(CategoricalPolicy, MlpActorCritic):
    """Discrete actions from an MLP: pi(a|s) = softmax(action_net(latent_pi))_a."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Discrete,
                 net_arch=None, activation_fn: type[nn.Module] = nn.Tanh,
                 ortho_init: bool = True):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"CategoricalActorCritic needs a Discrete action space, "
                             f"got {action_space}")
        super().__init__(observation_space, action_space, net_arch, activation_fn, ortho_init)
        self.action_net = nn.Linear(self.mlp_extractor.latent_dim_pi, int(action_space.n))
        self._init_weights()


class GaussianActorCritic(MlpActorCritic):
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

    def get_distribution(self, obs: Tensor) -> Normal:
        mean, _ = self.heads(obs)
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> actions (B, action_dim) unclipped, values (B,), log_probs (B,)."""
        mean, values = self.heads(obs)
        actions, log_probs = self.sample(mean, deterministic)
        return actions, values, log_probs

    def sample(self, mean: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """An action (``draw``) and its log pi(a|s)   -> actions (B, action_dim) unclipped,
        log_probs (B,)."""
        actions = self.draw(mean, deterministic)
        return actions, gaussian_log_prob(mean, self.log_std, actions)

    def draw(self, mean: Tensor, deterministic: bool = False) -> Tensor:
        """a = mu + sigma * eps, eps ~ N(0, I) (the mean if ``deterministic``)   -> actions
        (B, action_dim) unclipped."""
        if deterministic:
            return mean
        # a sample, not a reparameterised path: no gradient flows through it (as .sample())
        return (mean + self.log_std.exp() * torch.randn_like(mean)).detach()

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> values (B,), log_probs (B,), entropy (B,) of the given actions."""
        mean, values = self.heads(obs)
        entropy = gaussian_entropy(self.log_std).expand(mean.shape[0])
        return values, gaussian_log_prob(mean, self.log_std, actions), entropy


class MultiCategoricalActorCritic(MlpActorCritic):
    """MultiDiscrete(nvec) actions: one categorical per dimension j over its nvec[j] logits,
    the dimensions independent (SB3's MultiCategoricalDistribution): action_net has
    sum(nvec) outputs, split in order; log-probabilities and entropies add over dimensions.
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.MultiDiscrete,
                 net_arch=None, activation_fn: type[nn.Module] = nn.Tanh,
                 ortho_init: bool = True):
        if not isinstance(action_space, spaces.MultiDiscrete) or action_space.nvec.ndim != 1:
            raise ValueError(f"MultiCategoricalActorCritic needs a MultiDiscrete action space "
                             f"with a flat nvec, got {action_space}")
        super().__init__(observation_space, action_space, net_arch, activation_fn, ortho_init)
        self.nvec = [int(n) for n in action_space.nvec]
        self.action_net = nn.Linear(self.mlp_extractor.latent_dim_pi, sum(self.nvec))
        self._init_weights()

    def get_distribution(self, obs: Tensor) -> list[Categorical]:
        """One ``Categorical`` per action dimension (torch has no product distribution)."""
        return [Categorical(logits=z) for z in torch.split(self.heads(obs)[0], self.nvec, -1)]

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> actions (B, len(nvec)) int64, values (B,), log_probs (B,)."""
        logits, values = self.heads(obs)
        actions = multi_categorical_sample(logits, self.nvec, deterministic)
        return actions, values, multi_categorical_log_prob_entropy(logits, self.nvec, actions)[0]

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> values (B,), log_probs (B,), entropy (B,) of the given actions (B, len(nvec))."""
        logits, values = self.heads(obs)
        return values, *multi_categorical_log_prob_entropy(logits, self.nvec, actions.long())


class BernoulliActorCritic(MlpActorCritic):
    """MultiBinary(n) actions: bit j is 1 with probability sigmoid(z_j), the bits independent
    (SB3's BernoulliDistribution): action_net has n outputs, the logits z."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.MultiBinary,
                 net_arch=None, activation_fn: type[nn.Module] = nn.Tanh,
                 ortho_init: bool = True):
        if not isinstance(action_space, spaces.MultiBinary) or len(action_space.shape) != 1:
            raise ValueError(f"BernoulliActorCritic needs a flat MultiBinary(n) action space, "
                             f"got {action_space}")
        super().__init__(observation_space, action_space, net_arch, activation_fn, ortho_init)
        self.action_net = nn.Linear(self.mlp_extractor.latent_dim_pi, int(action_space.n))
        self._init_weights()

    def get_distribution(self, obs: Tensor) -> Independent:
        return Independent(Bernoulli(logits=self.heads(obs)[0]), 1)

    def forward(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> actions (B, n) int64 (0 or 1), values (B,), log_probs (B,)."""
        logits, values = self.heads(obs)
        actions = bernoulli_sample(logits, deterministic)
        return actions, values, bernoulli_log_prob_entropy(logits, actions)[0]

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> values (B,), log_probs (B,), entropy (B,) of the given actions (B, n)."""
        logits, values = self.heads(obs)
        return values, *bernoulli_log_prob_entropy(logits, actions)


def clip_actions(actions: np.ndarray, action_space: spaces.Space) -> np.ndarray:
    """Clip Box actions into the env's bounds (the log-prob stays the unclipped sample's)."""
    if isinstance(action_space, spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


def policy_class_for(action_space: spaces.Space) -> type[MlpActorCritic]:
    """"MlpPolicy" resolved by the action space, as SB3 does."""
    if isinstance(action_space, spaces.Discrete):
        return CategoricalActorCritic
    if isinstance(action_space, spaces.Box):
        return GaussianActorCritic
    if isinstance(action_space, spaces.MultiDiscrete):
        return MultiCategoricalActorCritic
    if isinstance(action_space, spaces.MultiBinary):
        return BernoulliActorCritic
    raise ValueError(f"action space {action_space} is not supported: use Discrete, Box, "
                     f"MultiDiscrete or MultiBinary")


def observation_batch(obs: Any, space: spaces.Space) -> tuple[np.ndarray, bool]:
    """``predict``'s ``obs`` as a batch (B, *shape) -> (batch, whether it was one obs)."""
    shape = tuple(space.shape)
    expected = (f"one observation of shape {shape} or a batch of shape "
                f"(n, {', '.join(map(str, shape))})")
    if isinstance(obs, torch.Tensor):
        obs = obs.detach().cpu().numpy()
    try:
        arr = None if isinstance(obs, (str, bytes, dict)) or obs is None else np.asarray(obs)
    except ValueError:  # a ragged list
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        raise TypeError(f"predict: obs must be an array of numbers, {expected}; got "
                        f"{type(obs).__name__} {obs!r:.80}")
    if arr.shape == shape:
        return arr[None], True
    if arr.shape[1:] == shape and arr.ndim == len(shape) + 1:
        return arr, False
    raise ValueError(f"predict: obs has shape {arr.shape}, but the model's observation space "
                     f"is {space}: pass {expected}")


def resolve_policy(policy) -> type[nn.Module] | None:
    """None for "MlpPolicy" (chosen by the action space), else the class."""
    if policy == "MlpPolicy":
        return None
    if policy == "CnnPolicy":
        from .atari import NatureCNNActorCritic  # atari imports this module
        return NatureCNNActorCritic
    if isinstance(policy, type) and issubclass(policy, nn.Module):
        return policy
    raise ValueError(f"policy must be 'MlpPolicy', 'CnnPolicy' or an actor-critic nn.Module "
                     f"class (e.g. ppo_lib.policies.CategoricalActorCritic), got {policy!r}")
