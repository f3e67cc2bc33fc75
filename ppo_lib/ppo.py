"""Proximal Policy Optimization, shaped like Stable-Baselines3's ``PPO`` (lessons 05-08).

One iteration of ``learn`` is the algorithm box of lesson 05:

    1. collect_rollout      n_steps steps of n_envs envs with pi_old   (ppo_lib.rollout)
    2. compute_advantages   GAE on the rollout                        (ppo_lib.returns.gae)
    3. train                n_epochs passes of minibatch SGD on the clipped loss
                            (ppo_lib.losses.ppo_loss_terms), logged with SB3's keys

Where this departs from the paper it follows SB3 (the reference learners will meet):
advantages normalised per minibatch, Adam with eps=1e-5, gradient-norm clipping,
time-limit truncations bootstrapped, target_kl stopping when approx_kl > 1.5 * target_kl.
Save / load: ``ppo_lib.persistence``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from .callbacks import BaseCallback, as_callback
from .envs import VecEnv, check_spaces, make_vec_env, set_random_seed
from .fast_rollout import collect_rollout_fast, fast_actions
from .fastpath import LeanAdam, MlpGradientStep, clip_grad_norm, fast_gradient_step
from .full_batch import full_batch_update
from .grad_mode import trains, training_modes
from .diagnostics import clipped_share
from .kl import adaptive_kl_coefficient, approx_kl, kl_penalty_loss
from .logger import Logger, rollout_row, train_row
from .losses import PPOLossTerms, ppo_loss_terms, value_loss
from .normalization import Normalizer
from .persistence import load_model, save_model
from .policies import clip_actions, observation_batch, policy_class_for, resolve_policy
from .returns import gae
from .rollout import (Rollout, check_batch_size, check_finite, collect_rollout,
                      compute_advantages, current_obs, minibatches, obs_tensor)
from .schedules import as_schedule, checked_value
from .validation import (as_seed, check_finite_parameters, check_hyperparameters,
                         check_in_range, check_positive_int, optimizer_arguments)


class PPO:
    """PPO-Clip with SB3's arguments and defaults (see ``stable_baselines3.PPO``), or PPO-penalty
    (``kl_penalty``).

    policy: "MlpPolicy" (Categorical or Gaussian MLP by the action space), "CnnPolicy"
        (ppo_lib.atari.NatureCNNActorCritic) or an ActorCritic class.
    env: an env id, a gymnasium Env, a list of env factories or a ppo_lib VecEnv; or None
        with ``observation_space`` and ``action_space`` given (a model that can only predict
        until it gets an env, as ``PPO.load`` builds one).
    n_envs: copies of the env when ``env`` is an id.
    vectorization_mode: how those copies run (``ppo_lib.envs.make_vec_env``): "sync", one
        after another, or "vector_entry_point", gymnasium's numpy-vectorised CartPole (all
        carts in one numpy step; many envs then cost little more than one).
    learning_rate, clip_range, clip_range_vf: a float or a function of progress_remaining
        (1 at the start, 0 at the end); ``ppo_lib.schedules.linear_schedule`` saves as data.
    n_steps: steps per env per rollout (rollout size n_steps * n_envs).
    batch_size, n_epochs: minibatch size and passes over each rollout.
    gamma, gae_lambda: discount and GAE lambda.
    normalize_advantage: standardise advantages per minibatch.
    ent_coef, vf_coef: weights c_2 and c_1 of the entropy bonus and value loss.
    max_grad_norm: gradient norm clip.  target_kl: stop the epochs early when
        approx_kl > 1.5 * target_kl.
    normalize_obs, normalize_reward: running normalisation as SB3's VecNormalize, part of
        the model (``predict`` takes raw observations).
    advantage_fn: replaces ``ppo_lib.returns.gae`` (same signature).
    loss_fn: replaces ``ppo_lib.losses.ppo_loss`` (same signature); the logged terms are
        then the reference's, computed without gradient.
    kl_penalty: None (PPO-Clip) or the initial beta of PPO-penalty, the adaptive-KL variant
        of the PPO paper (section 4; lesson 07; SB3 has no such option): the policy loss
        is ``ppo_lib.kl.kl_penalty_loss``, -mean(r A) + beta * approx_kl, without the clip,
        and after each update beta <- ``adaptive_kl_coefficient(beta, approx_kl,
        kl_penalty_target)`` (approx_kl as logged), logged as ``train/kl_coef`` (the beta
        the update used). ``model.kl_penalty`` holds the current beta. The reference step
        only (no fast path); not with ``loss_fn``.

    policy_kwargs: the policy class's arguments (net_arch, activation_fn, ortho_init, ...)
        and, as in SB3, ``optimizer_kwargs=dict(eps=..., betas=...)`` for Adam (eps 1e-5
        by default, SB3's for PPO).

    ``model.fast_path`` (True by default, not an argument): MLP policies take the gradient
    step written out (``ppo_lib.fastpath``), the same numbers as the reference step up to
    float32 rounding; False, or a loss_fn, kl_penalty, a CNN, a frozen parameter, a forward
    hook or an optimizer other than the built-in Adam: the reference step ``train`` shows.
    """

    def __init__(self, policy: str | type[nn.Module] = "MlpPolicy", env: Any = None,
                 n_envs: int = 1, learning_rate: float | Callable = 3e-4, n_steps: int = 2048,
                 batch_size: int = 64, n_epochs: int = 10, gamma: float = 0.99,
                 gae_lambda: float = 0.95, clip_range: float | Callable = 0.2,
                 clip_range_vf: float | Callable | None = None,
                 normalize_advantage: bool = True, ent_coef: float = 0.0,
                 vf_coef: float = 0.5, max_grad_norm: float = 0.5,
                 target_kl: float | None = None, normalize_obs: bool = False,
                 normalize_reward: bool = False, policy_kwargs: dict | None = None,
                 tensorboard_log: str | None = None, seed: int | None = None,
                 verbose: int = 0, advantage_fn: Callable | None = None,
                 loss_fn: Callable | None = None, kl_penalty: float | None = None,
                 kl_penalty_target: float = 0.01,
                 observation_space: spaces.Space | None = None,
                 action_space: spaces.Space | None = None,
                 vectorization_mode: str = "sync"):
        check_hyperparameters(n_steps, batch_size, n_epochs, gamma, gae_lambda, clip_range,
                              clip_range_vf, learning_rate, ent_coef, vf_coef, max_grad_norm,
                              target_kl)
        if kl_penalty is not None:
            check_in_range("kl_penalty", kl_penalty, 0.0, float("inf"), low_open=True,
                           high_open=True)
            if loss_fn is not None:
                raise ValueError("kl_penalty and loss_fn cannot both be set: kl_penalty "
                                 "replaces the clipped policy loss, loss_fn the whole loss")
        check_in_range("kl_penalty_target", kl_penalty_target, 0.0, float("inf"),
                       low_open=True, high_open=True)
        self.kl_penalty, self.kl_penalty_target = kl_penalty, kl_penalty_target
        self.policy_name = policy if isinstance(policy, str) else None
        policy_cls = resolve_policy(policy)
        self.n_steps, self.batch_size, self.n_epochs = n_steps, batch_size, n_epochs
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.normalize_advantage, self.target_kl = normalize_advantage, target_kl
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.normalize_obs, self.normalize_reward = normalize_obs, normalize_reward
        self.seed, self.verbose, self.tensorboard_log = as_seed(seed), verbose, tensorboard_log
        self.learning_rate, self.clip_range, self.clip_range_vf = (learning_rate, clip_range,
                                                                   clip_range_vf)
        self.lr_schedule = as_schedule(learning_rate)
        self.clip_range_schedule = as_schedule(clip_range)
        self.clip_range_vf_schedule = None if clip_range_vf is None else as_schedule(clip_range_vf)
        self.num_timesteps, self.n_updates = 0, 0
        self._scheduled(1.0)  # a schedule giving a negative value at the start: say so now
        self.advantage_fn, self.loss_fn = advantage_fn or gae, loss_fn
        self.policy_kwargs = dict(policy_kwargs or {})
        if self.seed is not None:
            set_random_seed(self.seed)
        self.env: VecEnv | None = None
        if env is not None:
            self.env = make_vec_env(env, n_envs=n_envs, seed=self.seed,
                                    vectorization_mode=vectorization_mode)
            if self.seed is not None and self.env.last_obs is None:
                self.env.seed = self.seed
            observation_space, action_space = self.env.observation_space, self.env.action_space
        elif observation_space is None or action_space is None:
            raise ValueError("env must be an env id string (e.g. 'CartPole-v1'), a gymnasium "
                             "Env, a list of env factories or a VecEnv, got None")
        self.observation_space, self.action_space = observation_space, action_space
        check_spaces(observation_space, action_space, flat_obs=policy_cls is None)
        self.n_envs = self.env.num_envs if self.env is not None else n_envs
        self.vectorization_mode = vectorization_mode if self.env is None else (
            "vector_entry_point" if hasattr(self.env, "vector_env") else "sync")
        check_batch_size(batch_size, n_steps, self.n_envs)
        self.policy_class = policy_cls or policy_class_for(action_space)
        policy_kwargs = dict(self.policy_kwargs)
        adam = optimizer_arguments(policy_kwargs.pop("optimizer_kwargs", None))
        with training_modes():  # float32, ordinary tensors even in the caller's inference_mode
            self.policy = self.policy_class(observation_space, action_space, **policy_kwargs)
            # SB3's Adam eps for PPO (1e-5); LeanAdam is torch's Adam with less overhead
            self.optimizer = LeanAdam(self.policy.parameters(), lr=self.lr_schedule(1.0), **adam)
            self.rollout = Rollout.allocate(n_steps, self.n_envs, observation_space, action_space)
        self._params = list(self.policy.parameters())
        self.fast_path = True
        self._gradient_step: MlpGradientStep | None = None  # the fast path's, once made
        self.normalizer = None
        if normalize_obs or normalize_reward:
            self.normalizer = Normalizer(observation_space.shape, self.n_envs, self.gamma,
                                         normalize_obs, normalize_reward)
        self.logger = Logger(tensorboard_log, verbose)
        self.last_obs: np.ndarray | None = None
        self._callback: BaseCallback | None = None
        self._progress_bar = None

    # --- training ----------------------------------------------------------------------
    @trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False,
              reset_num_timesteps: bool = True) -> "PPO":
        """Train for ``total_timesteps`` env steps (counted over all envs), as SB3."""
        check_positive_int("total_timesteps", total_timesteps)
        if self.env is None:
            raise ValueError("this model has no env: pass env= to PPO.load(path, env=...) "
                             "to continue training")
        if reset_num_timesteps:
            self.num_timesteps, self.n_updates = 0, 0
        if reset_num_timesteps or self.last_obs is None:
            self.last_obs = self.reset_env()
        total_timesteps += 0 if reset_num_timesteps else self.num_timesteps
        self._callback = as_callback(callback)
        self._callback.init_callback(self)
        if progress_bar:
            from tqdm.auto import tqdm
            self._progress_bar = tqdm(total=total_timesteps, initial=self.num_timesteps,
                                      unit="steps")
        # bind the fast step's buffers before any rollout: a resumed run reads the same tensors
        self._fast_step()
        start_time, start_steps = time.perf_counter(), self.num_timesteps
        self._callback.on_training_start()
        try:
            while self.num_timesteps < total_timesteps:
                self._callback.on_rollout_start()
                args = (self.policy, self.env, self.rollout, self.last_obs, self.gamma,
                        self.normalizer, self._on_env_step)  # on_step: once per vector step
                try:
                    self.last_obs, completed = collect_rollout_fast(*args) or collect_rollout(*args)
                except BaseException:  # Ctrl-C mid-rollout: go on later from where the envs are
                    self.last_obs = current_obs(self.env, self.normalizer)
                    raise
                if not completed:
                    break
                check_finite(self.rollout, self.num_timesteps, self.lr_schedule(1.0))
                with torch.inference_mode(self.advantage_fn is gae):  # gae keeps no tensor
                    compute_advantages(self.rollout, self.gamma, self.gae_lambda,
                                       self.advantage_fn)
                self._callback.on_rollout_end()
                progress = max(0.0, 1.0 - self.num_timesteps / total_timesteps)
                row = full_batch_update(self, progress) or self.train(progress)
                elapsed = max(time.perf_counter() - start_time, 1e-9)
                self.logger.record({**rollout_row(self.env),
                                    "time/fps": int((self.num_timesteps - start_steps) / elapsed),
                                    "time/iterations": len(self.logger.rows) + 1,
                                    "time/time_elapsed": elapsed,
                                    "time/total_timesteps": self.num_timesteps, **row})
                self._callback.on_update_end()
        finally:
            if self._progress_bar is not None:
                self._progress_bar.close()
                self._progress_bar = None
        self._callback.on_training_end()
        return self

    def train(self, progress_remaining: float = 1.0) -> dict[str, float]:
        """One update on the collected rollout (SB3's ``PPO.train``) -> the row it logs.

            for each of n_epochs passes, for each shuffled minibatch of batch_size samples:
                A <- (A - mean A) / (std A + 1e-8)               (per minibatch, as SB3)
                loss = ppo_loss(r, A, V, R, H), eq. 4.6          (minibatch_loss;
                       PPO-penalty: loss_klpen = -L^KLPEN in place of loss_clip)
                stop the update if approx_kl > 1.5 * target_kl
                theta <- Adam(theta, clip(grad loss, max_grad_norm))
            PPO-penalty: beta <- adaptive_kl_coefficient(beta, approx_kl, kl_penalty_target)
        """
        learning_rate, clip_range, clip_range_vf = self._scheduled(progress_remaining)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        # A linear schedule reaches 0 at the end (SB3 then runs its last update with eps = 0,
        # or below 0 when the last rollout overshoots total_timesteps); the loss needs eps > 0.
        clip_range = max(clip_range, 1e-8)
        check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
        fast = self._fast_step()  # None: the reference step, as the lessons write it
        logged, kls, stop = [], [], False  # logged: per minibatch, tensors until the end
        for epoch in range(self.n_epochs):
            kls = []  # SB3 logs the mean over the last epoch's minibatches
            for batch in minibatches(self.rollout, self.batch_size):
                advantages = self.normalized_advantages(batch.advantages)
                if fast is None:
                    loss, terms, log_ratio, ratio = self.minibatch_loss(
                        batch, advantages, clip_range, clip_range_vf)
                else:
                    loss, terms, log_ratio, ratio = fast.loss(
                        batch, advantages, clip_range, self.vf_coef, self.ent_coef,
                        clip_range_vf)
                with torch.no_grad():
                    logged.append(torch.stack([terms.policy, terms.value, -terms.entropy,
                                               clipped_share(ratio, clip_range)]))
                    if self.target_kl is not None or epoch == self.n_epochs - 1:
                        kls.append(approx_kl(log_ratio))
                if self.target_kl is not None and self._kl_stops(kls[-1].item(), epoch):
                    stop = True
                    break
                if fast is None:
                    for p in self._params:  # zero_grad(set_to_none=True), less overhead
                        p.grad = None
                    loss.backward()
                    clip_grad_norm(self._params, self.max_grad_norm)
                    self.optimizer.step()
                else:  # the same step written out, without autograd (ppo_lib.fastpath)
                    fast.step(self.max_grad_norm)
            self.n_updates += 1
            if stop:
                break
        last_loss = loss.item()
        check_finite_parameters(self.policy, last_loss, self.n_updates, self.num_timesteps,
                                learning_rate)
        row = train_row(logged, kls, last_loss, self.rollout, self.policy, self.n_updates,
                        learning_rate, clip_range, clip_range_vf)
        if self.kl_penalty is not None:  # PPO-penalty: beta follows the KL this update made
            row["train/kl_coef"] = self.kl_penalty
            self.kl_penalty = adaptive_kl_coefficient(self.kl_penalty, row["train/approx_kl"],
                                                      self.kl_penalty_target)
        return row

    def normalized_advantages(self, advantages: torch.Tensor) -> torch.Tensor:
        """A <- (A - mean A) / (std A + 1e-8) within a minibatch, when normalize_advantage
        (SB3; a minibatch of one is left as it is)."""
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return advantages

    def minibatch_loss(self, batch, advantages: torch.Tensor, clip_range: float,
                       clip_range_vf: float | None = None):
        """The loss of one minibatch -> (loss, terms, log_ratio, ratio), as SB3's train().

        ratio r_t = exp(log pi_theta(a_t|s_t) - log pi_old(a_t|s_t)); the loss is
        ``ppo_loss`` (or ``loss_fn``) of the minibatch with ``advantages``.
        """
        values, log_probs, entropy = self.policy.evaluate_actions(batch.obs, batch.actions)
        log_ratio = log_probs - batch.old_log_probs
        ratio = torch.exp(log_ratio)
        args = (ratio, advantages, values, batch.returns, entropy, clip_range,
                self.vf_coef, self.ent_coef, batch.old_values, clip_range_vf)
        if self.kl_penalty is not None:  # PPO-penalty: loss_klpen = -L^KLPEN, no clip
            policy = kl_penalty_loss(ratio, advantages, log_ratio, self.kl_penalty)
            value = value_loss(values, batch.returns, batch.old_values, clip_range_vf)
            terms = PPOLossTerms(policy + self.vf_coef * value - self.ent_coef * entropy.mean(),
                                 policy, value, entropy.mean())
            return terms.total, terms, log_ratio, ratio
        if self.loss_fn is None:
            terms = ppo_loss_terms(*args)
            return terms.total, terms, log_ratio, ratio
        loss = self.loss_fn(*args)
        with torch.no_grad():  # log the reference terms
            terms = ppo_loss_terms(*args)
        return loss, terms, log_ratio, ratio

    def _fast_step(self) -> MlpGradientStep | None:
        """The written-out gradient step (``ppo_lib.fastpath``), or None: the reference."""
        if not self.fast_path or self.loss_fn is not None or self.kl_penalty is not None:
            return None  # the fast path knows only the clipped loss
        self._gradient_step = fast_gradient_step(self.policy, self.optimizer,
                                                 self._gradient_step)
        return self._gradient_step

    def _kl_stops(self, kl: float, epoch: int) -> bool:
        stops = not kl <= 1.5 * self.target_kl  # a NaN approx_kl stops too
        if stops and self.verbose >= 1:
            print(f"Early stopping at epoch {epoch} with approx_kl {kl:.4f} > "
                  f"1.5 * target_kl = {1.5 * self.target_kl:.4f}")
        return stops

    def _scheduled(self, progress_remaining: float) -> tuple[float, float, float | None]:
        """learning_rate, clip_range, clip_range_vf at ``progress_remaining``, checked (>= 0)."""
        return tuple(None if schedule is None else
                     checked_value(name, schedule, progress_remaining, self.num_timesteps)
                     for name, schedule in (("learning_rate", self.lr_schedule),
                                            ("clip_range", self.clip_range_schedule),
                                            ("clip_range_vf", self.clip_range_vf_schedule)))

    def reset_env(self) -> np.ndarray:
        """Reset the envs (and the reward normaliser's returns) -> the first observation."""
        obs = self.env.reset()
        if self.normalizer is not None:
            self.normalizer.returns[:] = 0.0
            obs = self.normalizer.obs(obs, update=True)
        return obs

    def _on_env_step(self) -> bool:
        self.num_timesteps += self.n_envs
        if self._progress_bar is not None:
            self._progress_bar.update(self.n_envs)
        return self._callback.on_step()

    # --- acting, saving, loading -------------------------------------------------------
    def predict(self, obs, deterministic: bool = False, state=None, episode_start=None):
        """Actions for raw observations -> (actions, None), as SB3.

        ``obs`` is one observation (returns one action) or a batch (B, ...). Box actions
        are clipped to the action space. With ``fast_path``, an MLP policy acts through its
        actor alone (``fast_rollout.fast_actions``: the same actions, bit for bit).
        """
        obs, single = observation_batch(obs, self.observation_space)
        if self.normalizer is not None:
            obs = self.normalizer.obs(obs)
        with torch.no_grad():
            obs = obs_tensor(obs)
            actions = fast_actions(self.policy, obs, deterministic) if self.fast_path else None
            if actions is None:
                actions = self.policy(obs, deterministic=deterministic)[0]
        actions = clip_actions(actions.numpy(), self.action_space)
        return (actions[0] if single else actions), None

    def get_env(self) -> VecEnv | None:
        return self.env

    def save(self, path: str | os.PathLike) -> str:
        """Write the model to ``path`` (".pt" added when it has no suffix), atomically, as
        plain data that ``torch.load(path, weights_only=True)`` reads. Returns the path."""
        return save_model(self, path)

    @classmethod
    @trains
    def load(cls, path: str | os.PathLike, env: Any = None,
             custom_objects: dict[str, Any] | None = None, **overrides) -> "PPO":
        """Load a model written by ``save`` (``ppo_lib.persistence.load_model``): the file is
        data, nothing it names is imported or called. ``env``: the env to go on training in
        (default: the saved env id, rebuilt with its saved state); ``custom_objects``: as
        SB3's, {name: object} for the names the file holds; ``overrides``: hyperparameters."""
        return load_model(cls, path, env, custom_objects, overrides)
