"""Hyperparameter search for PPO in rl-baselines3-zoo's ``-optimize`` style (issue 14):
Optuna's TPE sampler proposes PPO arguments, each trial trains and is evaluated
``n_evaluations`` times, and the median pruner stops the trials that trail the others.

    study = optimize(presets.get("cartpole_fast"), "CartPole-v1", n_trials=8,
                     total_timesteps=8192, n_startup_trials=3, engine="processes")
    study.best_value, study.best_params
    config = trial_arguments(study.best_params, presets.get("cartpole_fast"), 8192)

A trial trains ``PPO("MlpPolicy", env_id, seed=seed, **base_config, **sampler_fn(trial))``
(the sampled ``policy_kwargs`` update the base's) on one torch thread. After each
n_evaluations-th of the budget it is evaluated deterministically on ``n_eval_episodes``
episodes seeded ``grid.EVAL_SEED + i`` (run_grid's episodes), ``trial.report(mean, k)`` at
step k = 1, ..., n_evaluations (zoo's TrialEvalCallback), and the pruner may stop it. Its
value is the last evaluation, after the whole budget: run_grid's ``eval_mean`` for the same
PPO arguments and seed. A trial whose arguments PPO rejects (ValueError) or whose training
diverges (FloatingPointError) is pruned, as zoo prunes them; any other error is a FAIL. Both
keep the error in ``trial.user_attrs["error"]``, and the study goes on.

``sample_ppo_params(trial)`` is zoo's PPO search space. A sampled rollout larger than the
budget is halved until it fits and a minibatch larger than the rollout shrinks to it, so
every sampled combination trains (the values used are ``trial.user_attrs["n_steps"]`` and
``["batch_size"]``; ``trial_arguments`` rebuilds a trial's PPO arguments).

Engines (``engine=``), the same trials everywhere:
  "local"      ``study.optimize`` in this process: the same seed gives the same study.
  "processes"  ``n_workers`` (default: all cores) spawned processes, each running
               ``study.optimize`` on one JournalStorage file (``storage=PATH``, else a
               temporary file copied back into memory). Never SQLite.
  "ray"        ``n_workers`` (default: the cluster's CPUs) Ray tasks of one CPU, each running
               ``study.optimize`` against an Optuna GrpcStorageProxy of the study this process
               holds in memory (served at this node's IP), or against ``storage``: a URL or
               storage object every machine reaches (``"postgresql://..."``, JournalStorage
               on a JournalRedisBackend, a journal file on a shared file system).
               ``address`` / RAY_ADDRESS join a cluster as in run_grid.
Worker w's sampler is seeded ``seed + w``; the workers share out the trials the study lacks
(and Optuna's MaxTrialsCallback stops any that finds the study full), so a study ends with
exactly ``n_trials`` trials, and re-running with the same ``storage`` and ``study_name``
finishes an interrupted one. Ctrl-C stops the study and returns it as it is.
Sampler and pruner: zoo's TPESampler(multivariate) and MedianPruner(n_startup_trials,
n_warmup_steps=n_evaluations // 3), ``n_startup_trials`` zoo's 10, at most n_trials // 2.
"""

from __future__ import annotations

import copy
import inspect
import os
import tempfile
import shutil
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from . import grid
from .callbacks import BaseCallback
from .optimize_engines import (ZOO_STARTUP_TRIALS, in_memory, is_path, is_sqlite, picklable,
                               run_local, run_processes, run_ray, study_for)
from .validation import check_positive_int

ENGINES = grid.ENGINES
# zoo's networks (separate actor and critic) and activations, by the names a trial samples.
NET_ARCHS = {"tiny": dict(pi=[64], vf=[64]), "small": dict(pi=[64, 64], vf=[64, 64]),
             "medium": dict(pi=[256, 256], vf=[256, 256])}
ACTIVATIONS = ("tanh", "relu")


def sample_ppo_params(trial) -> dict[str, Any]:
    """rl-baselines3-zoo's PPO search space (rl_zoo3/hyperparams_opt.py) as PPO arguments.

    batch_size 2^2..2^10 and n_steps 2^5..2^12 (sampled as powers of two), gamma and
    gae_lambda as 1 - x with x log-uniform in [1e-4, 0.03] and [1e-4, 0.1], learning_rate
    log-uniform in [1e-5, 2e-3], ent_coef log-uniform in [1e-8, 0.1], clip_range in {0.1, 0.2,
    0.3, 0.4}, n_epochs in {1, 5, 10, 20}, max_grad_norm uniform in [0.3, 2], vf_coef
    uniform in [0, 1] (zoo's earlier space), net_arch tiny / small / medium and activation_fn
    tanh / relu. ``optimize`` fits n_steps and batch_size to the budget and the rollout.
    """
    import torch.nn as nn

    one_minus_gamma = trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True)
    one_minus_gae_lambda = trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True)
    activation = trial.suggest_categorical("activation_fn", list(ACTIVATIONS))
    net_arch = trial.suggest_categorical("net_arch", list(NET_ARCHS))
    return dict(
        batch_size=2 ** trial.suggest_int("batch_size_pow", 2, 10),
        n_steps=2 ** trial.suggest_int("n_steps_pow", 5, 12),
        gamma=1 - one_minus_gamma, gae_lambda=1 - one_minus_gae_lambda,
        learning_rate=trial.suggest_float("learning_rate", 1e-5, 2e-3, log=True),
        ent_coef=trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        clip_range=trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        n_epochs=trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        max_grad_norm=trial.suggest_float("max_grad_norm", 0.3, 2.0),
        vf_coef=trial.suggest_float("vf_coef", 0.0, 1.0),
        policy_kwargs=dict(net_arch=copy.deepcopy(NET_ARCHS[net_arch]),
                           activation_fn={"tanh": nn.Tanh, "relu": nn.ReLU}[activation]))


def ppo_default(name: str) -> Any:
    from .ppo import PPO

    return inspect.signature(PPO.__init__).parameters[name].default


def fitted(sampled: Mapping[str, Any], base_config: Mapping[str, Any],
           total_timesteps: int) -> dict[str, Any]:
    """The trial's PPO arguments: the base updated by the sample (policy_kwargs merged), a
    sampled n_steps halved while a rollout (n_steps * n_envs) exceeds the budget, a sampled
    batch_size cut to the rollout (zoo would prune such a trial; this trains it)."""
    config = {**base_config, **sampled}
    if "policy_kwargs" in base_config and "policy_kwargs" in sampled:
        config["policy_kwargs"] = {**base_config["policy_kwargs"], **sampled["policy_kwargs"]}
    n_envs = config.get("n_envs", ppo_default("n_envs"))
    if "n_steps" in sampled:
        while config["n_steps"] > 1 and config["n_steps"] * n_envs > total_timesteps:
            config["n_steps"] //= 2
    if "batch_size" in sampled:
        rollout = config.get("n_steps", ppo_default("n_steps")) * n_envs
        config["batch_size"] = min(config["batch_size"], rollout)
    return config


def trial_arguments(params: Mapping[str, Any], base_config: Mapping[str, Any] | None = None,
                    total_timesteps: int = 50_000,
                    sampler_fn: Callable = sample_ppo_params) -> dict[str, Any]:
    """The PPO arguments a trial with these ``params`` (``study.best_params``) trained with,
    given the study's base_config, total_timesteps and sampler_fn."""
    import optuna

    return fitted(sampler_fn(optuna.trial.FixedTrial(dict(params))), dict(base_config or {}),
                  total_timesteps)


def evaluate(model, env_id: str, n_eval_episodes: int) -> float:
    """run_grid's evaluation: deterministic, episode i seeded EVAL_SEED + i."""
    from .evaluation import evaluate_policy

    mean, _ = evaluate_policy(model, env_id, n_eval_episodes=n_eval_episodes,
                              deterministic=True, seed=grid.EVAL_SEED)
    return float(mean)


class TrialEvaluation(BaseCallback):
    """zoo's TrialEvalCallback: after the update that completes k / n_evaluations of the
    budget (k < n_evaluations; the last evaluation is the objective's, after training),
    evaluate, ``trial.report(mean, k)``, and stop the trial if the pruner says so."""

    def __init__(self, trial, env_id: str, total_timesteps: int, n_evaluations: int,
                 n_eval_episodes: int):
        super().__init__()
        self.trial, self.env_id, self.total_timesteps = trial, env_id, total_timesteps
        self.n_evaluations, self.n_eval_episodes = n_evaluations, n_eval_episodes
        self.step = 0

    def _on_update_end(self) -> None:
        import optuna

        done = self.model.num_timesteps
        step = min(self.n_evaluations - 1, done * self.n_evaluations // self.total_timesteps)
        if done >= self.total_timesteps or step <= self.step:
            return
        self.step = step
        self.trial.report(evaluate(self.model, self.env_id, self.n_eval_episodes), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at evaluation {step} of {self.n_evaluations}")


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Objective:
    """One trial: sample, train with evaluations (pruned or not), the last evaluation's mean.
    A plain object, so spawned processes and Ray tasks receive it by pickle."""

    def __init__(self, base_config: Mapping[str, Any], env_id: str, total_timesteps: int,
                 n_evaluations: int, n_eval_episodes: int, sampler_fn: Callable, seed: int):
        self.base_config, self.env_id = dict(base_config), env_id
        self.total_timesteps, self.n_evaluations = total_timesteps, n_evaluations
        self.n_eval_episodes, self.sampler_fn, self.seed = n_eval_episodes, sampler_fn, seed

    def __call__(self, trial) -> float:
        import optuna

        try:
            config = fitted(self.sampler_fn(trial), self.base_config, self.total_timesteps)
            for name in ("n_steps", "batch_size"):
                if name in config:
                    trial.set_user_attr(name, config[name])
            return self.train(trial, config)
        except optuna.TrialPruned:
            raise
        except (ValueError, FloatingPointError) as error:  # zoo prunes these
            trial.set_user_attr("error", describe(error))
            raise optuna.TrialPruned(describe(error)) from error
        except Exception as error:
            trial.set_user_attr("error", describe(error))
            raise

    def train(self, trial, config: Mapping[str, Any]) -> float:
        from .ppo import PPO

        model = PPO("MlpPolicy", self.env_id, seed=self.seed, **config)
        model.learn(self.total_timesteps,
                    callback=TrialEvaluation(trial, self.env_id, self.total_timesteps,
                                             self.n_evaluations, self.n_eval_episodes))
        value = evaluate(model, self.env_id, self.n_eval_episodes)
        trial.report(value, self.n_evaluations)
        return value


def check_inputs(base_config, env_id, n_trials, total_timesteps, n_evaluations,
                 n_eval_episodes, sampler_fn, engine, address, storage, study_name, seed,
                 n_workers, n_startup_trials) -> None:
    """Every argument of optimize checked before anything runs."""
    import optuna

    grid.check_engine(engine, address)
    if n_workers is not None:
        if engine == "local":
            raise ValueError(f"n_workers={n_workers!r} is for engine='processes' or 'ray'; "
                             f"engine='local' runs one trial at a time")
        check_positive_int("n_workers", n_workers)
    if not isinstance(base_config, Mapping):
        raise ValueError(f"base_config must be a dict of PPO arguments, got "
                         f"{type(base_config).__name__}")
    known = grid.ppo_arguments()
    for name in base_config:
        if name not in known:
            raise ValueError(f"base_config key {name!r} is not a PPO argument optimize can set "
                             f"(seed is optimize's own); expected one of: {', '.join(known)}")
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a gymnasium env id (a str), got {env_id!r}")
    for name, value in [("n_trials", n_trials), ("total_timesteps", total_timesteps),
                        ("n_evaluations", n_evaluations), ("n_eval_episodes", n_eval_episodes)]:
        check_positive_int(name, value)
    if n_startup_trials is not None and (isinstance(n_startup_trials, bool) or not isinstance(
            n_startup_trials, int) or n_startup_trials < 0):
        raise ValueError(f"n_startup_trials must be None or an integer >= 0, "
                         f"got {n_startup_trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not callable(sampler_fn):
        raise ValueError(f"sampler_fn must be a function trial -> dict of PPO arguments, "
                         f"got {sampler_fn!r}")
    if study_name is not None and not isinstance(study_name, str):
        raise ValueError(f"study_name must be None or a str, got {study_name!r}")
    check_storage(storage, engine, optuna.storages.BaseStorage)
    if engine == "processes":
        picklable("sampler_fn", sampler_fn, engine)
        picklable("base_config", dict(base_config), engine)


def check_storage(storage, engine: str, storage_types) -> None:
    if storage is not None and not (isinstance(storage, (str, os.PathLike, storage_types))):
        raise ValueError(f"storage must be None, a journal file path, an Optuna storage URL or "
                         f"an optuna storage object, got {storage!r}")
    if engine != "local" and is_sqlite(storage):
        raise ValueError(f"storage={storage!r} with engine={engine!r}: SQLite locks the whole "
                         f"database file on every write, so parallel workers fail with "
                         f"'database is locked' (Optuna advises against it). Give a file path "
                         f"(a JournalStorage file, e.g. 'study.log'), or a server database URL "
                         f"('postgresql://...'), or leave storage=None")
    if engine == "processes" and storage is not None and not is_path(storage) \
            and not isinstance(storage, str):
        import optuna

        if isinstance(storage, optuna.storages.InMemoryStorage):
            raise ValueError("storage=InMemoryStorage() lives in this process; "
                             "engine='processes' needs a journal file path (or None)")
        picklable("storage", storage, engine)


def optimize(base_config: Mapping[str, Any] | None = None, env_id: str = "CartPole-v1",
             n_trials: int = 8, total_timesteps: int = 8192, n_evaluations: int = 4,
             n_eval_episodes: int = 5, sampler_fn: Callable = sample_ppo_params,
             engine: str = "local", address: str | None = None, storage: Any = None,
             study_name: str | None = None, seed: int = 0, n_workers: int | None = None,
             n_startup_trials: int | None = None, progress_bar: bool = True):
    """Search PPO's hyperparameters on ``env_id`` with Optuna (see the module docstring):
    ``n_trials`` trials of ``total_timesteps`` steps each, TPE sampler and median pruner,
    on ``engine``. Returns the optuna.Study (``study.best_params``, ``study.best_value``,
    ``study.trials_dataframe()``)."""
    base_config = {} if base_config is None else base_config
    check_inputs(base_config, env_id, n_trials, total_timesteps, n_evaluations,
                 n_eval_episodes, sampler_fn, engine, address, storage, study_name, seed,
                 n_workers, n_startup_trials)
    if n_startup_trials is None:
        n_startup_trials = min(ZOO_STARTUP_TRIALS, n_trials // 2)
    settings = dict(seed=seed, n_trials=n_trials, n_startup_trials=n_startup_trials,
                    n_evaluations=n_evaluations)
    objective = Objective(base_config, env_id, total_timesteps, n_evaluations,
                          n_eval_episodes, sampler_fn, seed)
    temporary = None
    if engine == "processes" and storage is None:
        temporary = tempfile.mkdtemp(prefix="ppo_optimize_")
        storage = os.path.join(temporary, "journal.log")
    if engine == "ray" and storage is None:
        import optuna

        storage = optuna.storages.InMemoryStorage()
    study = study_for(storage, study_name, settings)
    try:
        if len(study.get_trials(deepcopy=False)) >= n_trials:
            pass  # a stored study already finished: nothing to start
        elif engine == "local":
            run_local(study, objective, n_trials, progress_bar)
        elif engine == "processes":
            workers = (os.cpu_count() or 1) if n_workers is None else n_workers
            run_processes(study, objective, settings, storage, max(1, min(workers, n_trials)),
                          progress_bar)
        else:
            run_ray(study, objective, settings, storage, n_workers, address, progress_bar)
    except KeyboardInterrupt:
        warnings.warn(f"optimize interrupted: returning the study with its "
                      f"{len(study.trials)} trials", stacklevel=2)
    finally:
        if temporary is not None:
            study = in_memory(storage, study.study_name, settings)
            shutil.rmtree(temporary, ignore_errors=True)
    return study
