"""Seeds in lockstep: K seeds of one PPO configuration trained together (lessons 07, 08, 10).

A sweep compares a configuration over several seeds. Trained one after another, each seed
pays Python's and torch's per-operation overhead on tiny CartPole tensors. Here the K seeds
share one batched network: every parameter gets a seed axis in front (a weight (K, out, in),
``torch.baddbmm`` / ``torch.bmm`` instead of ``addmm`` / ``mm``), and one operation does the
work of K. Yet each seed gets *exactly* what it would get alone:

    train_seeds(config, env_id, seeds, N)[k]  ==  PPO("MlpPolicy", env_id, seed=seeds[k],
                                                       **config).learn(N)

bit for bit: logger rows (but for time/*), policy and optimizer state, env state. That takes
care, because the low bits of a float32 result can depend on how an operation is batched:

* the random streams: each seed draws from its own ``torch.Generator`` started at the global
  state ``PPO(seed=s)`` leaves (python, numpy and torch seeded, the policy initialised), in
  the same order and sizes as the lone run (actions while collecting, ``randperm`` for the
  minibatches);
* the network (``ppo_lib.seed_batch``): each batched operation is one that gives every
  seed's slice the lone run's bits (matrix products on aligned slices, exp / log laid out
  row by row, the advantages' std written out as torch computes it), or runs per seed;
* the envs: each model's own, or for the vectorised CartPole one env of K x n carts whose
  group k draws what seed k's env would (``SeedEnvs``);
* threads: each seed equals its lone run *on one torch thread* (as lessons 07 / 08 and
  ``run_grid`` train), and ``train_seeds`` runs on one thread (restored after). A lone
  run's own last bits depend on the thread count (HEALTHY's and Pendulum's weights differ
  between 1 and 2 threads: torch splits the matrix products), and a K-times larger batched
  operation would be split where the lone one is not.

* cores: one batched network runs on one core. ``train_seeds`` splits the K seeds into one
  group per usable core and trains the groups at once, each in a process of its own
  (``ppo_lib.seed_processes``: this one and forked children), so a group's numbers do not
  depend on the others; a group of one seed is its lone run.

``supports_lockstep(config, env_id)`` says whether a configuration can run so; anything else
(target_kl, kl_penalty, loss_fn, advantage_fn, CnnPolicy, other action spaces) trains its
seeds one after another with ``PPO`` (same results, no speed-up).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from .fastpath import fast_gradient_step
from .grad_mode import trains
from .logger import train_row
from .policies import CategoricalActorCritic, GaussianActorCritic
from .returns import gae
from .rollout import Rollout, check_finite, obs_tensor
from .seed_batch import SeedPolicy, approx_kl, clip_fractions, normalized_advantages
from .seed_envs import SeedEnvs, after_env_step
from .seed_layers import aligned_empty
from .seed_processes import check_processes, check_seeds, seed_groups, train_groups
from .validation import check_finite_parameters, check_positive_int

# Configuration keys lockstep trains exactly (others, e.g. target_kl, fall back to PPO)
SUPPORTED_KEYS = {
    "n_envs", "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
    "clip_range", "clip_range_vf", "normalize_advantage", "ent_coef", "vf_coef",
    "max_grad_norm", "normalize_obs", "normalize_reward", "policy_kwargs",
    "vectorization_mode", "target_kl", "kl_penalty", "loss_fn", "advantage_fn", "verbose",
    "tensorboard_log", "kl_penalty_target"}
SUPPORTED_POLICY_KWARGS = {"net_arch", "activation_fn", "ortho_init", "optimizer_kwargs",
                           "log_std_init"}


# --- which configurations ------------------------------------------------------------------
def lockstep_problem(config: Mapping[str, Any], env_id: Any = "CartPole-v1",
                     policy: Any = "MlpPolicy") -> str | None:
    """Why ``config`` cannot train in lockstep (a sentence), or None when it can."""
    if policy != "MlpPolicy":
        return f"policy={policy!r}: lockstep batches the MLP policies only ('MlpPolicy')"
    if not isinstance(env_id, str):
        return f"env={env_id!r}: lockstep builds its envs from an env id string"
    unknown = sorted(set(config) - SUPPORTED_KEYS)
    if unknown:
        return f"config keys {unknown} are not batched by lockstep"
    for key in ("target_kl", "kl_penalty", "loss_fn", "advantage_fn", "tensorboard_log"):
        if config.get(key) is not None:
            return f"{key}={config[key]!r}: lockstep runs the plain clipped loss only"
    if config.get("verbose", 0):
        return f"verbose={config['verbose']!r}: lockstep prints nothing"
    kwargs = dict(config.get("policy_kwargs") or {})
    unknown = sorted(set(kwargs) - SUPPORTED_POLICY_KWARGS)
    if unknown:
        return f"policy_kwargs keys {unknown} are not batched by lockstep"
    activation = kwargs.get("activation_fn", nn.Tanh)
    if activation not in (nn.Tanh, nn.ReLU):
        return f"activation_fn={activation!r}: lockstep batches Tanh and ReLU"
    optimizer = dict(kwargs.get("optimizer_kwargs") or {})
    if set(optimizer) - {"eps", "betas"}:
        return f"optimizer_kwargs={optimizer!r}: lockstep batches Adam's eps and betas only"
    import gymnasium as gym
    from gymnasium import spaces

    try:
        env = gym.make(env_id)
    except Exception as error:  # noqa: BLE001 - PPO itself will say what is wrong
        return f"env_id={env_id!r} cannot be made here ({type(error).__name__})"
    action_space = env.action_space
    env.close()
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        return f"action space {action_space}: lockstep batches Discrete and Box actions"
    return None


def supports_lockstep(config: Mapping[str, Any], env_id: Any = "CartPole-v1",
                      policy: Any = "MlpPolicy") -> bool:
    """Whether ``train_seeds`` trains ``config``'s seeds in lockstep (else one after another;
    ``lockstep_problem`` says why)."""
    return lockstep_problem(config, env_id, policy) is None


# --- the public entry point ----------------------------------------------------------------
@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def train_seeds(config: Mapping[str, Any], env_id: str, seeds: Sequence[int],
                total_timesteps: int, policy: str = "MlpPolicy", progress_bar: bool = False,
                lockstep: bool = True, processes: int | None = None) -> list:
    """Train ``PPO(policy, env_id, seed=s, **config).learn(total_timesteps)`` for every seed s
    -> the K trained ``PPO`` models, in the order of ``seeds``, each exactly the lone run's
    on one torch thread (policy, optimizer, logger rows but for time/*, env, normaliser,
    num_timesteps).

    The lone run leaves torch's global random state behind, and a model goes on from it
    when trained further (``learn(..., reset_num_timesteps=False)``); K models cannot share
    one, so each gets it as ``model.lockstep_rng_state``: ``torch.set_rng_state(it)`` before
    training a model further continues it exactly as the lone run (None: the model was
    trained alone, the global state is its own).

    In lockstep (one batched network per group of seeds) when ``lockstep`` and
    ``supports_lockstep(config, env_id)``, the seeds split into ``processes`` groups trained
    at once, one per process (None: one per usable core; ``ppo_lib.seed_processes``), a
    group of one seed by its lone run; otherwise one after another in this process.
    """
    from .ppo import PPO

    seeds = check_seeds(seeds)
    check_positive_int("total_timesteps", total_timesteps)
    processes = check_processes(processes)
    if not lockstep or lockstep_problem(config, env_id, policy) is not None:
        return [_lone(PPO(policy, env_id, seed=seed, **config), total_timesteps, progress_bar)
                for seed in seeds]
    train = partial(_train_group, config, env_id, total_timesteps=total_timesteps,
                    policy=policy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the lone run on one thread is what each seed reproduces
    try:
        return train_groups(train, seed_groups(seeds, processes),
                            total_timesteps * len(seeds) if progress_bar else None,
                            prepare=_without_fast_path, finish=_with_fast_path)
    finally:
        torch.set_num_threads(threads)


def _train_group(config: Mapping[str, Any], env_id: str, seeds: list[int],
                 bar_total: int | None, *, total_timesteps: int, policy: str) -> list:
    """One group of seeds in this process, on one torch thread: in lockstep, or a lone seed
    alone (its own fast paths) -> the trained models. ``bar_total``: a progress bar of that
    many steps (the steps of every group: the groups go at the same pace; a lone seed's bar
    counts its own)."""
    from .ppo import PPO

    if len(seeds) == 1:
        model = PPO(policy, env_id, seed=seeds[0], **config)
        model.learn(total_timesteps, progress_bar=bar_total is not None)
        model.lockstep_rng_state = torch.get_rng_state()
        return [model]
    models, generators = [], []
    for seed in seeds:
        models.append(PPO(policy, env_id, seed=seed, **config))
        generator = torch.Generator()  # the global state this seed's lone run goes on from
        generator.set_state(torch.get_rng_state())
        generators.append(generator)
    if any(type(m.policy) not in (CategoricalActorCritic, GaussianActorCritic)
           or fast_gradient_step(m.policy, m.optimizer) is None for m in models):
        # not the written-out step's MLP: each seed alone, made again (the global
        # random state is the last model's now), as a group of one
        return [model for seed in seeds for model in _train_group(
            config, env_id, [seed], bar_total, total_timesteps=total_timesteps, policy=policy)]
    bar_seeds = None if bar_total is None else bar_total // total_timesteps
    Lockstep(models, generators).learn(total_timesteps, bar_seeds)
    for model, generator in zip(models, generators):
        model.lockstep_rng_state = generator.get_state()
    return models


def _without_fast_path(model) -> None:
    """Before pickling: the fast path holds kernel functions (remade by ``_with_fast_path``)."""
    model._gradient_step = None


def _with_fast_path(model) -> None:
    """A trained model's parameters and Adam state into buffers of its own (the same values),
    as a lone run holds them: the K seeds' batched buffers can go."""
    model._gradient_step = fast_gradient_step(model.policy, model.optimizer)


def _lone(model, total_timesteps: int, progress_bar: bool):
    """A model trained alone (global random state): ``lockstep_rng_state`` None."""
    model.learn(total_timesteps, progress_bar=progress_bar)
    model.lockstep_rng_state = None
    return model


class Lockstep:
    """K ``PPO`` models of one configuration (made by ``PPO(seed=s)``, not trained yet)
    trained together; ``generators[k]`` holds the torch random state seed k's lone run has
    at the start of ``learn``.

    The network (``seed_batch.SeedPolicy``) holds the K models' parameters, gradients and
    Adam state in one buffer, and the rollout is one (K, T, N, ...) buffer; each model's
    parameters, optimizer state and Rollout are views of its row, so the models always hold
    their current state.
    """

    def __init__(self, models: list, generators: list[torch.Generator]):
        self.models, self.generators = models, generators
        self.K = len(models)
        first = models[0]
        self.net = SeedPolicy(models)
        self.envs = SeedEnvs(models)
        # one rollout buffer (K, T, N, ...) for all; model k's Rollout is row k (contiguous)
        one = Rollout.allocate(first.n_steps, first.n_envs, first.observation_space,
                               first.action_space)  # a lone run's buffers: shapes, dtypes
        buffers = [getattr(one, f.name) for f in fields(Rollout)]
        self.rollout = Rollout(*(torch.zeros(self.K, *x.shape, dtype=x.dtype) for x in buffers))
        rows = [getattr(self.rollout, f.name) for f in fields(Rollout)]
        for k, model in enumerate(models):
            model.rollout = Rollout(*(x[k] for x in rows))

    # --- training loop ------------------------------------------------------------------
    def learn(self, total_timesteps: int, bar_seeds: int | None = None) -> None:
        """``PPO.learn(total_timesteps)`` for every model (fresh: num_timesteps from 0).
        ``bar_seeds``: a progress bar counting the steps of that many seeds (None: none)."""
        from .callbacks import as_callback

        models = self.models
        for model, obs in zip(models, self.envs.reset()):
            model.num_timesteps, model.n_updates = 0, 0
            if model.normalizer is not None:  # as PPO.reset_env
                model.normalizer.returns[:] = 0.0
                obs = model.normalizer.obs(obs, update=True)
            model.last_obs = obs
            model._callback = as_callback(None)
            model._callback.init_callback(model)
        bar = None
        if bar_seeds is not None:
            from tqdm.auto import tqdm
            bar = tqdm(total=total_timesteps * bar_seeds, unit="steps")
            bar.seeds = bar_seeds
        start_time = time.perf_counter()
        try:
            while models[0].num_timesteps < total_timesteps:
                self.collect(bar)
                for model in models:
                    check_finite(model.rollout, model.num_timesteps, model.lr_schedule(1.0))
                self.compute_advantages()
                progress = max(0.0, 1.0 - models[0].num_timesteps / total_timesteps)
                rows = self.train(progress)
                elapsed = max(time.perf_counter() - start_time, 1e-9)
                for k, (model, row) in enumerate(zip(models, rows)):
                    steps = model.num_timesteps
                    model.logger.record({**self.envs.rollout_row(k),
                                         "time/fps": int(steps / elapsed),
                                         "time/iterations": len(model.logger.rows) + 1,
                                         "time/time_elapsed": elapsed,
                                         "time/total_timesteps": steps, **row})
        finally:
            if bar is not None:
                bar.close()
            self.envs.hand_back()

    def compute_advantages(self) -> None:
        """GAE for all seeds in one call: ``returns.gae`` on the (T, K x N) rollout, each
        env a column (its arithmetic is elementwise: the same numbers as per seed)."""
        r, first = self.rollout, self.models[0]
        K, T, N = r.rewards.shape
        advantages, returns = gae(_columns(r.rewards), _columns(r.values), _columns(r.dones),
                                  r.last_values.reshape(K * N), first.gamma,
                                  first.gae_lambda)
        r.advantages.copy_(advantages.view(T, K, N).transpose(0, 1))
        r.returns.copy_(returns.view(T, K, N).transpose(0, 1))

    def collect(self, bar=None) -> None:
        """``collect_rollout`` for the K models: one batched forward pass per step, each
        model's env, normaliser and random stream its own (the vectorised CartPole without
        normalisers: one env step and one batch of rewards and dones for all, written
        through numpy views as ``collect_rollout_fast`` writes them)."""
        models, K, n = self.models, self.K, self.models[0].n_envs
        rollout, together = self.rollout, self.envs.together()
        T = rollout.obs.shape[1]
        obs_buf, actions_buf, values_buf, log_probs_buf, rewards_buf, dones_buf = (
            x.numpy() for x in (rollout.obs, rollout.actions, rollout.values,
                                rollout.log_probs, rollout.rewards, rollout.dones))
        with torch.no_grad():
            obs = torch.stack([obs_tensor(m.last_obs) for m in models])
            if together:
                obs_in = aligned_empty(*obs.shape)  # the next observations, one buffer
                carts_in = obs_in.numpy().reshape(K * n, -1)
            for t in range(T):
                head, values = self.net.heads(obs)
                actions, log_probs = self.net.sample(head, self.generators)
                obs_buf[:, t] = obs.numpy()
                actions_buf[:, t] = actions.numpy()
                values_buf[:, t] = values.numpy()
                log_probs_buf[:, t] = log_probs.numpy()
                if together:
                    carts, rewards, dones = self.envs.step_together(actions)
                    rewards_buf[:, t] = rewards.reshape(K, n)
                    dones_buf[:, t] = dones.reshape(K, n)
                    carts_in[...] = carts
                    obs = obs_in
                else:
                    for k, (model, result) in enumerate(zip(models, self.envs.step(actions))):
                        model.last_obs, rewards, dones = after_env_step(model, *result)
                        rollout.rewards[k, t] = rewards
                        rollout.dones[k, t] = dones
                        model.num_timesteps += n
                    obs = torch.stack([obs_tensor(m.last_obs) for m in models])
                if bar is not None:
                    bar.update(bar.seeds * n)
            if together:  # each model's last observations and steps
                for k, model in enumerate(models):
                    model.last_obs = carts[k * n:(k + 1) * n]
                    model.num_timesteps += n * T
            rollout.last_values[:] = self.net.heads(obs)[1]

    # --- the update ---------------------------------------------------------------------
    # as full_batch_update: no graph (so fastpath.tanh is numpy's), less dispatch per call;
    # everything it writes into (parameters, Adam's state, rollout) was made outside it
    @torch.inference_mode()
    def train(self, progress_remaining: float) -> list[dict[str, float]]:
        """``PPO.train`` (the fast path) for the K models -> their logged rows."""
        models, K = self.models, self.K
        first = models[0]
        learning_rate, clip_range, clip_range_vf = first._scheduled(progress_remaining)
        for model in models:
            model._scheduled(progress_remaining)
            for group in model.optimizer.param_groups:
                group["lr"] = learning_rate
        clip_range = max(clip_range, 1e-8)
        rollout = self.rollout
        n = rollout.rewards[0].numel()
        flat = [rollout.obs.flatten(1, 2), rollout.actions.flatten(1, 2),
                rollout.values.flatten(1), rollout.log_probs.flatten(1),
                rollout.advantages.flatten(1), rollout.returns.flatten(1)]
        seed_index = torch.arange(K).unsqueeze(1)
        normalize = first.normalize_advantage and min(first.batch_size, n) > 1
        if first.batch_size >= n and normalize:  # one minibatch, the whole rollout: its
            flat[4] = normalized_advantages(flat[4])  # advantages normalised once (as
            normalize = False                          # full_batch_update), not per epoch
        terms, ratios, kls = [], [], []  # per minibatch: (policy, value, entropy), ratio
        for epoch in range(first.n_epochs):
            kls = []
            if first.batch_size >= n:
                batches = [flat]
            else:  # each seed's shuffle from its own generator, as rollout.minibatches
                orders = torch.stack([torch.randperm(n, generator=g) for g in self.generators])
                batches = [[x[seed_index, orders[:, s:s + first.batch_size]] for x in flat]
                           for s in range(0, n, first.batch_size)]
            for obs, actions, old_values, old_log_probs, advantages, returns in batches:
                if normalize and advantages.shape[1] > 1:
                    advantages = normalized_advantages(advantages)
                total, policy, value, entropy, log_ratio, ratio = self.net.loss(
                    obs, actions, old_log_probs, advantages, returns, clip_range,
                    first.vf_coef, first.ent_coef, old_values, clip_range_vf)
                terms.append(torch.stack([policy, value, entropy]))
                ratios.append(ratio)
                if epoch == first.n_epochs - 1:  # approx_kl, as ppo_lib.kl
                    kls.append(approx_kl(log_ratio))
                self.net.step(first.max_grad_norm)
            for model in models:
                model.n_updates += 1
        # the logged numbers of every minibatch at once: (4, minibatches, K)
        policies, values, entropies = torch.stack(terms, 1)
        logged = torch.stack([policies, values, -entropies, clip_fractions(ratios, clip_range)])
        rows = []
        last_losses = total.tolist()
        for k, model in enumerate(models):
            check_finite_parameters(model.policy, last_losses[k], model.n_updates,
                                    model.num_timesteps, learning_rate)
            rows.append(train_row(logged[:, :, k], [x[k] for x in kls],
                                  last_losses[k], model.rollout, model.policy,
                                  model.n_updates, learning_rate, clip_range, clip_range_vf))
        return rows


def _columns(x: Tensor) -> Tensor:
    """A (K, T, N) rollout buffer as (T, K * N): every env of every seed a column."""
    K, T, N = x.shape
    return x.transpose(0, 1).reshape(T, K * N)
