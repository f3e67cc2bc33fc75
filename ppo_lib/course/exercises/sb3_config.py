"""What a configuration means to SB3's PPO, for grading ``to_sb3_kwargs`` (lesson 08).

The answer is graded on what it MEANS to SB3, not on the dict as written. Both the answer
and the reference are turned into the configuration SB3's PPO would run with
(``sb3_effect``): SB3's defaults (from the signatures of PPO and ActorCriticPolicy) filled in
for absent keys, schedules as their values over progress_remaining, net_arch as
dict(pi=, vf=). So leaving out a key whose value is SB3's default (target_kl=None) is right,
and losing activation_fn or ortho_init from policy_kwargs is wrong (``same_sb3_model``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ...lab.sb3 import sb3_defaults, to_sb3_kwargs

PROGRESS = (1.0, 0.75, 0.5, 0.25, 0.0)  # progress_remaining values a schedule is read at
SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")
_OLD_FORMAT = "the SB3 < 1.8 format"

_UNKNOWN_KEY_HINTS = {
    "n_envs": "SB3 takes n_envs in make_vec_env('CartPole-v1', n_envs=8), not in PPO: "
              "PPO(..., n_envs=8) raises TypeError. Leave it out",
    "normalize_obs": "SB3 normalises with the VecNormalize wrapper on the vector env, not a "
                     "PPO argument: leave normalize_obs / normalize_reward out",
    "normalize_reward": "SB3 normalises with the VecNormalize wrapper on the vector env, not "
                        "a PPO argument: leave normalize_obs / normalize_reward out",
    "advantage_fn": "SB3's PPO has no advantage_fn / loss_fn hooks: leave them out when they "
                    "are None",
    "loss_fn": "SB3's PPO has no advantage_fn / loss_fn hooks: leave them out when they are "
               "None",
}


def _schedule(value: Any) -> Any:
    """A float or a schedule as what SB3 reads from it (get_schedule_fn)."""
    if value is None or isinstance(value, bool):
        return value
    if callable(value):
        try:
            return ("schedule", tuple(float(value(p)) for p in PROGRESS))
        except Exception as exc:
            return ("broken schedule", f"{type(exc).__name__}: {exc}")
    if isinstance(value, (int, float)):
        return ("schedule", tuple(float(value) for _ in PROGRESS))
    return value


def _net_arch(net_arch: Any) -> Any:
    if net_arch is None:
        return {"pi": [64, 64], "vf": [64, 64]}
    if isinstance(net_arch, (list, tuple)) and net_arch and isinstance(net_arch[0], Mapping):
        return (_OLD_FORMAT, _net_arch(net_arch[0]))
    if isinstance(net_arch, Mapping):
        return {key: list(net_arch.get(key, [])) for key in ("pi", "vf")} if \
            set(net_arch) <= {"pi", "vf"} else dict(net_arch)
    if isinstance(net_arch, (list, tuple)):
        return {"pi": list(net_arch), "vf": list(net_arch)}
    return net_arch


def sb3_effect(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration SB3's ``PPO(policy, venv, **kwargs)`` runs with (defaults filled in,
    schedules as values, net_arch as dict(pi=, vf=)). Keys SB3's PPO does not take are kept
    as they are (the check names them)."""
    ppo_defaults, policy_defaults = sb3_defaults()
    effect = dict(ppo_defaults, **kwargs)
    for name in SCHEDULES:
        effect[name] = _schedule(effect[name])
    policy_kwargs = effect.get("policy_kwargs")
    if isinstance(policy_kwargs, Mapping) or policy_kwargs is None:
        policy = dict(policy_defaults, **(policy_kwargs or {}))
        policy["net_arch"] = _net_arch(policy["net_arch"])
        for key in ("features_extractor_kwargs", "optimizer_kwargs"):
            policy[key] = policy[key] or {}
        effect["policy_kwargs"] = policy
    return effect


def _name(value: Any) -> str:
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "schedule":
        values = value[1]
        if len(set(values)) == 1:
            return f"the constant {values[0]:g}"
        return "the schedule " + ", ".join(f"{v:g}" for v in values) + \
            f" at progress_remaining {', '.join(map(str, PROGRESS))}"
    if isinstance(value, tuple) and len(value) == 2 and value[0] == _OLD_FORMAT:
        return f"{_OLD_FORMAT} [dict(pi=..., vf=...)]"
    return repr(value)


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, int) and not isinstance(want, bool):
        return isinstance(got, int) and got == want
    if isinstance(want, float):
        return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9,
                                                              abs_tol=1e-12)
    if isinstance(want, tuple) and want and want[0] == "schedule":
        return (isinstance(got, tuple) and len(got) == 2 and got[0] == "schedule" and
                all(math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12)
                    for g, w in zip(got[1], want[1])))
    if isinstance(want, Mapping):
        return isinstance(got, Mapping) and set(got) == set(want) and \
            all(_same_value(got[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and \
            all(_same_value(g, w) for g, w in zip(got, want))
    try:
        return bool(got == want)
    except Exception:
        return False


def _difference(got: dict[str, Any], want: dict[str, Any], config: Mapping[str, Any],
                ppo_defaults: Mapping[str, Any], output_keys: Mapping[str, Any]) -> str | None:
    for key in want:
        if key == "policy_kwargs" and config.get(key) and not output_keys.get(key):
            return ("you left out policy_kwargs: SB3 would build its default network "
                    "(net_arch 64-64 for pi and vf, Tanh) instead of the configuration's")
        if key == "policy_kwargs" and isinstance(got.get(key), Mapping):
            g, w = got[key], want[key]
            for sub in w:
                if sub == "net_arch" and isinstance(g.get(sub), tuple) and \
                        g[sub][:1] == (_OLD_FORMAT,):
                    return ("policy_kwargs['net_arch'] is in the SB3 < 1.8 format "
                            "[dict(pi=..., vf=...)] (SB3 2.x warns and takes its first "
                            "element): write net_arch=dict(pi=[...], vf=[...])")
                if not _same_value(g.get(sub), w[sub]):
                    given = (config.get("policy_kwargs") or {})
                    if sub != "net_arch" and sub in given:
                        return (f"policy_kwargs[{sub!r}]: SB3 would use {_name(g.get(sub))} "
                                f"(its default), the configuration asks for {_name(w[sub])}: "
                                "keep every entry of policy_kwargs (activation_fn, ortho_init, "
                                "...), not only net_arch")
                    return (f"policy_kwargs[{sub!r}]: SB3 would build {_name(g.get(sub))}, "
                            f"the configuration asks for {_name(w[sub])}")
            continue
        if not _same_value(got.get(key), want[key]):
            if key in SCHEDULES and isinstance(config.get(key), Callable) and \
                    isinstance(got.get(key), tuple) and len(set(got[key][1])) == 1:
                return (f"{key}: SB3 would use {_name(got[key])}, but the configuration's "
                        f"{key} is a schedule (a function of progress_remaining): pass the "
                        "function itself, don't call it")
            if key in config and key in ppo_defaults and _same_value(got.get(key),
                                                                     ppo_defaults[key]):
                return (f"{key}: SB3 would use its default {_name(got.get(key))}, the "
                        f"configuration says {_name(want[key])}: copy every setting; only a "
                        "value equal to SB3's default may be left out (0 and False are "
                        "settings too)")
            return f"{key}: SB3 would use {_name(got.get(key))}, expected {_name(want[key])}"
    return None


def same_sb3_model(config: Mapping[str, Any], output: Any) -> str | None:
    """None when SB3's PPO(**output) runs with the configuration that the reference's
    kwargs give; else what differs, in words."""
    if output is None:
        return "your function returned None: did you forget `return`?"
    if not isinstance(output, Mapping):
        return f"expected a dict of SB3 PPO keyword arguments, got {type(output).__name__}"
    ppo_defaults, _ = sb3_defaults()
    if "env" in output:
        return ("the env is not a keyword argument here: SB3 builds the vector env with "
                "make_vec_env(env_id, n_envs=...) and takes it as PPO(policy, venv, "
                "**kwargs). Leave env out")
    if "policy" in output and "policy" not in config:
        return ("the configuration names no policy: leave `policy` out (it is PPO's first "
                "argument, PPO('MlpPolicy', venv, **kwargs), and would be given twice)")
    for key in output:
        if key not in ppo_defaults and key != "policy":
            return (f"SB3's PPO has no argument {key!r} (PPO(..., {key}=...) raises "
                    f"TypeError): " + _UNKNOWN_KEY_HINTS.get(key, "leave it out"))
    want = sb3_effect(to_sb3_kwargs(config))
    got = sb3_effect(output)
    return _difference(got, want, config, ppo_defaults, output)
