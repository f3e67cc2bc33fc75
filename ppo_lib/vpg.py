"""Vanilla policy gradient (REINFORCE), with an optional learned baseline (lesson 01).

The algorithm box (Williams 1992; Spinning Up's "VPG"):

    for iteration k = 0, 1, ...:
        1. run the policy pi_theta for one episode in each of N envs       collect_episodes
        2. reward-to-go  G_t = sum_{t' >= t} gamma^(t'-t) r_t'               (inside it)
        3. advantages    A_t = G_t - V(s_t)   (V = 0 without a baseline)     baseline_advantages
        4. one gradient step on  loss_pg = -L^PG = -mean_t log pi A_t        policy_update
        5. fit V(s_t) to G_t by regression                                   fit_value_function

L^PG = mean_t log pi_theta(a_t|s_t) A_t is the objective (maximised) whose gradient is the
policy gradient theorem's estimate grad J = E[ grad log pi_theta(a_t|s_t) A_t ]; the code
minimises the loss loss_pg = -L^PG (lesson 01, eq. 1.2). Nothing limits how far one step moves the
policy: that is the collapse lesson 01 shows and lessons 02-03 fix.

Policies here are plain ``nn.Module`` s mapping observations (B, obs_dim) to logits
(B, n_actions); actions are drawn from ``Categorical(logits=...)``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from .distributions import categorical_sample_multinomial
from .grad_mode import check_trainable, trains
from .kl import categorical_mean_kl
from .losses import policy_gradient_loss
from .returns import discounted_returns
from .validation import check_in_range, check_positive_int, check_tensor

if TYPE_CHECKING:  # gymnasium is imported by make_env only: the maths needs torch alone
    import gymnasium as gym


def mlp_with_linear_output(sizes: Sequence[int],
                           activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """A whole network from ``sizes[0]`` inputs to ``sizes[-1]`` outputs: Linear layers
    between consecutive sizes with ``activation`` between them, none after the last layer
    (the outputs are logits or a value). PyTorch's default initialisation.

    Unlike ``ppo_lib.policies.mlp(in_dim, sizes)``, the hidden trunk of the actor-critics
    (an activation after every layer; the heads are separate, orthogonally initialised
    layers), this one includes the output layer.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


mlp = mlp_with_linear_output  # the name lesson 02 imports: mlp([4, 6, 2])

# One action per row drawn from Categorical(logits=logits), (B,): softmax, then
# torch.multinomial. VPG and TRPO keep this random stream (PPO's policies draw by Gumbel-max,
# ``distributions.categorical_sample``: the same distribution, other random numbers).
sample_actions = categorical_sample_multinomial


def make_env(env_id: str = "CartPole-v1", n_envs: int = 16) -> gym.vector.VectorEnv:
    """``n_envs`` copies of a discrete-action gymnasium env as one vector env."""
    import gymnasium as gym

    check_positive_int("n_envs", n_envs)
    envs = gym.make_vec(env_id, num_envs=n_envs)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"env_id must name an env with discrete actions (vpg uses a "
                         f"categorical policy), got {env_id!r} with action space "
                         f"{envs.single_action_space}")
    return envs


def make_policy(envs: gym.vector.VectorEnv, hidden: Sequence[int] = (32,)) -> nn.Sequential:
    """An MLP from observations to one logit per action."""
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    return mlp_with_linear_output([obs_dim, *hidden, int(envs.single_action_space.n)])


def make_value_function(envs: gym.vector.VectorEnv,
                        hidden: Sequence[int] = (32,)) -> nn.Sequential:
    """An MLP from observations to one value V(s) (shape (B, 1); squeeze the last axis)."""
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    return mlp_with_linear_output([obs_dim, *hidden, 1])


@dataclass
class EpisodeBatch:
    """Every step of N complete episodes, flattened to (B,) with B = total steps."""

    obs: Tensor              # (B, obs_dim)  s_t
    actions: Tensor          # (B,)          a_t
    returns: Tensor          # (B,)          reward-to-go G_t
    episode_returns: Tensor  # (N,)          undiscounted return of each episode

    @property
    def n_steps(self) -> int:
        return int(self.actions.shape[0])


def collect_episodes(envs: gym.vector.VectorEnv, policy: nn.Module, gamma: float = 0.99,
                     seed: int | None = None, deterministic: bool = False) -> EpisodeBatch:
    """Run ``policy`` for exactly one episode in each env of ``envs``.

    Steps of an env after its episode ended are masked out (the vector env auto-resets,
    and those steps belong to the next episode). Rewards after the end are zero, so a
    backward discounted sum over the whole (T, N) block gives each step's reward-to-go.
    A time-limit truncation (500 steps in CartPole-v1) ends the episode like a
    termination here: REINFORCE estimates the return of whole, finite episodes.
    """
    check_in_range("gamma", gamma, 0.0, 1.0)
    obs, _ = envs.reset(seed=seed)
    alive = np.ones(envs.num_envs, dtype=bool)
    obs_steps, action_steps, reward_steps, alive_steps = [], [], [], []
    with torch.no_grad():
        while alive.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            logits = policy(obs_t)
            actions = logits.argmax(dim=-1) if deterministic else sample_actions(logits)
            obs, rewards, terminated, truncated, _ = envs.step(actions.numpy())
            obs_steps.append(obs_t)
            action_steps.append(actions)
            reward_steps.append(np.where(alive, rewards, 0.0))
            alive_steps.append(alive.copy())
            alive = alive & ~(terminated | truncated)
    mask = torch.as_tensor(np.stack(alive_steps))                              # (T, N)
    rewards = torch.as_tensor(np.stack(reward_steps), dtype=torch.float32)    # (T, N)
    returns = discounted_returns(rewards, torch.zeros_like(rewards), gamma)   # (T, N)
    return EpisodeBatch(obs=torch.stack(obs_steps)[mask], actions=torch.stack(action_steps)[mask],
                        returns=returns[mask], episode_returns=rewards.sum(dim=0))


def baseline_advantages(returns: Tensor, values: Tensor, normalize: bool = True) -> Tensor:
    """REINFORCE advantages with a baseline (lesson 01, eq. 1.3).

        A_t = G_t - V(s_t),   then, if ``normalize``,  A_t <- (A_t - mean A) / (std A + 1e-8)

    The baseline V(s_t) is a constant for the policy gradient: no gradient flows through
    it (subtracting it changes the variance of the estimate, not its mean).
    """
    check_tensor("returns", returns)
    check_tensor("values", values)
    if values.shape != returns.shape:
        raise ValueError(f"values has shape {tuple(values.shape)} but returns has shape "
                         f"{tuple(returns.shape)}; they must match")
    advantages = returns - values.detach()
    if normalize and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def policy_update(policy: nn.Module, optimizer: torch.optim.Optimizer, batch: EpisodeBatch,
                  advantages: Tensor, loss_fn: Callable = policy_gradient_loss) -> float:
    """One gradient step on loss_pg = -L^PG = -mean_t log pi_theta(a_t|s_t) A_t.

    Returns loss_pg (before the step)."""
    log_probs = Categorical(logits=policy(batch.obs)).log_prob(batch.actions)
    loss = loss_fn(log_probs, advantages)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def fit_value_function(value_fn: nn.Module, optimizer: torch.optim.Optimizer, obs: Tensor,
                       returns: Tensor, n_iters: int = 20) -> float:
    """Regress V(s_t) on G_t with ``n_iters`` full-batch steps; returns the last MSE."""
    for _ in range(n_iters):
        loss = ((value_fn(obs).squeeze(-1) - returns) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


@dataclass
class TrainingResult:
    """A trained policy (and critic) with one row of statistics per iteration."""

    policy: nn.Module
    value_fn: nn.Module | None
    history: list[dict] = field(default_factory=list)

    def get(self, key: str) -> list:
        """One column of ``history``, e.g. ``result.get("mean_return")``."""
        return [row[key] for row in self.history]


@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def train_vpg(env_id: str = "CartPole-v1", n_iterations: int = 60, n_envs: int = 16,
              learning_rate: float = 1e-2, gamma: float = 0.99, baseline: bool = True,
              normalize_advantage: bool = True, hidden: Sequence[int] = (32,),
              vf_learning_rate: float = 1e-2, vf_iters: int = 20,
              total_timesteps: int | None = None, seed: int = 0,
              policy: nn.Module | None = None, value_fn: nn.Module | None = None,
              optimizer: str = "adam", loss_fn: Callable = policy_gradient_loss,
              advantage_fn: Callable | None = None) -> TrainingResult:
    """REINFORCE: ``n_iterations`` of (``n_envs`` episodes, one policy step).

    ``policy`` / ``value_fn`` continue training existing networks (else new ones, seeded).
    ``optimizer`` is "adam" or "sgd" (plain gradient descent, step = learning_rate * grad).
    Stops early once ``total_timesteps`` env steps have been used, if given.
    ``loss_fn`` (signature of ``ppo_lib.losses.policy_gradient_loss``) and ``advantage_fn``
    (signature of ``baseline_advantages``) swap in the learner's own pieces (lesson 01).
    History rows: iteration, timesteps (cumulative), mean_return, min_return, max_return,
    n_episodes, policy_loss, kl (mean KL(pi_old || pi_new) over the batch's states, how far
    the update moved the policy), time (seconds since start).
    """
    check_positive_int("n_iterations", n_iterations)
    check_in_range("learning_rate", learning_rate, 0.0, float("inf"), low_open=True)
    check_trainable("policy", policy)
    check_trainable("value_fn", value_fn)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if total_timesteps is not None:
        check_positive_int("total_timesteps", total_timesteps)
    advantage_fn = advantage_fn if advantage_fn is not None else baseline_advantages
    torch.manual_seed(seed)
    envs = make_env(env_id, n_envs)
    policy = policy if policy is not None else make_policy(envs, hidden)
    if baseline and value_fn is None:
        value_fn = make_value_function(envs, hidden)
    optimizer_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    pi_optimizer = optimizer_cls(policy.parameters(), lr=learning_rate)
    vf_optimizer = (torch.optim.Adam(value_fn.parameters(), lr=vf_learning_rate)
                    if baseline else None)
    result = training_loop(envs, policy, value_fn if baseline else None, vf_optimizer,
                           functools.partial(vpg_step, policy, pi_optimizer, loss_fn),
                           n_iterations, gamma, seed, advantage_fn, normalize_advantage,
                           vf_iters, total_timesteps)
    envs.close()
    return result


def vpg_step(policy: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
             batch: EpisodeBatch, advantages: Tensor) -> dict[str, float]:
    """Step 4 of the box (``policy_update``) and how far it moved the policy: a history row's
    policy_loss and kl = mean KL(pi_old || pi_new) over the batch's states."""
    with torch.no_grad():
        old_logits = policy(batch.obs)
    loss = policy_update(policy, optimizer, batch, advantages, loss_fn)
    with torch.no_grad():
        kl = categorical_mean_kl(old_logits, policy(batch.obs))
    return dict(policy_loss=loss, kl=kl.item())


def training_loop(envs: gym.vector.VectorEnv, policy: nn.Module, value_fn: nn.Module | None,
                  vf_optimizer: torch.optim.Optimizer | None,
                  policy_step: Callable[[EpisodeBatch, Tensor], dict[str, float]],
                  n_iterations: int, gamma: float, seed: int | None,
                  advantage_fn: Callable = baseline_advantages,
                  normalize_advantage: bool = True, vf_iters: int = 20,
                  total_timesteps: int | None = None) -> TrainingResult:
    """The algorithm box's loop, shared by ``train_vpg`` and ``ppo_lib.trpo.train_trpo``,
    which differ only in step 4: ``policy_step(batch, advantages)`` updates the policy and
    returns the statistics to add to the iteration's history row. Without a critic
    (``value_fn`` None) the advantages are computed from V = 0 and step 5 is skipped.
    The first iteration resets the envs with ``seed``.
    """
    result = TrainingResult(policy, value_fn)
    timesteps, start = 0, time.perf_counter()
    for iteration in range(n_iterations):
        batch = collect_episodes(envs, policy, gamma, seed=seed if iteration == 0 else None)
        with torch.no_grad():
            values = (value_fn(batch.obs).squeeze(-1) if value_fn is not None
                      else torch.zeros_like(batch.returns))
        advantages = advantage_fn(batch.returns, values, normalize_advantage)
        stats = policy_step(batch, advantages)
        if value_fn is not None:
            fit_value_function(value_fn, vf_optimizer, batch.obs, batch.returns, vf_iters)
        timesteps += batch.n_steps
        result.history.append(iteration_stats(iteration, timesteps, batch, start, **stats))
        if total_timesteps is not None and timesteps >= total_timesteps:
            break
    return result


def iteration_stats(iteration: int, timesteps: int, batch: EpisodeBatch, start: float,
                    **extra: float) -> dict:
    """One history row of ``training_loop``."""
    episode_returns = batch.episode_returns
    return dict(iteration=iteration, timesteps=timesteps,
                mean_return=episode_returns.mean().item(),
                min_return=episode_returns.min().item(),
                max_return=episode_returns.max().item(),
                n_episodes=int(episode_returns.numel()),
                time=time.perf_counter() - start, **extra)


def evaluate(policy: nn.Module, env_id: str = "CartPole-v1", n_episodes: int = 20,
             seed: int = 0, deterministic: bool = False) -> Tensor:
    """Undiscounted returns of ``n_episodes`` episodes of ``policy`` (seeded), (n_episodes,)."""
    check_positive_int("n_episodes", n_episodes)
    envs = make_env(env_id, n_episodes)
    with torch.random.fork_rng():   # seeded, without disturbing the caller's random stream
        torch.manual_seed(seed)
        batch = collect_episodes(envs, policy, gamma=1.0, seed=seed, deterministic=deterministic)
    envs.close()
    return batch.episode_returns
