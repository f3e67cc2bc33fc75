"""Proximal Policy Optimization, shaped like Stable-Baselines3's ``PPO`` (lessons 05-08).

One iteration of ``learn`` is the algorithm box of lesson 05:

    1. collect_rollout      n_steps steps of n_envs envs with pi_old   (ppo_lib.rollout)
    2. compute_advantages   GAE on the rollout                        (ppo_lib.returns.gae)
    3. _update              n_epochs passes of minibatch SGD on the clipped loss
                            (ppo_lib.losses.ppo_loss_terms), logged with SB3's keys

Where this departs from the paper it follows SB3 (the reference learners will meet):
advantages normalised per minibatch, Adam with eps=1e-5, gradient-norm clipping,
time-limit truncations bootstrapped, target_kl stopping when approx_kl > 1.5 * target_kl.

Save / load (``save``, ``PPO.load``): one file readable by ``torch.load(path,
weights_only=True)``, plain data only. It holds the weights, the optimizer, the random
states, the observation / reward normalisation and the env state, so that
learn -> save -> load -> learn(reset_num_timesteps=False) gives the same result as learning
without the pause (exact for classic-control and MuJoCo envs, see ``VecEnv.get_state``).
"""

from __future__ import annotations

import importlib
import math
import os
import random
import time
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from .validation import check_in_range, check_positive_int
from .callbacks import BaseCallback, as_callback
from .diagnostics import clip_fraction, explained_variance
from .envs import Normalizer, VecEnv, check_spaces, make_vec_env
from .kl import approx_kl
from .logger import Logger
from .fastpath import MlpGradientStep, categorical_ppo_loss
from .losses import ppo_loss_terms
from .policies import (CategoricalActorCritic, GaussianActorCritic, clip_actions,
                       policy_class_for)
from .returns import gae
from .rollout import Rollout, collect_rollout, compute_advantages, minibatches, obs_tensor
from .schedules import as_schedule, schedule_from_dict, schedule_to_dict

FILE_FORMAT = "ppo_lib.PPO"
FILE_VERSION = 1

# Hyperparameters saved with the model (all plain numbers / bools / None).
_PLAIN_HPARAMS = ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
                  "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "target_kl",
                  "normalize_obs", "normalize_reward", "seed", "verbose")


class PPO:
    """PPO-Clip with SB3's arguments and defaults (see ``stable_baselines3.PPO``).

    policy: "MlpPolicy" (Categorical or Gaussian MLP by the action space), "CnnPolicy"
        (ppo_lib.atari.NatureCNNActorCritic) or an ActorCritic class.
    env: an env id, a gymnasium Env, a list of env factories or a ppo_lib VecEnv.
    n_envs: copies of the env when ``env`` is an id.
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
                 loss_fn: Callable | None = None, _spaces: tuple | None = None):
        check_positive_int("n_steps", n_steps)
        check_positive_int("batch_size", batch_size)
        check_positive_int("n_epochs", n_epochs)
        check_in_range("gamma", gamma, 0.0, 1.0)
        check_in_range("gae_lambda", gae_lambda, 0.0, 1.0)
        if not callable(clip_range):
            check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
        if clip_range_vf is not None and not callable(clip_range_vf):
            check_in_range("clip_range_vf", clip_range_vf, 0.0, float("inf"), low_open=True)
        if not callable(learning_rate):
            check_in_range("learning_rate", learning_rate, 0.0, float("inf"), low_open=True)
        for name, value in (("ent_coef", ent_coef), ("vf_coef", vf_coef),
                            ("max_grad_norm", max_grad_norm)):
            check_in_range(name, value, 0.0, float("inf"))
        if target_kl is not None:
            check_in_range("target_kl", target_kl, 0.0, float("inf"), low_open=True)
        self.policy_name = policy if isinstance(policy, str) else None
        policy_cls = _resolve_policy(policy)

        self.n_steps, self.batch_size, self.n_epochs = n_steps, batch_size, n_epochs
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.normalize_advantage = normalize_advantage
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.target_kl = target_kl
        self.normalize_obs, self.normalize_reward = normalize_obs, normalize_reward
        self.seed, self.verbose = seed, verbose
        self.learning_rate, self.clip_range, self.clip_range_vf = (learning_rate, clip_range,
                                                                   clip_range_vf)
        self.lr_schedule = as_schedule(learning_rate)
        self.clip_range_schedule = as_schedule(clip_range)
        self.clip_range_vf_schedule = None if clip_range_vf is None else as_schedule(clip_range_vf)
        self.num_timesteps, self._n_updates = 0, 0
        self._scheduled(1.0)  # a schedule giving a negative value at the start: say so now
        self.advantage_fn = advantage_fn or gae
        self.loss_fn = loss_fn
        self.policy_kwargs = dict(policy_kwargs or {})
        self.tensorboard_log = tensorboard_log

        if seed is not None:
            set_random_seed(seed)
        if env is None and _spaces is None:
            raise ValueError("env must be an env id string (e.g. 'CartPole-v1'), a gymnasium "
                             "Env, a list of env factories or a VecEnv, got None")
        self.env: VecEnv | None = None
        if env is not None:
            self.env = make_vec_env(env, n_envs=n_envs, seed=seed)
            if seed is not None and self.env.last_obs is None:
                self.env.seed = seed
            observation_space, action_space = self.env.observation_space, self.env.action_space
        else:
            observation_space, action_space = _spaces
        self.observation_space, self.action_space = observation_space, action_space
        check_spaces(observation_space, action_space, flat_obs=policy_cls is None)
        self.n_envs = self.env.num_envs if self.env is not None else n_envs
        rollout_size = n_steps * self.n_envs
        if batch_size > rollout_size:
            raise ValueError(f"batch_size={batch_size} is larger than the rollout, n_steps * "
                             f"n_envs = {n_steps} * {self.n_envs} = {rollout_size}; "
                             f"use batch_size <= {rollout_size}")
        if rollout_size % batch_size:  # as SB3 warns
            warnings.warn(f"batch_size={batch_size} does not divide the rollout, n_steps * "
                          f"n_envs = {n_steps} * {self.n_envs} = {rollout_size}: after every "
                          f"{rollout_size // batch_size} minibatches of {batch_size} comes a "
                          f"truncated one of {rollout_size % batch_size}. Use a batch_size that "
                          f"divides {rollout_size}", UserWarning, stacklevel=2)

        if policy_cls is None:
            policy_cls = policy_class_for(action_space)
        self.policy_class = policy_cls
        self.policy = policy_cls(observation_space, action_space, **self.policy_kwargs)
        self._params = list(self.policy.parameters())
        # True: MLP policies take the written-out gradient step (ppo_lib.fastpath), or, where
        # it steps aside (hooks, frozen parameters), categorical ones the fused loss.
        # False: the reference path of the lessons
        self.fast_loss = type(self.policy) in (CategoricalActorCritic, GaussianActorCritic)
        self._mlp_step: MlpGradientStep | None = None  # made on the first update
        # SB3's Adam eps for PPO (1e-5). LeanAdam: torch's Adam in one fused kernel call,
        # the same numbers (tests/test_ppo.py) with a fraction of the Python overhead.
        self.optimizer = LeanAdam(self._params, lr=self.lr_schedule(1.0), eps=1e-5)
        self.rollout = Rollout.allocate(n_steps, self.n_envs, observation_space, action_space)
        self.normalizer = None
        if normalize_obs or normalize_reward:
            self.normalizer = Normalizer(observation_space.shape, self.n_envs, self.gamma,
                                         normalize_obs, normalize_reward)
        self.logger = Logger(tensorboard_log, verbose)
        self._last_obs: np.ndarray | None = None
        self._callback: BaseCallback | None = None
        self._progress_bar = None

    # --- training ----------------------------------------------------------------------
    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False,
              reset_num_timesteps: bool = True) -> "PPO":
        """Train for ``total_timesteps`` env steps (counted over all envs), as SB3."""
        check_positive_int("total_timesteps", total_timesteps)
        if self.env is None:
            raise ValueError("this model has no env: pass env= to PPO.load(path, env=...) "
                             "to continue training")
        if reset_num_timesteps:
            self.num_timesteps = 0
            self._n_updates = 0
        if reset_num_timesteps or self._last_obs is None:
            self._last_obs = self._reset_env()
        total_timesteps += 0 if reset_num_timesteps else self.num_timesteps
        self._callback = as_callback(callback)
        self._callback.init_callback(self)
        if progress_bar:
            from tqdm.auto import tqdm
            self._progress_bar = tqdm(total=total_timesteps, initial=self.num_timesteps,
                                      unit="steps")
        # Bind the written-out step's flat buffers now, not at the first update: every rollout
        # of a run, fresh or resumed after PPO.load, then reads the same parameter tensors.
        self._fast_gradient_step()
        start_time, start_steps = time.perf_counter(), self.num_timesteps
        self._callback.on_training_start()
        try:
            while self.num_timesteps < total_timesteps:
                self._callback.on_rollout_start()
                self._last_obs, completed = collect_rollout(
                    self.policy, self.env, self.rollout, self._last_obs, self.gamma,
                    self.normalizer, on_step=self._on_env_step)
                if not completed:
                    break
                self._check_rollout()
                compute_advantages(self.rollout, self.gamma, self.gae_lambda, self.advantage_fn)
                self._callback.on_rollout_end()
                progress_remaining = max(0.0, 1.0 - self.num_timesteps / total_timesteps)
                row = self._update(progress_remaining)
                elapsed = max(time.perf_counter() - start_time, 1e-9)
                row = {**self._rollout_stats(),
                       "time/fps": int((self.num_timesteps - start_steps) / elapsed),
                       "time/iterations": len(self.logger.rows) + 1,
                       "time/time_elapsed": elapsed,
                       "time/total_timesteps": self.num_timesteps, **row}
                self.logger.record(row)
                self._callback.on_update_end()
        finally:
            if self._progress_bar is not None:
                self._progress_bar.close()
                self._progress_bar = None
        self._callback.on_training_end()
        return self

    def _reset_env(self) -> np.ndarray:
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

    def _rollout_stats(self) -> dict[str, float]:
        returns, lengths = self.env.episode_returns, self.env.episode_lengths
        return {"rollout/ep_rew_mean": float(np.mean(returns)) if returns else float("nan"),
                "rollout/ep_len_mean": float(np.mean(lengths)) if lengths else float("nan")}

    def _update(self, progress_remaining: float) -> dict[str, float]:
        """n_epochs of minibatch gradient steps on the rollout (SB3's ``PPO.train``)."""
        learning_rate, clip_range, clip_range_vf = self._scheduled(progress_remaining)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        # A linear schedule reaches 0 at the end (SB3 then runs its last update with eps = 0,
        # or below 0 when the last rollout overshoots total_timesteps); the loss needs eps > 0.
        clip_range = max(clip_range, 1e-8)
        pg_losses, value_losses, entropy_losses, clip_fractions = [], [], [], []
        approx_kls: list[float] = []
        stopped_early = False
        fast = self._fast_gradient_step()  # None: autograd, as the lessons write it
        for _epoch in range(self.n_epochs):
            approx_kls = []  # SB3 logs the mean over the last epoch's minibatches
            for batch in minibatches(self.rollout, self.batch_size):
                loss, terms, log_ratio, ratio = self.minibatch_loss(batch, clip_range,
                                                                    clip_range_vf, fast)
                pg_losses.append(terms.policy.item())
                value_losses.append(terms.value.item())
                entropy_losses.append(-terms.entropy.item())
                clip_fractions.append(clip_fraction(ratio.detach(), clip_range))
                if self.target_kl is None and _epoch < self.n_epochs - 1:
                    kl = None  # only the last epoch's approx_kl is logged
                else:
                    with torch.no_grad():
                        kl = approx_kl(log_ratio).item()
                    approx_kls.append(kl)
                if self.target_kl is not None and kl > 1.5 * self.target_kl:
                    stopped_early = True
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {_epoch} with approx_kl {kl:.4f} > "
                              f"1.5 * target_kl = {1.5 * self.target_kl:.4f}")
                    break
                if fast is None:
                    for p in self._params:  # zero_grad(set_to_none=True), less overhead
                        p.grad = None
                    loss.backward()
                    clip_grad_norm(self._params, self.max_grad_norm)
                    self.optimizer.step()
                else:  # the same step written out, without autograd (ppo_lib.fastpath)
                    fast.step(self.max_grad_norm)
            self._n_updates += 1
            if stopped_early:
                break
        last_loss = loss.item()
        self._check_finite(last_loss)
        row = {
            "train/approx_kl": float(np.mean(approx_kls)),
            "train/clip_fraction": float(np.mean(clip_fractions)),
            "train/clip_range": float(clip_range),
            "train/entropy_loss": float(np.mean(entropy_losses)),
            "train/explained_variance": explained_variance(self.rollout.values,
                                                           self.rollout.returns),
            "train/learning_rate": float(learning_rate),
            "train/loss": last_loss,
            "train/n_updates": self._n_updates,
            "train/policy_gradient_loss": float(np.mean(pg_losses)),
            "train/value_loss": float(np.mean(value_losses)),
        }
        if clip_range_vf is not None:
            row["train/clip_range_vf"] = float(clip_range_vf)
        log_std = getattr(self.policy, "log_std", None)
        if isinstance(log_std, torch.Tensor):
            row["train/std"] = log_std.detach().exp().mean().item()
        return row

    def _scheduled(self, progress_remaining: float) -> tuple[float, float, float | None]:
        """learning_rate, clip_range and clip_range_vf at ``progress_remaining``, each checked
        (a number >= 0) before the update changes anything."""
        values = []
        for name, schedule in (("learning_rate", self.lr_schedule),
                               ("clip_range", self.clip_range_schedule),
                               ("clip_range_vf", self.clip_range_vf_schedule)):
            value = None if schedule is None else schedule(progress_remaining)
            if schedule is not None and not _is_non_negative_number(value):
                raise ValueError(
                    f"the {name} schedule {getattr(schedule, '__qualname__', schedule)!r} "
                    f"returned {value!r} at progress_remaining={progress_remaining:.6g} "
                    f"(num_timesteps={self.num_timesteps}, the update not made); a {name} must "
                    f"be a finite number >= 0. A schedule maps progress_remaining (1 at the "
                    f"start, 0 at the end) to the value, e.g. "
                    f"ppo_lib.schedules.linear_schedule(3e-4)")
            values.append(value)
        return tuple(values)

    def minibatch_loss(self, batch, clip_range: float, clip_range_vf: float | None = None,
                       gradient_step: MlpGradientStep | None = None):
        """The loss of one minibatch -> (loss, terms, log_ratio, ratio), as SB3's train().

        ratio r_t = exp(log pi_theta(a_t|s_t) - log pi_old(a_t|s_t)); advantages are
        standardised within the minibatch (SB3); the loss is ``ppo_loss`` (or ``loss_fn``).
        With ``gradient_step`` the loss has no graph: ``gradient_step.step`` follows.
        """
        advantages = batch.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        if gradient_step is not None:
            return gradient_step.loss(batch.obs, batch.actions, batch.old_log_probs,
                                      advantages, batch.returns, clip_range, self.vf_coef,
                                      self.ent_coef, batch.old_values, clip_range_vf)
        if self.loss_fn is None and self.fast_loss and isinstance(self.policy,
                                                                  CategoricalActorCritic):
            # the same numbers as below in one autograd node (ppo_lib.fastpath, tests/test_fused.py)
            logits, values = self.policy._logits_values(batch.obs)
            return categorical_ppo_loss(logits, values, batch.actions, batch.old_log_probs,
                                        advantages, batch.returns, clip_range, self.vf_coef,
                                        self.ent_coef, batch.old_values, clip_range_vf)
        values, log_probs, entropy = self.policy.evaluate_actions(batch.obs, batch.actions)
        log_ratio = log_probs - batch.old_log_probs
        ratio = torch.exp(log_ratio)
        args = (ratio, advantages, values, batch.returns, entropy, clip_range,
                self.vf_coef, self.ent_coef, batch.old_values, clip_range_vf)
        if self.loss_fn is None:
            terms = ppo_loss_terms(*args)
            return terms.total, terms, log_ratio, ratio
        loss = self.loss_fn(*args)
        with torch.no_grad():  # log the reference terms
            terms = ppo_loss_terms(*args)
        return loss, terms, log_ratio, ratio

    def _fast_gradient_step(self) -> MlpGradientStep | None:
        """The written-out gradient step for an MLP policy (categorical or Gaussian) trained
        with the built-in loss and Adam; None (autograd) for anything else or
        ``fast_loss = False``."""
        if self.loss_fn is not None or not self.fast_loss or type(self.optimizer) is not LeanAdam:
            return None
        step = self._mlp_step
        if step is None or step.policy is not self.policy or step.optimizer is not self.optimizer:
            step = self._mlp_step = MlpGradientStep.create(self.policy, self.optimizer)
        return step if step is not None and step.bind() else None

    # --- NaN guards (once per rollout / update: cheap) ----------------------------------
    def _check_rollout(self) -> None:
        r = self.rollout
        if r.obs.is_floating_point() and not torch.isfinite(r.obs).all():
            raise FloatingPointError(
                f"NaN or inf in the observations of the rollout ending at num_timesteps="
                f"{self.num_timesteps}: the env returned them (check the env's step / reset), "
                f"or observation normalisation divided by a zero variance")
        if not torch.isfinite(r.rewards).all():
            raise FloatingPointError(
                f"NaN or inf in the rewards of the rollout ending at num_timesteps="
                f"{self.num_timesteps}: the env returned them, or the critic's V(final_obs) "
                f"used to bootstrap a time-limit truncation is not finite")
        if not torch.isfinite(r.values).all() or not torch.isfinite(r.log_probs).all():
            raise FloatingPointError(
                f"NaN or inf in the policy's values / log-probabilities at num_timesteps="
                f"{self.num_timesteps}: the weights diverged; the learning rate "
                f"({self.lr_schedule(1.0):g}) is probably too high")

    def _check_finite(self, last_loss: float) -> None:
        bad = [name for name, p in self.policy.named_parameters()
               if not torch.isfinite(p).all()]
        if bad or not np.isfinite(last_loss):
            where = f"parameters {bad[:3]}" if bad else f"the loss ({last_loss})"
            raise FloatingPointError(
                f"NaN or inf in {where} after update {self._n_updates} "
                f"(num_timesteps={self.num_timesteps}): training diverged. The learning rate "
                f"({self.optimizer.param_groups[0]['lr']:g}) is most likely too high; lower it "
                f"(3e-4 is PPO's usual value), keep max_grad_norm (0.5), or normalise "
                f"observations / rewards")

    # --- acting ------------------------------------------------------------------------
    def predict(self, obs, deterministic: bool = False, state=None, episode_start=None):
        """Actions for raw observations -> (actions, None), as SB3.

        ``obs`` is one observation (returns one action) or a batch (B, ...). Box actions
        are clipped to the action space.
        """
        obs, single = _observation_batch(obs, self.observation_space)
        if self.normalizer is not None:
            obs = self.normalizer.obs(obs)
        with torch.no_grad():
            actions = self.policy(obs_tensor(obs), deterministic=deterministic)[0]
        actions = clip_actions(actions.numpy(), self.action_space)
        return (actions[0] if single else actions), None

    def get_env(self) -> VecEnv | None:
        return self.env

    # --- save / load -------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> str:
        """Write the model to ``path`` (".pt" added when it has no suffix), atomically: a
        temporary file in the same folder, then ``os.replace``, so a crash mid-save leaves
        any previous file intact. Returns the path written."""
        path = _with_suffix(path)
        data = self._to_data()
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)  # as SB3, a missing folder is made
        except OSError as err:
            raise OSError(err.errno, f"cannot save the model to {path!r}: its folder {folder!r} "
                                     f"does not exist and cannot be made ({err.strerror})") from err
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb"):  # a plain OSError (read-only folder...) before torch writes
                pass
            torch.save(data, tmp)
            os.replace(tmp, path)
        except OSError as err:
            raise OSError(err.errno, f"cannot save the model to {path!r}: {err.strerror or err} "
                                     f"(is {folder!r} writable?); nothing was written, a file "
                                     f"already at that path is unchanged") from err
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def _to_data(self) -> dict:
        schedules = {}
        for name in ("learning_rate", "clip_range", "clip_range_vf"):
            value = getattr(self, name)
            if value is None or not callable(value):
                schedules[name] = None if value is None else {"kind": "constant",
                                                              "value": float(value)}
                continue
            described = schedule_to_dict(value)
            if described is None:
                warnings.warn(f"{name} is a function ({value!r}) that cannot be saved without "
                              f"pickling code; saved as its initial value. Use "
                              f"ppo_lib.schedules.linear_schedule, or pass {name}= to "
                              f"PPO.load.", stacklevel=3)
                described = {"kind": "constant", "value": float(value(1.0))}
            schedules[name] = described
        env_state = None
        if self.env is not None and self._last_obs is not None:
            env_state = _pack(self.env.get_state())
        return {
            "format": FILE_FORMAT, "version": FILE_VERSION,
            "hyperparameters": {name: getattr(self, name) for name in _PLAIN_HPARAMS},
            "schedules": schedules,
            "policy": self.policy_name or _class_path(self.policy_class),
            "policy_kwargs": _pack_policy_kwargs(self.policy_kwargs),
            "observation_space": _space_to_data(self.observation_space),
            "action_space": _space_to_data(self.action_space),
            "env_id": self.env.spec.id if self.env is not None and self.env.spec else None,
            "n_envs": self.n_envs,
            "policy_state": self.policy.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "normalizer": None if self.normalizer is None else _pack(self.normalizer.state_dict()),
            "num_timesteps": self.num_timesteps, "n_updates": self._n_updates,
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": _pack(np.random.get_state(legacy=False)),
                    "python": _pack(random.getstate())},
            "env_state": env_state,
            "last_obs": None if self._last_obs is None else torch.as_tensor(self._last_obs).clone(),
        }

    @classmethod
    def load(cls, path: str | os.PathLike, env: Any = None,
             custom_objects: dict[str, Any] | None = None, **overrides) -> "PPO":
        """Load a model written by ``save``.

        The file is data: nothing it names is imported or called. Its class names (the
        policy, classes in ``policy_kwargs`` such as ``activation_fn``) resolve only to
        ppo_lib's policies, torch.nn's activations and ``custom_objects``; any other name is
        a ValueError raised before anything is built.

        ``env``: the env to continue training in (its spaces must be the model's); by
        default the saved env id is rebuilt (n_envs copies) and its saved state restored,
        so ``learn(..., reset_num_timesteps=False)`` continues exactly.
        ``custom_objects``: as SB3's, ``{name: object}`` for the names the file holds, by
        their saved "module:Class" or bare class name, e.g. ``{"MyPolicy": MyPolicy}`` for
        a model of your own policy class; a key that is a PPO argument (``learning_rate``)
        replaces it. ``overrides``: hyperparameters to replace, e.g. ``learning_rate=``
        for a schedule that could not be saved.
        """
        data = _read(path)
        custom_objects = _check_custom_objects(custom_objects)
        # Every name the file holds is resolved first: a refused file builds nothing.
        policy = data["policy"]
        if policy not in ("MlpPolicy", "CnnPolicy"):
            policy = _resolve_name(policy, "policy", "policy", path, custom_objects)
        policy_kwargs = _unpack_policy_kwargs(data["policy_kwargs"], path, custom_objects)
        hp = _saved_hyperparameters(data, path)
        seed = hp.pop("seed")
        overrides = {**{k: v for k, v in custom_objects.items() if k in _ARGUMENTS},
                     **overrides}
        hp.update(overrides)
        obs_space = _space_from_data(data["observation_space"])
        act_space = _space_from_data(data["action_space"])
        check_positive_int("the file's n_envs", data["n_envs"])
        same_env = env is None
        if env is None and data["env_id"] is not None:
            env = _rebuild_env(data["env_id"], data["n_envs"], obs_space, act_space, path)
        elif env is not None:
            env = make_vec_env(env, n_envs=data["n_envs"])
            if env.observation_space != obs_space or env.action_space != act_space:
                raise ValueError(
                    f"env has observation space {env.observation_space} and action space "
                    f"{env.action_space}, but the model in {os.fspath(path)!r} was trained "
                    f"on {obs_space} and {act_space}; pass env= an env with the model's "
                    f"spaces (the same env id and wrappers), or leave env out to predict only")
        model = cls(policy, env, n_envs=data["n_envs"], policy_kwargs=policy_kwargs,
                    _spaces=(obs_space, act_space), **hp)
        model.seed = seed
        model.policy.load_state_dict(data["policy_state"])
        model.optimizer.load_state_dict(data["optimizer_state"])
        if "learning_rate" in overrides:
            for group in model.optimizer.param_groups:
                group["lr"] = model.lr_schedule(1.0)
        if model.normalizer is not None and data["normalizer"] is not None:
            model.normalizer.load_state_dict(_unpack(data["normalizer"]))
        model.num_timesteps, model._n_updates = data["num_timesteps"], data["n_updates"]
        torch.set_rng_state(data["rng"]["torch"])
        np.random.set_state(_unpack(data["rng"]["numpy"]))
        random.setstate(_unpack(data["rng"]["python"]))
        if model.env is not None and same_env and data["env_state"] is not None:
            if model.env.num_envs == data["n_envs"]:
                exact = model.env.set_state(_unpack(data["env_state"]))
                last = data["last_obs"].numpy()
                model._last_obs = last if exact else model._reset_env()
        return model


# --- helpers -----------------------------------------------------------------------------
class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (same state_dict, same numbers) whose ``step`` calls the fused
    CPU kernel directly. A PPO update on a tiny MLP is thousands of small steps, where
    ``Optimizer.step``'s bookkeeping costs more than the arithmetic."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps, fused=True)
        self._lists = None

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            return super().step(closure)
        self.lean_step()
        return None

    @torch.no_grad()
    def lean_step(self) -> None:
        """``step()`` without the profiling wrapper torch puts around ``Optimizer.step``."""
        if self._lists is None or any(p.grad is None for p in self._lists[0]):
            self._lists = None
            super().step()  # creates the state on the first call
            self._lists = self._state_lists()
            return
        group = self.param_groups[0]
        params, exp_avgs, exp_avg_sqs, steps = self._lists
        grads = [p.grad for p in params]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"],
                           beta1=group["betas"][0], beta2=group["betas"][1],
                           weight_decay=group["weight_decay"], eps=group["eps"],
                           amsgrad=False, maximize=False)

    def _state_lists(self):
        if len(self.param_groups) != 1 or self.param_groups[0]["weight_decay"] != 0:
            return None
        params = [p for p in self.param_groups[0]["params"] if p in self.state]
        if len(params) != len(self.param_groups[0]["params"]):
            return None
        return (params, [self.state[p]["exp_avg"] for p in params],
                [self.state[p]["exp_avg_sq"] for p in params],
                [self.state[p]["step"] for p in params])

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._lists = None

    def __setstate__(self, state):  # copy.deepcopy, pickle
        super().__setstate__(state)
        self._lists = None


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` in four tensor calls: scale every gradient by
    min(1, max_norm / (||g||_2 + 1e-6)), ||g|| the norm of all gradients together."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (as SB3's ``set_random_seed``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _resolve_policy(policy) -> type[nn.Module] | None:
    """None for "MlpPolicy" (chosen by the action space), else the class."""
    if policy == "MlpPolicy":
        return None
    if policy == "CnnPolicy":
        from .atari import NatureCNNActorCritic
        return NatureCNNActorCritic
    if isinstance(policy, type) and issubclass(policy, nn.Module):
        return policy
    raise ValueError(f"policy must be 'MlpPolicy', 'CnnPolicy' or an actor-critic nn.Module "
                     f"class (e.g. ppo_lib.policies.CategoricalActorCritic), got {policy!r}")


def _with_suffix(path) -> str:
    path = os.fspath(path)
    return path if os.path.splitext(path)[1] else path + ".pt"


def _read(path) -> dict:
    path = os.fspath(path)
    for suffix in (".pt", ".zip"):  # save adds ".pt"; SB3's save adds ".zip"
        if not os.path.exists(path) and os.path.exists(path + suffix):
            path += suffix
    if not os.path.exists(path):
        raise FileNotFoundError(f"no saved model at {path!r}")
    if _is_sb3_zip(path):
        raise ValueError(f"{path!r} is a Stable-Baselines3 model (a .zip holding 'data' and "
                         f"'policy.pth'), not a ppo_lib file: load it with "
                         f"stable_baselines3.PPO.load({path!r}); to go on in ppo_lib, copy "
                         f"its weights into a ppo_lib policy with "
                         f"ppo_lib.lab.sb3.copy_sb3_weights(sb3_model.policy, model.policy)")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise ValueError(f"{path!r} is not a readable ppo_lib model file (corrupt, truncated "
                         f"or not written by PPO.save): {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise ValueError(f"{path!r} is not a ppo_lib PPO file (it has no "
                         f"format={FILE_FORMAT!r} marker); an SB3 .zip loads with "
                         f"stable_baselines3.PPO.load, a bare state_dict with "
                         f"policy.load_state_dict")
    if data.get("version", 0) > FILE_VERSION:
        raise ValueError(f"{path!r} was written by a newer ppo_lib (file version "
                         f"{data['version']}, this one reads {FILE_VERSION})")
    return data


def _is_sb3_zip(path: str) -> bool:
    """SB3's save writes a zip of 'data' (JSON), 'policy.pth', ... (torch's own files are zips
    too, of '<name>/data.pkl', ...)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return "data" in names and bool({"policy.pth", "_stable_baselines3_version"} & names)


def _is_non_negative_number(value: Any) -> bool:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value >= 0


def _observation_batch(obs: Any, space: spaces.Space) -> tuple[np.ndarray, bool]:
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


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# --- what a model file may name ----------------------------------------------------------
# A file names classes as "module:qualname". PPO.load resolves such a name only through these
# tables and custom_objects, never by importing the module it names (a file naming sys:exit
# or os:system must not run it, nor import a module whose import has side effects).
_OWN_POLICIES = ("ppo_lib.policies:CategoricalActorCritic",
                 "ppo_lib.policies:GaussianActorCritic", "ppo_lib.atari:NatureCNNActorCritic")
# PPO arguments a custom_objects key may replace (SB3's use of custom_objects)
_ARGUMENTS = frozenset(_PLAIN_HPARAMS) | {"learning_rate", "clip_range", "clip_range_vf"}


def _activations() -> dict[str, type[nn.Module]]:
    """torch.nn's activation classes (those of torch.nn.modules.activation), by the names a
    file may give them: "torch.nn.modules.activation:ReLU" (what save writes), "torch.nn:ReLU"."""
    from torch.nn.modules import activation
    found = {}
    for attr, obj in vars(activation).items():
        if (isinstance(obj, type) and issubclass(obj, nn.Module)
                and obj.__module__ == activation.__name__):
            found[f"{activation.__name__}:{attr}"] = found[f"torch.nn:{attr}"] = obj
    return found


def _check_custom_objects(custom_objects) -> dict[str, Any]:
    if custom_objects is None:
        return {}
    if not isinstance(custom_objects, dict) or not all(isinstance(k, str)
                                                       for k in custom_objects):
        raise TypeError(f"custom_objects must be a dict mapping a name the file holds "
                        f"(\"module:Class\" or \"Class\") to the object, e.g. "
                        f"{{'MyPolicy': MyPolicy}}, got {custom_objects!r}")
    return custom_objects


def _resolve_name(name: Any, kind: str, where: str, path, custom_objects: dict) -> Any:
    """The object the file's ``name`` stands for, from custom_objects (by the whole name,
    the qualified or the bare class name) or the allowed table of ``kind`` ("policy":
    ppo_lib's policies, "class": torch.nn activations). Imports only ppo_lib's own modules."""
    if not isinstance(name, str):
        raise ValueError(f"{os.fspath(path)!r} holds {name!r} where a class name belongs "
                         f"({where}): not a file written by PPO.save")
    qualname = name.partition(":")[2] or name
    for key in (name, qualname, qualname.rpartition(".")[2]):
        if key in custom_objects:
            return custom_objects[key]
    if kind == "policy" and name in _OWN_POLICIES:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    if kind == "class" and name in _activations():
        return _activations()[name]
    allowed = ("ppo_lib's policies (CategoricalActorCritic, GaussianActorCritic, "
               "NatureCNNActorCritic)" if kind == "policy"
               else "torch.nn's activations (torch.nn.ReLU, torch.nn.Tanh, ...)")
    bare = qualname.rpartition(".")[2]
    raise ValueError(
        f"{os.fspath(path)!r} names {name!r} as its {where}, which PPO.load will not import: "
        f"a model file may name only {allowed} (nothing a file names is imported or run). "
        f"If you trust the file and the class is yours, import it and pass it: "
        f"PPO.load(path, custom_objects={{{bare!r}: {bare}}})")


def _pack_policy_kwargs(value: Any, where: str = "policy_kwargs") -> Any:
    """Classes (at any depth) -> {"__module_class__": "module:qualname"}; a file holds no
    code, so a function or other callable is refused before anything is written."""
    if isinstance(value, type):
        return {"__module_class__": _class_path(value)}
    if isinstance(value, dict):
        return {k: _pack_policy_kwargs(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_pack_policy_kwargs(v, f"{where}[{i}]")
                           for i, v in enumerate(value))
    if callable(value):
        raise ValueError(f"{where} is {value!r}, a function: a model file holds data and "
                         f"class names only; pass a class (e.g. activation_fn=torch.nn.ReLU), "
                         f"not a function or an instance")
    return value


def _unpack_policy_kwargs(value: Any, path, custom_objects: dict,
                          where: str = "policy_kwargs") -> Any:
    """Inverse of ``_pack_policy_kwargs``, each class name through ``_resolve_name``."""
    if isinstance(value, dict):
        if "__module_class__" in value:
            return _resolve_name(value["__module_class__"], "class", where, path,
                                 custom_objects)
        return {k: _unpack_policy_kwargs(v, path, custom_objects, f"{where}[{k!r}]")
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unpack_policy_kwargs(v, path, custom_objects, f"{where}[{i}]")
                           for i, v in enumerate(value))
    return value


def _saved_hyperparameters(data: dict, path) -> dict:
    """The file's hyperparameters and schedules as PPO arguments: only the plain numbers
    save writes (a file cannot set, say, tensorboard_log or loss_fn)."""
    hp = dict(data["hyperparameters"])
    unknown = sorted(set(hp) - set(_PLAIN_HPARAMS)) + sorted(
        set(data["schedules"]) - {"learning_rate", "clip_range", "clip_range_vf"})
    bad = [k for k, v in hp.items() if not isinstance(v, (bool, int, float, type(None)))]
    if unknown or bad:
        raise ValueError(f"{os.fspath(path)!r} holds hyperparameters PPO.save does not write "
                         f"({unknown or bad}): not a file written by PPO.save; pass such "
                         f"arguments to PPO.load as keywords instead")
    for name, described in data["schedules"].items():
        hp[name] = None if described is None else (
            described["value"] if described["kind"] == "constant"
            else schedule_from_dict(described))
    return hp


def _rebuild_env(env_id: Any, n_envs: int, obs_space, act_space, path) -> VecEnv | None:
    """The saved env id rebuilt, or None (a model that can only predict) when it is not
    registered here or its spaces differ (the saved env had wrappers)."""
    if not isinstance(env_id, str) or ":" in env_id:
        # gym.make("module:Env-v0") imports the module: a file must not make that happen
        raise ValueError(f"{os.fspath(path)!r} names the env {env_id!r}, whose module "
                         f"prefix gymnasium would import; PPO.load imports nothing a file "
                         f"names: import the module yourself and pass env=")
    if env_id not in gym.registry:
        return None  # e.g. registered by a package not imported here: pass env= to train
    try:
        env = make_vec_env(env_id, n_envs=n_envs)
    except Exception:  # registered but not buildable here (a missing dependency)
        return None
    if env.observation_space != obs_space or env.action_space != act_space:
        env.close()  # the saved env had wrappers (e.g. Atari preprocessing):
        return None  # pass env= to PPO.load to train on
    return env


def _space_to_data(space: spaces.Space) -> dict:
    if isinstance(space, spaces.Discrete):
        return {"kind": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {"kind": "Box", "low": torch.from_numpy(np.array(space.low, dtype=np.float64)),
                "high": torch.from_numpy(np.array(space.high, dtype=np.float64)),
                "dtype": str(space.dtype)}
    raise ValueError(f"cannot save a model for the space {space}")


def _space_from_data(data: dict) -> spaces.Space:
    if data["kind"] == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    return spaces.Box(data["low"].numpy().astype(data["dtype"]),
                      data["high"].numpy().astype(data["dtype"]), dtype=np.dtype(data["dtype"]))


def _pack(obj):
    """numpy arrays -> tagged tensors, tuples -> tagged lists (torch.load weights_only
    reads tensors, dicts, lists and numbers, not numpy objects)."""
    if isinstance(obj, np.ndarray):
        dtype = str(obj.dtype)
        arr = obj.astype(np.int64) if obj.dtype.kind in "iu" else obj
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(arr)), "dtype": dtype}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v) for v in obj]
    return obj


def _unpack(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return obj["__ndarray__"].numpy().astype(obj["dtype"])
        if "__tuple__" in obj:
            return tuple(_unpack(v) for v in obj["__tuple__"])
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v) for v in obj]
    return obj
