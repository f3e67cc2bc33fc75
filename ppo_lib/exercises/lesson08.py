"""Lesson 08 exercises: a ppo_lib configuration as SB3 arguments, and reading an SB3 log."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from ..grading import Case, Exercise, Mistake, register
from ..sb3_compat import FIXES, read_sb3_log, to_sb3_kwargs

# ---------------------------------------------------------------------------------------
# to_sb3_kwargs


def _halving(progress_remaining: float) -> float:
    return 3e-4 * progress_remaining


def _unchanged(config: dict[str, Any], before: dict[str, Any], output: Any) -> str | None:
    """``config`` must still equal ``before`` (its copy made before the call)."""
    if config != before:
        return "your function changed the config it was given; build a new dict instead"
    want = to_sb3_kwargs(before)
    return None if output == want else f"expected {want!r}, got {output!r}"


def _to_sb3_kwargs_cases() -> list[Case]:
    same = dict(learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=4, gamma=0.99,
                gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5,
                max_grad_norm=0.5, target_kl=None, seed=0)
    mutable = dict(same, n_envs=8, normalize_obs=True)
    return [
        Case("SB3 spells these the same", args=(same,),
             hint="learning_rate, n_steps, ... have the same names in SB3: copy them"),
        Case("n_envs is not a PPO argument in SB3", args=(dict(same, n_envs=8),),
             hint="SB3 takes n_envs in make_vec_env('CartPole-v1', n_envs=8), not in PPO: "
                  "PPO(..., n_envs=8) raises TypeError. Leave it out"),
        Case("normalisation lives on the vector env",
             args=(dict(same, normalize_obs=True, normalize_reward=True),),
             hint="SB3 normalises with the VecNormalize wrapper, not a PPO argument: leave "
                  "normalize_obs / normalize_reward out"),
        Case("the lesson-05 hooks", args=(dict(same, advantage_fn=None, loss_fn=None),),
             hint="SB3's PPO has no advantage_fn / loss_fn: leave them out when they are None"),
        Case("schedules stay functions", args=(dict(learning_rate=_halving, clip_range=0.2),),
             hint="SB3 takes a function of progress_remaining as is: pass the same function"),
        Case("separate pi and vf networks",
             args=(dict(policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]),
                                           activation_fn=nn.Tanh)),),
             hint="SB3 2.x takes net_arch=dict(pi=[...], vf=[...]) as is"),
        Case("the notes' net_arch=[dict(pi=..., vf=...)]",
             args=(dict(policy_kwargs=dict(net_arch=[dict(pi=[256, 256], vf=[256, 256])])),),
             hint="[dict(pi=..., vf=...)] is the SB3 < 1.8 format (SB3 2.x warns and takes "
                  "its first element): write net_arch=dict(pi=[...], vf=[...])"),
        Case("the config is not modified", args=(mutable,),
             verify=partial(_unchanged, mutable, dict(mutable)),
             hint="don't pop or delete keys from the config you were given; build a new dict"),
    ]


def _pop_env_keys(config):
    for key in ("n_envs", "normalize_obs", "normalize_reward", "advantage_fn", "loss_fn"):
        config.pop(key, None)
    return config


def _keeps_old_net_arch(config):
    return {k: v for k, v in config.items()
            if k not in ("n_envs", "normalize_obs", "normalize_reward", "advantage_fn",
                         "loss_fn")}


def _drops_policy_kwargs(config):
    return {k: v for k, v in to_sb3_kwargs(config).items() if k != "policy_kwargs"}


def _wraps_net_arch_in_list(config):
    out = to_sb3_kwargs(config)
    if "policy_kwargs" in out and isinstance(out["policy_kwargs"].get("net_arch"), dict):
        out["policy_kwargs"] = dict(out["policy_kwargs"],
                                    net_arch=[out["policy_kwargs"]["net_arch"]])
    return out


def _to_sb3_kwargs_mistakes() -> list[Mistake]:
    return [
        Mistake("copies everything, n_envs included", lambda config: dict(config)),
        Mistake("keeps n_envs, drops the rest of the env keys",
                lambda config: {k: v for k, v in config.items()
                                if k not in ("normalize_obs", "normalize_reward",
                                             "advantage_fn", "loss_fn")}),
        Mistake("pops the env keys from the caller's config", _pop_env_keys),
        Mistake("keeps the notes' old net_arch format", _keeps_old_net_arch),
        Mistake("drops policy_kwargs", _drops_policy_kwargs),
        Mistake("writes net_arch in the old list format", _wraps_net_arch_in_list),
        Mistake("calls the schedule instead of passing it",
                lambda config: {k: (v(1.0) if callable(v) else v)
                                for k, v in to_sb3_kwargs(config).items()}),
    ]


register(Exercise(
    id="to_sb3_kwargs", lesson="08", title="A ppo_lib configuration as SB3 PPO arguments",
    cases=_to_sb3_kwargs_cases, reference=to_sb3_kwargs, mistakes=_to_sb3_kwargs_mistakes))


# ---------------------------------------------------------------------------------------
# read_sb3_log: rows of SB3's progress.csv (as ppo_lib.sb3_compat.read_progress_csv returns
# them) -> one of FIXES.


def _log(approx_kl: float, clip_fraction: float, explained_variance: float,
         n_rows: int = 8, ep_rew_mean: float = 40.0,
         entropy: float = 0.6) -> list[dict[str, float]]:
    """A small SB3-like log: the first row has no train/ values (SB3 dumps before the first
    update); later rows wobble a little around the given metrics."""
    rows = [{"rollout/ep_rew_mean": 20.0, "time/total_timesteps": 2048.0}]
    for i in range(1, n_rows):
        wobble = 1.0 + 0.1 * ((-1) ** i)
        rows.append({
            "rollout/ep_rew_mean": ep_rew_mean, "time/total_timesteps": 2048.0 * (i + 1),
            "train/approx_kl": approx_kl * wobble,
            "train/clip_fraction": min(1.0, clip_fraction * wobble),
            "train/explained_variance": explained_variance * wobble,
            "train/value_loss": 20.0, "train/entropy_loss": -entropy,
        })
    return rows


def _read_sb3_log_cases() -> list[Case]:
    return [
        Case("too large updates", args=(_log(0.12, 0.62, 0.5),), expected="lower learning_rate",
             hint="train/approx_kl is above 0.05 and clip_fraction above 0.5: updates are too "
                  "large"),
        Case("too timid updates", args=(_log(2e-4, 0.0, 0.7),), expected="raise learning_rate",
             hint="train/approx_kl is below 0.001: the policy barely moves"),
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
        Case("a collapsed policy", args=(_log(0.0, 0.0, 0.9, ep_rew_mean=9.0, entropy=1e-8),),
             expected="lower learning_rate",
             hint="train/entropy_loss is 0: the policy is deterministic, so nothing moves and "
                  "approx_kl reads 0. That is a collapse after too-large updates, not timid "
                  "ones: raising the learning rate would not help"),
        Case("a log of one row, before any update", args=(_log(0.01, 0.1, 0.8, n_rows=1),),
             expected="nothing to fix",
             hint="SB3's first row has no train/ values: with nothing measured there is "
                  "nothing to fix (don't index a missing key)"),
    ]


def _only_kl(rows):
    kl = rows[-1]["train/approx_kl"]
    return ("lower learning_rate" if kl > 0.05 else
            "raise learning_rate" if kl < 0.001 else "nothing to fix")


def _critic_first(rows):
    if rows[-1]["train/explained_variance"] <= 0:
        return "fix the critic"
    return read_sb3_log(rows)


def _first_row(rows):
    return read_sb3_log(rows[:1] + rows[:1])


def _reversed_kl(rows):
    kl = rows[-1]["train/approx_kl"]
    return ("raise learning_rate" if kl > 0.05 else
            "lower learning_rate" if kl < 0.001 else "nothing to fix")


def _no_collapse_rule(rows):
    kl = [row["train/approx_kl"] for row in rows if "train/approx_kl" in row][-5:]
    if kl and sum(kl) / len(kl) < 0.001:
        return "raise learning_rate"
    return read_sb3_log(rows)


def _read_sb3_log_mistakes() -> list[Mistake]:
    return [
        Mistake("a collapsed policy taken for a timid one", _no_collapse_rule),
        Mistake("always nothing to fix", lambda rows: "nothing to fix"),
        Mistake("looks at approx_kl only", _only_kl),
        Mistake("blames the critic before the learning rate", _critic_first),
        Mistake("reads the first row (no train/ values in SB3)", _first_row),
        Mistake("too-large and too-small swapped", _reversed_kl),
    ]


register(Exercise(
    id="read_sb3_log", lesson="08", title=f"Read an SB3 log and pick the fix ({', '.join(FIXES)})",
    cases=_read_sb3_log_cases, reference=read_sb3_log, mistakes=_read_sb3_log_mistakes))
