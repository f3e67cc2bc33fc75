"""Callbacks: code that runs at fixed points of ``PPO.learn`` (SB3's interface, lesson 07).

Override any of the hooks of ``BaseCallback``:

    _on_training_start()   before the first rollout
    _on_rollout_start()    before each rollout
    _on_step() -> bool     after every vector-env step (return False to stop training)
    _on_rollout_end()      after each rollout, before the update
    _on_update_end()       after each update, once its logger row exists
    _on_training_end()     at the end of learn()

``self.model`` is the PPO being trained, ``self.num_timesteps`` its step count,
``self.n_calls`` how many times ``_on_step`` ran.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence

import numpy as np


class BaseCallback:
    def __init__(self, verbose: int = 0):
        self.verbose = verbose
        self.model = None
        self.n_calls = 0
        self.num_timesteps = 0

    # --- called by the trainer ---------------------------------------------------------
    def init_callback(self, model) -> None:
        self.model = model
        self._init_callback()

    def on_training_start(self) -> None:
        self.num_timesteps = self.model.num_timesteps
        self._on_training_start()

    def on_rollout_start(self) -> None:
        self._on_rollout_start()

    def on_step(self) -> bool:
        self.n_calls += 1
        self.num_timesteps = self.model.num_timesteps
        return self._on_step() is not False

    def on_rollout_end(self) -> None:
        self._on_rollout_end()

    def on_update_end(self) -> None:
        self._on_update_end()

    def on_training_end(self) -> None:
        self._on_training_end()

    # --- to override -------------------------------------------------------------------
    def _init_callback(self) -> None:
        pass

    def _on_training_start(self) -> None:
        pass

    def _on_rollout_start(self) -> None:
        pass

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        pass

    def _on_update_end(self) -> None:
        pass

    def _on_training_end(self) -> None:
        pass


class CallbackList(BaseCallback):
    """Several callbacks called in order; training stops if any ``_on_step`` says so."""

    def __init__(self, callbacks: Sequence[BaseCallback]):
        super().__init__()
        self.callbacks = list(callbacks)

    def _init_callback(self) -> None:
        for cb in self.callbacks:
            cb.init_callback(self.model)

    def _on_training_start(self) -> None:
        for cb in self.callbacks:
            cb.on_training_start()

    def _on_rollout_start(self) -> None:
        for cb in self.callbacks:
            cb.on_rollout_start()

    def _on_step(self) -> bool:
        keep_going = True
        for cb in self.callbacks:
            keep_going = cb.on_step() and keep_going
        return keep_going

    def _on_rollout_end(self) -> None:
        for cb in self.callbacks:
            cb.on_rollout_end()

    def _on_update_end(self) -> None:
        for cb in self.callbacks:
            cb.on_update_end()

    def _on_training_end(self) -> None:
        for cb in self.callbacks:
            cb.on_training_end()


class FunctionCallback(BaseCallback):
    """A plain function as a callback, as SB3's ``ConvertCallback``, but called as
    ``fn(model)`` after every step (SB3 passes ``(locals_, globals_)``, the rollout loop's
    variables, which a fast path does not have): returning False stops training. A function
    that cannot be called with one argument is a TypeError here, before training starts."""

    def __init__(self, fn):
        super().__init__()
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise TypeError(f"a function callback is called as fn(model) -> bool after every "
                            f"step, but {getattr(fn, '__name__', fn)!r} cannot take one argument "
                            f"(SB3's fn(locals_, globals_)? read what it needs from the model: "
                            f"model.num_timesteps, model.env, model.logger.rows)") from None
        except ValueError:  # no signature to inspect (some builtins): call it and see
            pass
        self.fn = fn

    def _on_step(self) -> bool:
        return self.fn(self.model) is not False


def as_callback(callback) -> BaseCallback:
    """None, a callback, a list of callbacks or a function -> one BaseCallback."""
    if callback is None:
        return BaseCallback()
    if isinstance(callback, BaseCallback):
        return callback
    if isinstance(callback, (list, tuple)):
        return CallbackList([as_callback(cb) for cb in callback])
    if callable(callback):
        return FunctionCallback(callback)
    raise TypeError(f"callback must be a BaseCallback, a list of them or a function, "
                    f"got {callback!r}")


class CheckpointCallback(BaseCallback):
    """Save the model every ``save_freq`` calls of ``_on_step`` (i.e. every
    save_freq * n_envs timesteps, as SB3) to ``save_path/name_prefix_<steps>_steps.pt``."""

    def __init__(self, save_freq: int, save_path: str, name_prefix: str = "ppo_model",
                 verbose: int = 0):
        super().__init__(verbose)
        if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
            raise ValueError(f"save_freq must be a positive integer, got {save_freq!r}")
        self.save_freq, self.save_path, self.name_prefix = save_freq, save_path, name_prefix
        self.saved: list[str] = []

    def _init_callback(self) -> None:
        os.makedirs(self.save_path, exist_ok=True)

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            path = os.path.join(self.save_path,
                                f"{self.name_prefix}_{self.num_timesteps}_steps.pt")
            self.model.save(path)
            self.saved.append(path)
            if self.verbose >= 1:
                print(f"Saving model checkpoint to {path}")
        return True


class EvalCallback(BaseCallback):
    """Evaluate the policy every ``eval_freq`` calls of ``_on_step`` on ``eval_env``.

    Records ``evaluations_timesteps``, ``evaluations_results`` (episode returns of each
    evaluation) and ``last_mean_reward`` / ``best_mean_reward``; saves the best model to
    ``best_model_save_path/best_model.pt`` when given. With ``callback_on_new_best`` or
    ``reward_threshold`` it stops training once the mean return reaches the threshold.
    """

    def __init__(self, eval_env, eval_freq: int = 10_000, n_eval_episodes: int = 5,
                 deterministic: bool = True, best_model_save_path: str | None = None,
                 reward_threshold: float | None = None, seed: int | None = 0,
                 verbose: int = 0):
        super().__init__(verbose)
        if isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1:
            raise ValueError(f"eval_freq must be a positive integer, got {eval_freq!r}")
        self.eval_env, self.eval_freq, self.n_eval_episodes = eval_env, eval_freq, n_eval_episodes
        self.deterministic, self.best_model_save_path = deterministic, best_model_save_path
        self.reward_threshold, self.seed = reward_threshold, seed
        self.evaluations_timesteps: list[int] = []
        self.evaluations_results: list[list[float]] = []
        self.evaluations_length: list[list[int]] = []
        self.last_mean_reward = -np.inf
        self.best_mean_reward = -np.inf

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq != 0:
            return True
        from .evaluation import evaluate_policy

        returns, lengths = evaluate_policy(self.model, self.eval_env, self.n_eval_episodes,
                                           self.deterministic, seed=self.seed,
                                           return_episode_rewards=True)
        self.evaluations_timesteps.append(self.num_timesteps)
        self.evaluations_results.append(returns)
        self.evaluations_length.append(lengths)
        self.last_mean_reward = float(np.mean(returns))
        if self.verbose >= 1:
            print(f"Eval num_timesteps={self.num_timesteps}, episode_reward="
                  f"{self.last_mean_reward:.2f} +/- {np.std(returns):.2f}")
        if self.last_mean_reward > self.best_mean_reward:
            self.best_mean_reward = self.last_mean_reward
            if self.best_model_save_path is not None:
                os.makedirs(self.best_model_save_path, exist_ok=True)
                self.model.save(os.path.join(self.best_model_save_path, "best_model.pt"))
        if self.reward_threshold is not None and self.last_mean_reward >= self.reward_threshold:
            return False
        return True
