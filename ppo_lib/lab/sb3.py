"""ppo_lib and Stable-Baselines3 side by side (lesson 08).

Both libraries spell their hyperparameters the same way on purpose, so most of a ppo_lib
configuration is an SB3 configuration already. The differences are where the argument
lives: SB3 sets the number of envs and observation/reward normalisation on the vector env
(``make_vec_env``, ``VecNormalize``), not on ``PPO``; and a few ppo_lib options (a shared
trunk, the lesson-05 hooks ``advantage_fn`` / ``loss_fn``) have no SB3 equivalent.

- ``NAME_TABLE``: each ppo_lib name, where SB3 takes it, and a note.
- ``to_sb3_kwargs(config)``: a ppo_lib ``PPO(**config)`` dict -> SB3 ``PPO(**kwargs)`` dict.
- ``sb3_env_kwargs(config)``: the part of the config that SB3 puts on the vector env.
- ``from_sb3_kwargs(kwargs, n_envs=1)``: back again.
- ``read_progress_csv(path)``: SB3's ``progress.csv`` -> rows that ``diagnose`` accepts.
- ``SB3LogRecorder``: an SB3 callback that keeps one row per update, like ppo_lib's logger.
- ``read_sb3_log(rows)``: which fix a log asks for (the lesson-08 exercise's reference).
- ``copy_sb3_weights(sb3_policy, policy)``: SB3 weights into a ppo_lib policy (same loss test).
- ``make_sb3(config, env_id)``: SB3's PPO and vector env built from a ppo_lib config.
- ``train_sb3(config, seed)``: a trainer for ``ppo_lib.sweeps.run_seeds`` that runs SB3.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from ..diagnostics import APPROX_KL_HIGH, APPROX_KL_LOW, CLIP_FRACTION_HIGH

# (ppo_lib name, where SB3 takes it, note). Same spelling unless the second column says so.
NAME_TABLE: tuple[tuple[str, str, str], ...] = (
    ("policy", "PPO(policy=...)", '"MlpPolicy" in both; a ppo_lib ActorCritic class has no SB3 twin'),
    ("env", "PPO(env=...)", "an id string, an Env or a VecEnv in SB3; ppo_lib also takes env factories"),
    ("n_envs", "make_vec_env(env_id, n_envs=...)", "SB3 sets it on the vector env, not on PPO"),
    ("learning_rate", "PPO(learning_rate=...)", "float or f(progress_remaining), 1 -> 0"),
    ("n_steps", "PPO(n_steps=...)", "steps per env per rollout: a batch is n_steps * n_envs"),
    ("batch_size", "PPO(batch_size=...)", "minibatch size"),
    ("n_epochs", "PPO(n_epochs=...)", "passes over each rollout"),
    ("gamma", "PPO(gamma=...)", "discount"),
    ("gae_lambda", "PPO(gae_lambda=...)", "GAE lambda"),
    ("clip_range", "PPO(clip_range=...)", "eps; float or f(progress_remaining)"),
    ("clip_range_vf", "PPO(clip_range_vf=...)", "None: no value clipping (SB3's default)"),
    ("normalize_advantage", "PPO(normalize_advantage=...)", "per minibatch in both"),
    ("ent_coef", "PPO(ent_coef=...)", "entropy bonus weight"),
    ("vf_coef", "PPO(vf_coef=...)", "value loss weight"),
    ("max_grad_norm", "PPO(max_grad_norm=...)", "global gradient-norm clip"),
    ("target_kl", "PPO(target_kl=...)", "stop the update when approx_kl > 1.5 * target_kl"),
    ("normalize_obs", "VecNormalize(venv, norm_obs=...)", "a vector-env wrapper in SB3"),
    ("normalize_reward", "VecNormalize(venv, norm_reward=...)", "a vector-env wrapper in SB3"),
    ("policy_kwargs", "PPO(policy_kwargs=...)", "net_arch=dict(pi=[...], vf=[...]) in SB3 >= 1.8; "
     "no 'shared' trunk in SB3 2.x"),
    ("tensorboard_log", "PPO(tensorboard_log=...)", "a folder of event files"),
    ("seed", "PPO(seed=...)", "also seeds the envs"),
    ("verbose", "PPO(verbose=...)", "0 quiet, 1 prints the log table"),
    ("advantage_fn", "(none)", "lesson-05 hook: SB3 computes GAE inside its RolloutBuffer"),
    ("loss_fn", "(none)", "lesson-05 hook: SB3's loss is written inside PPO.train()"),
)

# ppo_lib arguments that SB3's PPO takes under the same name.
SB3_PPO_NAMES = frozenset(
    name for name, where, _ in NAME_TABLE if where.startswith("PPO(")) - {"env"}
# ppo_lib arguments that SB3 sets on the vector env instead.
ENV_NAMES = frozenset({"env", "n_envs", "normalize_obs", "normalize_reward"})
# ppo_lib arguments SB3 cannot express.
NO_SB3_NAMES = frozenset({"advantage_fn", "loss_fn"})


def _sb3_policy_kwargs(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Copy ``policy_kwargs`` for SB3 2.x: ``net_arch`` as a list or dict(pi=..., vf=...)."""
    out = dict(policy_kwargs)
    net_arch = out.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], Mapping):
        # The source notes' (SB3 < 1.8) format [dict(pi=..., vf=...)]: SB3 2.x warns and
        # uses net_arch[0]; say what is meant instead.
        net_arch = net_arch[0]
    if isinstance(net_arch, Mapping):
        if net_arch.get("shared"):
            raise ValueError(
                f"policy_kwargs['net_arch'] has a shared trunk {net_arch['shared']!r}: SB3 2.x "
                "has no shared layers in net_arch (removed in SB3 1.8); expected "
                "dict(pi=[...], vf=[...]) or a list of layer sizes")
        net_arch = {key: list(net_arch[key]) for key in ("pi", "vf") if key in net_arch}
    elif isinstance(net_arch, list):
        net_arch = list(net_arch)
    if "net_arch" in out:
        out["net_arch"] = net_arch
    return out


def to_sb3_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of SB3's ``PPO`` for a ppo_lib ``PPO(**config)`` configuration.

    Arguments that SB3 takes under the same name are copied (schedules stay the same
    callables); ``policy_kwargs`` is copied with ``net_arch`` in SB3 2.x's format. The
    env-side arguments (``env``, ``n_envs``, ``normalize_obs``, ``normalize_reward``) are left
    out: pass them to ``make_vec_env`` / ``VecNormalize`` (see ``sb3_env_kwargs``). The
    config is not modified. Raises ValueError for an argument SB3 cannot express.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict of PPO arguments, got {type(config).__name__}")
    kwargs: dict[str, Any] = {}
    for name, value in config.items():
        if name in NO_SB3_NAMES:
            if value is None:
                continue
            raise ValueError(f"config[{name!r}] = {value!r} has no Stable-Baselines3 "
                             "equivalent; expected None or no such key")
        if name in ENV_NAMES:
            continue
        if name not in SB3_PPO_NAMES:
            raise ValueError(f"config has an unknown key {name!r}; expected one of "
                             f"{sorted(SB3_PPO_NAMES | ENV_NAMES | NO_SB3_NAMES)}")
        if name == "policy" and not isinstance(value, str):
            raise ValueError(f"config['policy'] = {value!r}: SB3 needs a policy name such as "
                             "'MlpPolicy' or one of its own policy classes")
        if name == "policy_kwargs" and value is not None:
            value = _sb3_policy_kwargs(value)
        kwargs[name] = value
    return kwargs


def _keyword_defaults(fn, skip: set[str]) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if name not in skip and p.default is not inspect.Parameter.empty}


def sb3_defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    """(SB3 PPO's keyword defaults, ActorCriticPolicy's keyword defaults), read from their
    signatures (what SB3 does with an argument left out)."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.policies import ActorCriticPolicy

    return (_keyword_defaults(SB3PPO.__init__, {"self", "env", "_init_setup_model"}),
            _keyword_defaults(ActorCriticPolicy.__init__, {"self", "observation_space",
                                                           "action_space", "lr_schedule"}))


def sb3_env_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The env-side part of a ppo_lib configuration, as SB3 sets it:
    ``make_vec_env(env_id, n_envs=...)`` and ``VecNormalize(venv, norm_obs=..., norm_reward=...)``.
    """
    return {
        "n_envs": int(config.get("n_envs", 1)),
        "norm_obs": bool(config.get("normalize_obs", False)),
        "norm_reward": bool(config.get("normalize_reward", False)),
    }


def from_sb3_kwargs(kwargs: Mapping[str, Any], n_envs: int = 1,
                    norm_obs: bool = False, norm_reward: bool = False) -> dict[str, Any]:
    """A ppo_lib configuration from SB3 ``PPO`` keyword arguments plus the vector-env
    settings. Keys SB3 has and ppo_lib does not raise ValueError naming the key."""
    config: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name not in SB3_PPO_NAMES:
            raise ValueError(f"SB3 argument {name!r} has no ppo_lib equivalent; expected one "
                             f"of {sorted(SB3_PPO_NAMES)}")
        config[name] = _sb3_policy_kwargs(value) if name == "policy_kwargs" and value else value
    config["n_envs"] = n_envs
    if norm_obs:
        config["normalize_obs"] = True
    if norm_reward:
        config["normalize_reward"] = True
    return config


def make_sb3(config: Mapping[str, Any], env_id: str, seed: int | None = None, **extra: Any):
    """An SB3 ``PPO`` built from a ppo_lib configuration: the vector env (with
    ``VecNormalize`` if asked) and the model. ``extra`` goes to SB3's PPO as is."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env_kwargs = sb3_env_kwargs(config)
    venv = make_vec_env(env_id, n_envs=env_kwargs["n_envs"], seed=seed)
    if env_kwargs["norm_obs"] or env_kwargs["norm_reward"]:
        venv = VecNormalize(venv, norm_obs=env_kwargs["norm_obs"],
                            norm_reward=env_kwargs["norm_reward"])
    kwargs = to_sb3_kwargs(config)
    kwargs.setdefault("policy", "MlpPolicy")
    if seed is not None:
        kwargs["seed"] = seed
    kwargs.update(extra)
    policy = kwargs.pop("policy")
    return SB3PPO(policy, venv, **kwargs)


def _number(text: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_progress_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """SB3's ``progress.csv`` (``configure(folder, ["csv"])``) as a list of rows.

    One dict per dumped row, numbers as floats; empty cells (SB3 leaves the ``train/``
    columns empty in the first row, as it dumps before the first update) are left out, so
    that ``diagnose(row)`` sees only what was measured. Note SB3's timing: the ``train/``
    values in row k come from the update made after rollout k - 1.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path {path!r} does not exist; expected SB3's progress.csv "
                                "(configure(folder, ['csv']) writes folder/progress.csv)")
    rows = []
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            row = {key: _number(text) for key, text in record.items()}
            rows.append({key: value for key, value in row.items() if value is not None})
    return rows


def last_metrics(rows: list[Mapping[str, float]], keys: tuple[str, ...] | None = None,
                 window: int = 1) -> dict[str, float]:
    """The mean of each metric over the last ``window`` rows where it was measured."""
    if not rows:
        raise ValueError("rows is empty; expected at least one logger row")
    keys = keys or tuple(dict.fromkeys(k for row in rows for k in row))
    out = {}
    for key in keys:
        values = [row[key] for row in rows if row.get(key) is not None]
        if values:
            tail = values[-window:]
            out[key] = sum(tail) / len(tail)
    return out


class SB3LogRecorder(BaseCallback):
    """Keeps one row per update of an SB3 PPO run, with the keys ppo_lib's logger uses.

    SB3 dumps its log before each update, so its ``train/`` values arrive one row late and
    the last update's are never dumped. This callback reads the logger's pending values at
    the start of each rollout (and at the end of training), when they hold the update just
    made, and pairs them with the episode returns that update trained on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self._rollouts = 0

    def _row(self) -> None:
        row = {key: float(value) for key, value in self.model.logger.name_to_value.items()
               if key.startswith("train/") and value is not None}
        if not row:
            return
        episodes = self.model.ep_info_buffer
        if episodes:
            row["rollout/ep_rew_mean"] = sum(e["r"] for e in episodes) / len(episodes)
            row["rollout/ep_len_mean"] = sum(e["l"] for e in episodes) / len(episodes)
        row["time/total_timesteps"] = float(self.num_timesteps)
        self.rows.append(row)

    def _on_rollout_start(self) -> None:
        if self._rollouts > 0:
            self._row()
        self._rollouts += 1

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._row()

    def get(self, key: str) -> list[float]:
        """The values of one key over updates (NaN where a row lacks it)."""
        return [row.get(key, float("nan")) for row in self.rows]


def train_sb3(config: Mapping[str, Any], seed: int, env_id: str = "CartPole-v1",
              total_timesteps: int = 15_000) -> tuple[list[dict[str, float]], float]:
    """Train Stable-Baselines3's PPO on a ppo_lib configuration (mapped by ``make_sb3``),
    one row per update recorded by ``SB3LogRecorder``: a trainer for ``ppo_lib.sweeps``
    (``run_seeds(partial(train_sb3, env_id=..., total_timesteps=...), config, ...)``),
    returning its rows and the CPU seconds it took."""
    start = time.process_time()
    model = make_sb3(config, env_id, seed=seed, device="cpu")
    recorder = SB3LogRecorder()
    model.learn(total_timesteps, callback=recorder)
    return recorder.rows, time.process_time() - start


# What a log can tell you to do (lesson 08, exercise ``read_sb3_log``).
FIXES = ("lower learning_rate", "raise learning_rate", "fix the critic", "nothing to fix")
COLLAPSED_ENTROPY = 0.01  # below this mean entropy the policy is (almost) deterministic


def read_sb3_log(rows: list[Mapping[str, float]], window: int = 5) -> str:
    """The first fix an SB3 log asks for, one of ``FIXES``, from the troubleshooting rules.

    Uses the mean of each metric over the last ``window`` rows that measured it (SB3's first
    row has no ``train/`` values). In order: updates too large (approx_kl > 0.05 or
    clip_fraction > 0.5) -> "lower learning_rate" (they also wreck the critic, so fix this
    first); a collapsed, deterministic policy (entropy = -entropy_loss < 0.01), the usual end
    of too-large updates, which makes approx_kl read 0 -> "lower learning_rate" too; updates
    too small (approx_kl < 0.001) -> "raise learning_rate"; critic no better than the mean
    (explained_variance <= 0) -> "fix the critic"; else "nothing to fix".
    """
    m = last_metrics(rows, ("train/approx_kl", "train/clip_fraction",
                            "train/explained_variance", "train/entropy_loss"), window=window)
    kl = m.get("train/approx_kl")
    clip = m.get("train/clip_fraction")
    ev = m.get("train/explained_variance")
    entropy_loss = m.get("train/entropy_loss")
    if (kl is not None and kl > APPROX_KL_HIGH) or (clip is not None and clip > CLIP_FRACTION_HIGH):
        return "lower learning_rate"
    if entropy_loss is not None and -entropy_loss < COLLAPSED_ENTROPY:
        return "lower learning_rate"
    if kl is not None and kl < APPROX_KL_LOW:
        return "raise learning_rate"
    if ev is not None and ev <= 0:
        return "fix the critic"
    return "nothing to fix"


def copy_sb3_weights(sb3_policy: Any, policy: Any) -> None:
    """Load an SB3 ``ActorCriticPolicy``'s weights into a ppo_lib policy of the same shape.

    ppo_lib's MLP actor-critics (categorical, Gaussian, MultiDiscrete, MultiBinary) name
    their layers as SB3 does (``mlp_extractor.policy_net``, ``mlp_extractor.value_net``,
    ``action_net``, ``value_net``, ``log_std``), so the state dicts match key for key when
    both have the same ``net_arch`` (separate pi and vf networks; SB3's Flatten features
    extractor has no weights). ``sb3_policy`` may also be a state dict.
    """
    state = sb3_policy if isinstance(sb3_policy, Mapping) else sb3_policy.state_dict()
    own = policy.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"sb3_policy's weights do not match policy's: missing {missing}, "
                         f"unexpected {unexpected}; expected the same net_arch in both")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"sb3_policy's {key} has shape {tuple(value.shape)} but policy's "
                             f"has {tuple(own[key].shape)}; expected the same net_arch")
    policy.load_state_dict(state)
