"""``collect_rollout`` with less bookkeeping per vector step (issue 15).

Lessons 04 and 05 show ``ppo_lib.rollout.collect_rollout``: per vector step it copies the
observation into a new tensor, writes six buffers through torch indexing and converts the
rewards and dones to new tensors. On CartPole's 8 envs that bookkeeping is about a tenth of
a vector step. ``collect_rollout_fast`` does the same steps with the same numbers:

    the buffers          written through numpy views of the rollout's tensors
                         (``Tensor.numpy()`` shares their memory): slice assignments
    the observation      copied into one preallocated tensor (64-byte aligned, as
                         ``obs_tensor``'s copy: the same last bits from the policy)
    rewards, dones       cast by the assignment into the float32 buffers (numpy's cast
                         rounds as ``astype`` does)
    the timeout check    ``truncated & ~terminated`` only when something was truncated
    the policy           ``policy.heads`` without ``nn.Module`` calls (``mlp_heads``: the
                         same products and activations), then ``policy.sample``, both
                         in ``torch.inference_mode`` (no_grad's numbers, cheaper calls)

Every env step, policy call, random draw, normaliser update and ``on_step`` call is
``collect_rollout``'s, in the same order; the timeout bootstrap is its code. It covers
ppo_lib's MLP policies for Discrete and Box actions on ppo_lib's vector envs with float32
observations, and returns None (nothing done) otherwise: call ``collect_rollout``.
tests/test_fast_rollout.py trains both ways and compares everything bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from .envs import VecEnv
from .fastpath import forward_layers, hook_check, mlp_layers, run_mlp, tree_hooked
from .normalization import Normalizer
from .policies import CategoricalActorCritic, GaussianActorCritic, clip_actions
from .rollout import Rollout, obs_tensor
from .vector_cartpole import CartPoleVecEnv

POLICIES = (CategoricalActorCritic, GaussianActorCritic)  # exactly these (not subclasses)
ENVS = (VecEnv, CartPoleVecEnv)
# methods the paths below skip, and draw, which they would run in inference mode
STOOD_IN_FOR = ("forward", "heads", "latents", "sample", "draw")


def plain(policy: torch.nn.Module) -> bool:
    """Exactly one of ``POLICIES``, with none of ``STOOD_IN_FOR`` replaced on the instance
    (``policy.forward = f`` would be skipped, ``policy.draw = f`` run in inference mode)."""
    return type(policy) in POLICIES and not any(name in vars(policy) for name in STOOD_IN_FOR)


def applies(policy: torch.nn.Module, env, rollout: Rollout, last_obs: np.ndarray) -> bool:
    """Whether ``collect_rollout_fast`` gives ``collect_rollout``'s numbers for these."""
    return (plain(policy) and type(env) in ENVS
            and isinstance(env.action_space, (spaces.Discrete, spaces.Box))
            and rollout.obs.dtype == torch.float32
            and isinstance(last_obs, np.ndarray) and last_obs.dtype == np.float32
            and last_obs.shape == tuple(rollout.obs.shape[1:]))


def mlp_heads(policy: torch.nn.Module) -> Callable[[torch.Tensor], tuple] | None:
    """``policy.heads`` for ``obs`` without autograd and without the ``nn.Module`` calls
    around its layers (about a sixth of a rollout's policy call): ``fastpath.forward_layers``
    on the MLP's layer lists, the same products and activations. None if a layer is of
    another kind or a module has a forward hook (``policy(obs)`` runs it): call the policy."""
    ex = policy.mlp_extractor
    nets = [mlp_layers(list(net)) for net in (ex.shared_net, ex.policy_net, ex.value_net,
                                              [policy.action_net], [policy.value_net])]
    if any(layers is None for layers in nets) or tree_hooked(policy):
        return None
    shared, pi, vf, action_head, value_head = nets
    pi, vf = pi + action_head, vf + value_head

    def heads(obs):
        trunk = forward_layers(shared, obs)
        return forward_layers(pi, trunk), forward_layers(vf, trunk).squeeze(-1)

    return heads


def fast_actions(policy: torch.nn.Module, obs: torch.Tensor, deterministic: bool = False,
                 ) -> torch.Tensor | None:
    """``policy(obs, deterministic)[0]`` bit for bit from the actor's layers alone (the same
    products, tanh and random draws, ``policy.draw``; no critic, no log-probability, no
    ``nn.Module`` calls): ``PPO.predict``'s path, about half of its time on a CartPole
    batch. None where it does not apply (another policy class, a method replaced on the
    instance, a forward hook, which calling the policy runs): call the policy."""
    if not plain(policy) or tree_hooked(policy):
        return None
    ex = policy.mlp_extractor
    latent = run_mlp(ex.policy_net, run_mlp(ex.shared_net, obs.float()))
    head = F.linear(latent, policy.action_net.weight, policy.action_net.bias)
    return policy.draw(head, deterministic)


def collect_rollout_fast(policy: torch.nn.Module, env: VecEnv, rollout: Rollout,
                         last_obs: np.ndarray, gamma: float,
                         normalizer: Normalizer | None = None,
                         on_step: Callable[[], bool] | None = None
                         ) -> tuple[np.ndarray, bool] | None:
    """``collect_rollout(policy, env, rollout, last_obs, gamma, normalizer, on_step)``, bit
    for bit -> (observation after the last step, whether it ran to the end); None where it
    does not apply (nothing collected, nothing stepped)."""
    if not applies(policy, env, rollout, last_obs):
        return None
    action_space = env.action_space
    box = isinstance(action_space, spaces.Box)  # clip_actions changes only Box actions
    obs = torch.empty(rollout.obs.shape[1:], dtype=torch.float32)  # the policy input (N, ...)
    obs_in = obs.numpy()
    obs_buf, actions_buf, rewards_buf, dones_buf, values_buf, log_probs_buf = (
        x.numpy() for x in (rollout.obs, rollout.actions, rollout.rewards, rollout.dones,
                            rollout.values, rollout.log_probs))
    with torch.no_grad():
        heads, hooked_now = mlp_heads(policy), hook_check(list(policy.modules()))
        for t in range(rollout.n_steps):
            obs_in[...] = last_obs
            obs_buf[t] = obs_in
            if heads is not None:  # none of the user's code runs here (plain): inference mode,
                with torch.inference_mode():  # no_grad's numbers, less dispatch per call
                    head, values = heads(obs)
                    actions, log_probs = policy.sample(head)
            else:
                actions, values, log_probs = policy(obs)
            env_actions = actions.numpy()
            if box:
                env_actions = clip_actions(env_actions, action_space)  # the notes' error 9
            next_obs, rewards, terminated, truncated, infos = env.step(env_actions)
            dones = terminated | truncated
            if normalizer is not None:
                next_obs = normalizer.obs(next_obs, update=True)
                rewards = normalizer.reward(rewards, dones)
            if truncated.any():
                timeouts = truncated & ~terminated
                if timeouts.any():  # bootstrap: collect_rollout's code
                    final_obs = infos["final_obs"][timeouts]
                    if normalizer is not None:
                        final_obs = normalizer.obs(final_obs)
                    final_values = policy.predict_values(obs_tensor(final_obs)).numpy()
                    rewards = rewards.astype(np.float32, copy=True)
                    rewards[timeouts] += gamma * final_values
            actions_buf[t] = actions.numpy()
            values_buf[t] = values.numpy()
            log_probs_buf[t] = log_probs.numpy()
            rewards_buf[t] = rewards
            dones_buf[t] = dones
            last_obs = next_obs
            if on_step is not None:
                if on_step() is False:
                    return last_obs, False
                if heads is not None and (hooked_now() or not plain(policy)):  # a callback
                    heads = None  # added a hook or replaced a method: call the policy
        rollout.last_values[:] = policy.predict_values(obs_tensor(last_obs))
    return last_obs, True
