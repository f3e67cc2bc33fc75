"""Lesson 08 exercises: a ppo_lib configuration as SB3 arguments (graded on what it means to
SB3: see ``sb3_config.py``), and reading an SB3 log."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from torch import nn

from ..grading import Case, Exercise, Mistake, register
from ...lab.sb3 import FIXES, read_sb3_log, to_sb3_kwargs
from .sb3_config import same_sb3_model


def _halving(progress_remaining: float) -> float:
    return 3e-4 * progress_remaining


def _clip_schedule(progress_remaining: float) -> float:
    return 0.1 + 0.1 * progress_remaining


def _to_sb3_case(name: str, config: dict[str, Any], hint: str) -> Case:
    return Case(name, args=(config,), hint=hint, verify=partial(same_sb3_model, config))


def _to_sb3_kwargs_cases() -> list[Case]:
    same = dict(policy="MlpPolicy", learning_rate=3e-4, n_steps=128, batch_size=64,
                n_epochs=4, gamma=0.98, gae_lambda=0.9, clip_range=0.2, clip_range_vf=None,
                ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, target_kl=None, seed=1)
    return [
        _to_sb3_case("SB3 spells these the same", same,
                     hint="learning_rate, n_steps, ... have the same names in SB3: copy them "
                          "as they are"),
        _to_sb3_case("zero and False are settings too",
                     dict(same, seed=0, normalize_advantage=False, ent_coef=0.0, verbose=0),
                     hint="seed=0 and normalize_advantage=False differ from SB3's defaults "
                          "(None, True): keep them (test `is None`, not truthiness)"),
        _to_sb3_case("n_envs is not a PPO argument in SB3", dict(same, n_envs=8),
                     hint="SB3 takes n_envs in make_vec_env('CartPole-v1', n_envs=8), not in "
                          "PPO: leave it out"),
        _to_sb3_case("the env is built apart", dict(same, env="CartPole-v1", n_envs=4),
                     hint="env and n_envs go to make_vec_env, not to PPO's keyword arguments"),
        _to_sb3_case("normalisation lives on the vector env",
                     dict(same, normalize_obs=True, normalize_reward=True),
                     hint="SB3 normalises with the VecNormalize wrapper, not a PPO argument: "
                          "leave normalize_obs / normalize_reward out"),
        _to_sb3_case("the lesson-05 hooks", dict(same, advantage_fn=None, loss_fn=None),
                     hint="SB3's PPO has no advantage_fn / loss_fn: leave them out when they "
                          "are None"),
        _to_sb3_case("schedules stay functions",
                     dict(learning_rate=_halving, clip_range=_clip_schedule, n_steps=256),
                     hint="SB3 takes a function of progress_remaining as is: pass the same "
                          "function, don't call it"),
        _to_sb3_case("separate pi and vf networks, ReLU, no orthogonal init",
                     dict(same, policy_kwargs=dict(net_arch=dict(pi=[128, 64], vf=[256]),
                                                   activation_fn=nn.ReLU, ortho_init=False)),
                     hint="SB3 2.x takes policy_kwargs as is, net_arch=dict(pi=[...], "
                          "vf=[...]) included: copy every entry, not only net_arch"),
        _to_sb3_case("the notes' net_arch=[dict(pi=..., vf=...)]",
                     dict(same, policy_kwargs=dict(net_arch=[dict(pi=[256, 256],
                                                                  vf=[128, 128])],
                                                   activation_fn=nn.ReLU)),
                     hint="[dict(pi=..., vf=...)] is the SB3 < 1.8 format (SB3 2.x warns and "
                          "takes its first element): write net_arch=dict(pi=[...], vf=[...]) "
                          "in a new policy_kwargs dict, leaving the caller's as it was"),
        _to_sb3_case("net_arch as one list of sizes, log_std_init",
                     dict(same, policy_kwargs=dict(net_arch=[32, 32], log_std_init=-0.5)),
                     hint="a list of sizes is SB3 2.x's format too (the same layers for pi and "
                          "vf): keep it, and keep the other entries of policy_kwargs"),
    ]


def _pop_env_keys(config):
    for key in ("env", "n_envs", "normalize_obs", "normalize_reward", "advantage_fn",
                "loss_fn"):
        config.pop(key, None)
    return config


def _keeps_old_net_arch(config):
    return {k: v for k, v in config.items()
            if k not in ("env", "n_envs", "normalize_obs", "normalize_reward", "advantage_fn",
                         "loss_fn")}


def _drops_policy_kwargs(config):
    return {k: v for k, v in to_sb3_kwargs(config).items() if k != "policy_kwargs"}


def _wraps_net_arch_in_list(config):
    out = to_sb3_kwargs(config)
    if "policy_kwargs" in out and isinstance(out["policy_kwargs"].get("net_arch"), dict):
        out["policy_kwargs"] = dict(out["policy_kwargs"],
                                    net_arch=[out["policy_kwargs"]["net_arch"]])
    return out


def _net_arch_only(config):
    """policy_kwargs rebuilt from net_arch alone (activation_fn, ortho_init lost)."""
    out = to_sb3_kwargs(config)
    if out.get("policy_kwargs"):
        out["policy_kwargs"] = {"net_arch": out["policy_kwargs"].get("net_arch")}
    return out


def _converts_in_place(config):
    """A shallow copy, then the caller's nested policy_kwargs changed."""
    out = _keeps_old_net_arch(dict(config))
    policy_kwargs = out.get("policy_kwargs")
    if policy_kwargs and isinstance(policy_kwargs.get("net_arch"), list) and \
            policy_kwargs["net_arch"] and isinstance(policy_kwargs["net_arch"][0], dict):
        policy_kwargs["net_arch"] = policy_kwargs["net_arch"][0]
    return out


def _drops_falsy(config):
    return {k: v for k, v in to_sb3_kwargs(config).items() if v}


def _pi_for_both(config):
    out = to_sb3_kwargs(config)
    net_arch = (out.get("policy_kwargs") or {}).get("net_arch")
    if isinstance(net_arch, dict):
        out["policy_kwargs"] = dict(out["policy_kwargs"], net_arch=list(net_arch["pi"]))
    return out


def _to_sb3_kwargs_mistakes() -> list[Mistake]:
    return [
        Mistake("copies everything, n_envs included", lambda config: dict(config),
                hint="make_vec_env"),
        Mistake("keeps n_envs, drops the rest of the env keys",
                lambda config: {k: v for k, v in config.items()
                                if k not in ("normalize_obs", "normalize_reward",
                                             "advantage_fn", "loss_fn")},
                hint="make_vec_env"),
        Mistake("keeps env", lambda config: dict(to_sb3_kwargs(config), **(
            {"env": config["env"]} if "env" in config else {})), hint="leave env out"),
        Mistake("keeps normalize_obs / normalize_reward", lambda config: dict(
            to_sb3_kwargs(config), **{k: config[k] for k in ("normalize_obs",
                                                             "normalize_reward")
                                      if k in config}), hint="VecNormalize"),
        Mistake("keeps advantage_fn / loss_fn = None", lambda config: dict(
            to_sb3_kwargs(config), **{k: config[k] for k in ("advantage_fn", "loss_fn")
                                      if k in config}), hint="no advantage_fn / loss_fn"),
        Mistake("pops the env keys from the caller's config", _pop_env_keys,
                hint="copy the dict"),
        Mistake("drops settings whose value is falsy (seed=0, normalize_advantage=False)",
                _drops_falsy, hint="0 and False are settings too"),
        Mistake("keeps the notes' old net_arch format", _keeps_old_net_arch,
                hint="SB3 < 1.8"),
        Mistake("converts net_arch inside the caller's policy_kwargs (shallow copy)",
                _converts_in_place, hint="copy the dict"),
        Mistake("drops policy_kwargs", _drops_policy_kwargs, hint="you left out policy_kwargs"),
        Mistake("rebuilds policy_kwargs from net_arch alone (activation_fn, ortho_init lost)",
                _net_arch_only, hint="not only net_arch"),
        Mistake("the pi sizes for both networks", _pi_for_both,
                hint="policy_kwargs['net_arch']"),
        Mistake("writes net_arch in the old list format", _wraps_net_arch_in_list,
                hint="SB3 < 1.8"),
        Mistake("adds policy='MlpPolicy' that the configuration did not name",
                lambda config: dict(to_sb3_kwargs(config), policy="MlpPolicy"),
                hint="leave `policy` out"),
        Mistake("calls the schedule instead of passing it",
                lambda config: {k: (v(1.0) if callable(v) else v)
                                for k, v in to_sb3_kwargs(config).items()},
                hint="don't call it"),
    ]


register(Exercise(
    id="to_sb3_kwargs", lesson="08", title="A ppo_lib configuration as SB3 PPO arguments",
    cases=_to_sb3_kwargs_cases, reference=to_sb3_kwargs, mistakes=_to_sb3_kwargs_mistakes))


# ---------------------------------------------------------------------------------------
# read_sb3_log: rows of SB3's progress.csv (as ppo_lib.lab.sb3.read_progress_csv returns
# them) -> one of FIXES.


def _log(approx_kl: float, clip_fraction: float, explained_variance: float,
         n_rows: int = 8, ep_rew_mean: float = 40.0,
         entropy: float = 0.6) -> list[dict[str, float]]:
    """A small SB3-like log: the first row has no train/ values (SB3 dumps before the first
    update); later rows wobble a little around the given metrics."""
    return _log_from([(approx_kl, clip_fraction, explained_variance)] * (n_rows - 1),
                     ep_rew_mean=ep_rew_mean, entropy=entropy)


def _log_from(metrics: list[tuple[float, float, float]], ep_rew_mean: float = 40.0,
              entropy: float = 0.6) -> list[dict[str, float]]:
    """An SB3-like log with one row per update given as (approx_kl, clip_fraction,
    explained_variance), after SB3's first row without train/ values; each row wobbles by
    +-10% (alternately), as real metrics do."""
    rows = [{"rollout/ep_rew_mean": 20.0, "time/total_timesteps": 2048.0}]
    for i, (kl, clip, ev) in enumerate(metrics, start=1):
        wobble = 1.0 + 0.1 * ((-1) ** i)
        rows.append({
            "rollout/ep_rew_mean": ep_rew_mean, "time/total_timesteps": 2048.0 * (i + 1),
            "train/approx_kl": kl * wobble,
            "train/clip_fraction": min(1.0, clip * wobble),
            "train/explained_variance": ev * wobble,
            "train/value_loss": 20.0, "train/entropy_loss": -entropy * wobble,
        })
    return rows


HEALTHY = (0.01, 0.1, 0.8)


def _read_sb3_log_cases() -> list[Case]:
    noisy_kl = _log_from([HEALTHY] * 9 + [(0.1, 0.2, 0.8)], ep_rew_mean=200.0)
    noisy_ev = _log_from([HEALTHY] * 9 + [(0.0002, 0.1, -0.6)], ep_rew_mean=200.0)
    early_trouble = _log_from([(0.2, 0.7, -0.3)] * 8 + [HEALTHY] * 10, ep_rew_mean=300.0)
    late_trouble = _log_from([HEALTHY] * 14 + [(0.09, 0.3, 0.5)] * 6)
    return [
        Case("a log of one row, before any update", args=(_log(0.01, 0.1, 0.8, n_rows=1),),
             expected="nothing to fix",
             hint="SB3's first row has no train/ values: with nothing measured there is "
                  "nothing to fix (don't index a missing key: use the rows that have it)"),
        Case("too large updates", args=(_log(0.12, 0.62, 0.5),), expected="lower learning_rate",
             hint="train/approx_kl is above 0.05 and clip_fraction above 0.5: updates are too "
                  "large"),
        Case("too timid updates", args=(_log(2e-4, 0.0, 0.7),), expected="raise learning_rate",
             hint="train/approx_kl is below 0.001: the policy barely moves. Its entropy "
                  "(-train/entropy_loss = 0.6) is healthy, so it is no collapse: mind the "
                  "sign of entropy_loss"),
        Case("a critic that explains nothing", args=(_log(0.01, 0.08, -0.3),),
             expected="fix the critic",
             hint="train/explained_variance at or below 0: the critic is no better than the "
                  "mean return"),
        Case("a healthy run", args=(_log(0.01, 0.1, 0.8, ep_rew_mean=300.0),),
             expected="nothing to fix",
             hint="approx_kl between 0.001 and 0.05, clip_fraction below 0.5, explained "
                  "variance above 0: nothing to fix"),
        Case("clipping alone is enough", args=(_log(0.03, 0.7, 0.5),),
             expected="lower learning_rate",
             hint="clip_fraction above 0.5 means most samples hit the clip even if approx_kl "
                  "looks fine"),
        Case("too large updates also break the critic", args=(_log(0.2, 0.7, -0.5),),
             expected="lower learning_rate",
             hint="huge updates wreck the critic too: fix the learning rate first"),
        Case("explained variance exactly 0", args=(_log(0.01, 0.1, 0.0),),
             expected="fix the critic",
             hint="the rule is explained_variance at or below 0 (<= 0): a critic that "
                  "predicts a constant explains exactly 0"),
        Case("a collapsed policy", args=(_log(0.0, 0.0, 0.9, ep_rew_mean=9.0, entropy=1e-8),),
             expected="lower learning_rate",
             hint="train/entropy_loss is 0: the policy is deterministic, so nothing moves and "
                  "approx_kl reads 0. That is a collapse after too-large updates, not timid "
                  "ones: raising the learning rate would not help"),
        Case("a healthy run whose last row is noisy (approx_kl 0.1)", args=(noisy_kl,),
             expected="nothing to fix",
             hint="one row is noise: judge the last few rows together (the mean over the "
                  "last 5 rows that measured each metric), not the last row alone"),
        Case("a healthy run whose last row is noisy (tiny KL, negative explained variance)",
             args=(noisy_ev,), expected="nothing to fix",
             hint="one row is noise: judge the last few rows together (the mean over the "
                  "last 5 rows that measured each metric), not the last row alone"),
        Case("trouble early, healthy for the last 10 updates", args=(early_trouble,),
             expected="nothing to fix",
             hint="the log asks for what its last rows say: average the last few rows (5), "
                  "not the whole log and not its first rows (the early trouble is over)"),
        Case("healthy for 14 updates, too large for the last 6", args=(late_trouble,),
             expected="lower learning_rate",
             hint="the log asks for what its last rows say: average the last few rows (5), "
                  "not the whole log, where 14 healthy rows hide the trouble"),
        Case("very timid updates (approx_kl 5e-5) with a healthy entropy",
             args=(_log(5e-5, 0.0, 0.7, entropy=0.65),), expected="raise learning_rate",
             hint="approx_kl far below 0.001 with a healthy entropy (-train/entropy_loss = "
                  "0.65) is timid, not collapsed: the collapse test is the entropy, not a "
                  "small approx_kl"),
        Case("a collapse whose approx_kl is small but not 0",
             args=(_log(4e-4, 0.0, 0.9, ep_rew_mean=9.0, entropy=0.004),),
             expected="lower learning_rate",
             hint="detect the collapse by the entropy (-train/entropy_loss below 0.01), not "
                  "by approx_kl == 0: a collapsed policy's approx_kl is small, seldom exactly "
                  "0"),
    ]


KL, CLIP, EV, ENT = ("train/approx_kl", "train/clip_fraction", "train/explained_variance",
                     "train/entropy_loss")


def _measured(rows, key):
    return [row[key] for row in rows if key in row]


def _mean(values):
    return sum(values) / len(values) if values else None


def _window(rows, key, n=5):
    return _mean(_measured(rows, key)[-n:])


def _last_row(rows, key):
    return _mean(_measured(rows, key)[-1:])


def _whole_log(rows, key):
    return _mean(_measured(rows, key))


def _first_rows(rows, key):
    return _mean(_measured(rows, key)[:5])


def _rules(read=_window, order=("large", "collapse", "timid", "critic"), collapse=None,
           ev_test=lambda ev: ev <= 0, use_clip=True):
    """A read_sb3_log built from a way to read each metric and an order of the rules."""
    def answer(rows):
        kl, clip, ev, ent = (read(rows, key) for key in (KL, CLIP, EV, ENT))
        tests = {
            "large": (kl is not None and kl > 0.05) or
                     (use_clip and clip is not None and clip > 0.5),
            "collapse": (collapse(kl, ent) if collapse else
                         ent is not None and -ent < 0.01),
            "timid": kl is not None and kl < 0.001,
            "critic": ev is not None and ev_test(ev),
        }
        fixes = {"large": "lower learning_rate", "collapse": "lower learning_rate",
                 "timid": "raise learning_rate", "critic": "fix the critic"}
        for rule in order:
            if tests[rule]:
                return fixes[rule]
        return "nothing to fix"
    return answer


def _indexes_last_row(rows):
    return _rules(read=lambda rs, key: rs[-1][key])(rows)


def _reversed_kl(rows):
    kl = _window(rows, KL)
    if kl is None:
        return "nothing to fix"
    return ("raise learning_rate" if kl > 0.05 else
            "lower learning_rate" if kl < 0.001 else "nothing to fix")


def _read_sb3_log_mistakes() -> list[Mistake]:
    return [
        Mistake("indexes train/ keys of the last row without checking",
                _indexes_last_row, hint="missing key"),
        Mistake("always nothing to fix", lambda rows: "nothing to fix", hint="above 0.05"),
        Mistake("too-large and too-small swapped", _reversed_kl, hint="above 0.05"),
        Mistake("looks at approx_kl only", _rules(order=("large", "timid"), use_clip=False),
                hint="explained_variance at or below 0"),
        Mistake("ignores clip_fraction", _rules(use_clip=False), hint="clip_fraction above 0.5"),
        Mistake("blames the critic before the learning rate",
                _rules(order=("critic", "large", "collapse", "timid")),
                hint="fix the learning rate first"),
        Mistake("explained_variance < 0 instead of <= 0",
                _rules(ev_test=lambda ev: ev < 0), hint="at or below 0"),
        Mistake("a collapsed policy taken for a timid one (no collapse rule)",
                _rules(order=("large", "timid", "critic")), hint="collapse"),
        Mistake("entropy_loss taken for the entropy (sign)",
                _rules(collapse=lambda kl, ent: ent is not None and ent < 0.01),
                hint="sign of entropy_loss"),
        Mistake("reads only the last row", _rules(read=_last_row),
                hint="not the last row alone"),
        Mistake("averages the whole log", _rules(read=_whole_log),
                hint="not the whole log"),
        Mistake("reads the first rows that measured each metric", _rules(read=_first_rows),
                hint="not its first rows"),
        Mistake("detects a collapse by approx_kl below 1e-4",
                _rules(collapse=lambda kl, ent: kl is not None and kl < 1e-4),
                hint="the collapse test is the entropy"),
        Mistake("detects a collapse by approx_kl == 0",
                _rules(collapse=lambda kl, ent: kl == 0), hint="not by approx_kl == 0"),
    ]


def read_sb3_log_answer(rows: list[Mapping[str, float]]) -> str:
    """The reference with the lesson's signature ``read_sb3_log(rows)`` (the library's
    function also takes ``window``; the check would otherwise note that the parameters
    differ)."""
    return read_sb3_log(rows)


register(Exercise(
    id="read_sb3_log", lesson="08", title=f"Read an SB3 log and pick the fix ({', '.join(FIXES)})",
    cases=_read_sb3_log_cases, reference=read_sb3_log_answer, mistakes=_read_sb3_log_mistakes))
