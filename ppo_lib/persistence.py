"""Saving and loading a PPO model (``PPO.save``, ``PPO.load``), as SB3's ``save_util``.

One file readable by ``torch.load(path, weights_only=True)``, plain data only. It holds the
weights, the optimizer, the random states, the observation / reward normalisation and the env
state: learn -> save -> load -> learn(reset_num_timesteps=False) equals learning without the
pause (exact for classic-control and MuJoCo envs, see ``VecEnv.get_state``).

A file names classes as "module:qualname". ``load_model`` resolves such a name only through
the tables below and ``custom_objects``, never by importing the module it names (a file
naming sys:exit or os:system must not run it, nor import a module whose import has side
effects).
"""

from __future__ import annotations

import importlib
import os
import pickle
import random
import re
import warnings
import zipfile
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .envs import VECTORIZATION_MODES, VecEnv, make_vec_env
from .plain_data import pack, space_from_data, space_to_data, unpack
from .schedules import schedule_from_dict, schedule_to_dict
from .validation import check_positive_int

FILE_FORMAT = "ppo_lib.PPO"
FILE_VERSION = 1

# Hyperparameters saved with the model (all plain numbers / bools / None).
PLAIN_HPARAMS = ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
                 "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "target_kl",
                 "normalize_obs", "normalize_reward", "seed", "verbose", "kl_penalty",
                 "kl_penalty_target")
SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")
# The policies a file may name without custom_objects
OWN_POLICIES = (*(f"ppo_lib.policies:{kind}ActorCritic" for kind in ("Categorical", "Gaussian",
                  "MultiCategorical", "Bernoulli")), "ppo_lib.atari:NatureCNNActorCritic")
# PPO arguments a custom_objects key may replace (SB3's use of custom_objects)
ARGUMENTS = frozenset(PLAIN_HPARAMS) | set(SCHEDULES)


def save_model(model, path: str | os.PathLike) -> str:
    """Write ``model`` (a PPO) to ``path`` (".pt" added when it has no suffix), atomically:
    a temporary file in the same folder, then ``os.replace``, so a crash mid-save leaves any
    previous file intact. Returns the path written."""
    path = _with_suffix(path)
    data = model_data(model)
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
        _check_readable(tmp, path)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, f"cannot save the model to {path!r}: {err.strerror or err} "
                                 f"(is {folder!r} writable?); nothing was written, a file "
                                 f"already at that path is unchanged") from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _check_readable(tmp: str, path: str) -> None:
    """A ValueError, before the file replaces anything, if ``PPO.load`` could not read it (a
    value torch.load(weights_only=True) refuses slipped into the data)."""
    try:
        torch.load(tmp, weights_only=True)
    except pickle.UnpicklingError as err:
        why = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise ValueError(f"cannot save the model to {path!r}: it holds a "
                         f"{why.group(1) if why else 'value'} object, which a model file "
                         f"(plain data) cannot: pass plain numbers as hyperparameters. "
                         f"Nothing was written") from None


def model_data(model) -> dict:
    """What ``save_model`` writes: plain data (tensors, numbers, strings, dicts, lists)."""
    schedules = {}
    for name in SCHEDULES:
        value = getattr(model, name)
        if value is None or not callable(value):
            schedules[name] = None if value is None else {"kind": "constant", "value": float(value)}
            continue
        described = schedule_to_dict(value)
        if described is None:
            warnings.warn(f"{name} is a function ({value!r}) that cannot be saved without "
                          f"pickling code; saved as its initial value. Use "
                          f"ppo_lib.schedules.linear_schedule, or pass {name}= to "
                          f"PPO.load.", stacklevel=4)
            described = {"kind": "constant", "value": float(value(1.0))}
        schedules[name] = described
    env_state = (pack(model.env.get_state())
                 if model.env is not None and model.last_obs is not None else None)
    return {
        "format": FILE_FORMAT, "version": FILE_VERSION,
        "hyperparameters": pack({name: getattr(model, name) for name in PLAIN_HPARAMS}),
        "schedules": schedules,
        "policy": model.policy_name or _class_path(model.policy_class),
        "policy_kwargs": _pack_policy_kwargs(model.policy_kwargs),
        "observation_space": space_to_data(model.observation_space),
        "action_space": space_to_data(model.action_space),
        "env_id": model.env.spec.id if model.env is not None and model.env.spec else None,
        "n_envs": model.n_envs, "vectorization_mode": model.vectorization_mode,
        "policy_state": model.policy.state_dict(),
        "optimizer_state": model.optimizer.state_dict(),
        "normalizer": None if model.normalizer is None else pack(model.normalizer.state_dict()),
        "num_timesteps": model.num_timesteps, "n_updates": model.n_updates,
        "rng": {"torch": torch.get_rng_state(),
                "numpy": pack(np.random.get_state(legacy=False)),
                "python": pack(random.getstate())},
        "env_state": env_state,
        "last_obs": None if model.last_obs is None else torch.as_tensor(model.last_obs).clone(),
    }


def load_model(cls, path: str | os.PathLike, env: Any = None,
               custom_objects: dict[str, Any] | None = None, overrides: dict | None = None):
    """The model of class ``cls`` (PPO) that ``save_model`` wrote to ``path``.

    The file is data: nothing it names is imported or called. Its class names (the policy,
    classes in ``policy_kwargs`` such as ``activation_fn``) resolve only to ppo_lib's
    policies, torch.nn's activations and ``custom_objects``; any other name is a ValueError
    raised before anything is built.

    ``env``: the env to continue training in (its spaces must be the model's); by default
    the saved env id is rebuilt (n_envs copies) and its saved state restored, so
    ``learn(..., reset_num_timesteps=False)`` continues exactly. ``custom_objects``: as
    SB3's, ``{name: object}`` for the names the file holds, by their saved "module:Class"
    or bare class name, e.g. ``{"MyPolicy": MyPolicy}`` for a model of your own policy
    class; a key that is a PPO argument (``learning_rate``) replaces it. ``overrides``:
    hyperparameters to replace, e.g. ``learning_rate=`` for a schedule that could not be
    saved. ``cls(policy, env, observation_space=, action_space=, ...)`` builds the model.
    """
    data = read(path)
    custom_objects = _check_custom_objects(custom_objects)
    policy = data["policy"]
    if policy not in ("MlpPolicy", "CnnPolicy"):
        policy = _resolve_name(policy, "policy", "policy", path, custom_objects)
    policy_kwargs = _unpack_policy_kwargs(data["policy_kwargs"], path, custom_objects)
    hp = _saved_hyperparameters(data, path)
    seed = hp.pop("seed")
    overrides = {**{k: v for k, v in custom_objects.items() if k in ARGUMENTS},
                 **(overrides or {})}
    hp.update(overrides)
    obs_space = space_from_data(data["observation_space"])
    act_space = space_from_data(data["action_space"])
    check_positive_int("the file's n_envs", data["n_envs"])
    same_env = env is None
    vectorization_mode = data.get("vectorization_mode", "sync")
    if vectorization_mode not in VECTORIZATION_MODES:
        raise ValueError(f"{os.fspath(path)!r} holds vectorization_mode="
                         f"{vectorization_mode!r}, not one of {VECTORIZATION_MODES}: not a "
                         f"file written by PPO.save")
    if env is None and data["env_id"] is not None:
        env = _rebuild_env(data["env_id"], data["n_envs"], obs_space, act_space, path,
                           vectorization_mode)
    elif env is not None:
        env = make_vec_env(env, n_envs=data["n_envs"],
                           vectorization_mode=vectorization_mode if isinstance(env, str)
                           else "sync")
        if env.observation_space != obs_space or env.action_space != act_space:
            raise ValueError(
                f"env has observation space {env.observation_space} and action space "
                f"{env.action_space}, but the model in {os.fspath(path)!r} was trained "
                f"on {obs_space} and {act_space}; pass env= an env with the model's "
                f"spaces (the same env id and wrappers), or leave env out to predict only")
    model = cls(policy, env, n_envs=data["n_envs"], policy_kwargs=policy_kwargs,
                vectorization_mode=vectorization_mode,
                observation_space=obs_space, action_space=act_space, **hp)
    model.seed = seed
    model.policy.load_state_dict(data["policy_state"])
    model.optimizer.load_state_dict(data["optimizer_state"])
    if "learning_rate" in overrides:
        for group in model.optimizer.param_groups:
            group["lr"] = model.lr_schedule(1.0)
    if model.normalizer is not None and data["normalizer"] is not None:
        model.normalizer.load_state_dict(unpack(data["normalizer"]))
    model.num_timesteps, model.n_updates = data["num_timesteps"], data["n_updates"]
    torch.set_rng_state(data["rng"]["torch"])
    np.random.set_state(unpack(data["rng"]["numpy"]))
    random.setstate(unpack(data["rng"]["python"]))
    if model.env is not None and same_env and data["env_state"] is not None:
        if model.env.num_envs == data["n_envs"]:
            exact = model.env.set_state(unpack(data["env_state"]))
            last = data["last_obs"].numpy()
            model.last_obs = last if exact else model.reset_env()
    return model


def _with_suffix(path) -> str:
    path = os.fspath(path)
    return path if os.path.splitext(path)[1] else path + ".pt"


def read(path) -> dict:
    """The data of the file at ``path`` (".pt" or ".zip" added when missing), checked to
    be a ppo_lib model file this version reads."""
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


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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
    if kind == "policy" and name in OWN_POLICIES:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    if kind == "class" and name in _activations():
        return _activations()[name]
    allowed = (f"ppo_lib's policies ({', '.join(n.partition(':')[2] for n in OWN_POLICIES)})"
               if kind == "policy"
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
    unknown = sorted(set(hp) - set(PLAIN_HPARAMS)) + sorted(
        set(data["schedules"]) - set(SCHEDULES))
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


def _rebuild_env(env_id: Any, n_envs: int, obs_space, act_space, path,
                 vectorization_mode: str = "sync") -> VecEnv | None:
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
        env = make_vec_env(env_id, n_envs=n_envs, vectorization_mode=vectorization_mode)
    except Exception:  # registered but not buildable here (a missing dependency)
        return None
    if env.observation_space != obs_space or env.action_space != act_space:
        env.close()  # the saved env had wrappers (e.g. Atari preprocessing):
        return None  # pass env= to PPO.load to train on
    return env
