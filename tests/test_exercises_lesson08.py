"""Lesson 08's exercises: other right answers pass, and to_sb3_kwargs is graded on the SB3
model the answer gives, not on the dict as written (tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import copy
import inspect
import statistics

import pytest
from stable_baselines3 import PPO as SB3PPO
from torch import nn

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson08, sb3_config  # noqa: F401  (lesson08 registers them)
from ppo_lib.lab.sb3 import FIXES, read_sb3_log, to_sb3_kwargs

IDS = ["to_sb3_kwargs", "read_sb3_log"]


def test_the_exercises_belong_to_lesson_08():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"08"}


def test_references_are_the_library_functions():
    assert grading.EXERCISES["to_sb3_kwargs"].reference is to_sb3_kwargs
    reference = grading.EXERCISES["read_sb3_log"].reference
    assert list(inspect.signature(reference).parameters) == ["rows"]  # the lesson's signature
    for case in grading.EXERCISES["read_sb3_log"].cases():
        assert reference(*case.args) == read_sb3_log(*case.args) == case.expected


def test_wrong_answer_with_the_lessons_signature_gets_no_parameter_note(capsys):
    assert not grading.check("read_sb3_log", lambda rows: "nothing to fix")
    def mine(rows):
        return "nothing to fix"
    assert not grading.check("read_sb3_log", mine)
    assert "note: your function's parameters" not in capsys.readouterr().out


def test_every_fix_is_expected_by_some_case():
    cases = grading.EXERCISES["read_sb3_log"].cases()
    assert {case.expected for case in cases} == set(FIXES)


def test_hint_shown_for_n_envs(capsys):
    assert not grading.check("to_sb3_kwargs", lambda config: dict(config))
    assert "make_vec_env" in capsys.readouterr().out


# to_sb3_kwargs: right answers written in other ways ----------------------------------------

ENV_SIDE = {"env", "n_envs", "normalize_obs", "normalize_reward"}


def solution_08(config):
    """The body of solutions/08_sb3_comparison.ipynb."""
    env_side = {"env", "n_envs", "normalize_obs", "normalize_reward"}
    kwargs = {}
    for name, value in config.items():
        if name in env_side or (name in ("advantage_fn", "loss_fn") and value is None):
            continue
        if name == "policy_kwargs" and value is not None:
            value = dict(value)
            net_arch = value.get("net_arch")
            if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
                value["net_arch"] = net_arch[0]
        kwargs[name] = value
    return kwargs


def drops_sb3_defaults(config):
    """Leaves out every value equal to SB3's default (target_kl=None, ...): same model."""
    defaults = {name: p.default for name, p in
                inspect.signature(SB3PPO.__init__).parameters.items()}
    return {k: v for k, v in solution_08(config).items()
            if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}


def drops_none(config):
    return {k: v for k, v in solution_08(config).items() if v is not None}


def allow_list_and_deepcopy(config):
    """Keeps what SB3's PPO signature takes; copies policy_kwargs deeply; tuples for sizes."""
    names = set(inspect.signature(SB3PPO.__init__).parameters) - {"self", "env"}
    out = {k: v for k, v in config.items() if k in names}
    if out.get("policy_kwargs"):
        policy_kwargs = copy.deepcopy(out["policy_kwargs"])
        net_arch = policy_kwargs.get("net_arch")
        if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
            net_arch = net_arch[0]
        if isinstance(net_arch, dict):
            net_arch = {key: tuple(sizes) for key, sizes in net_arch.items()}
        if net_arch is not None:
            policy_kwargs["net_arch"] = net_arch
        out["policy_kwargs"] = policy_kwargs
    return out


def fills_every_default(config):
    """Writes out SB3's defaults for everything the config leaves out: same model."""
    defaults = {name: p.default for name, p in
                inspect.signature(SB3PPO.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty and name != "_init_setup_model"}
    return dict(defaults, **solution_08(config))


def wraps_schedules(config):
    """A schedule wrapped in another function of progress_remaining: the same schedule."""
    out = solution_08(config)
    for key in ("learning_rate", "clip_range"):
        if callable(out.get(key)):
            out[key] = (lambda f: lambda progress: f(progress))(out[key])
    return out


@pytest.mark.parametrize("answer", [to_sb3_kwargs, solution_08, drops_sb3_defaults,
                                    drops_none, allow_list_and_deepcopy, fills_every_default,
                                    wraps_schedules], ids=lambda f: f.__name__)
def test_right_to_sb3_kwargs_pass(answer, capsys):
    assert grading.check("to_sb3_kwargs", answer), capsys.readouterr().out


def test_sb3_effect_means_what_sb3_builds():
    effect = sb3_config.sb3_effect
    assert effect({}) == effect({"target_kl": None, "clip_range": 0.2, "policy_kwargs": None})
    assert effect({"policy_kwargs": {"net_arch": [64, 64]}}) == effect({})
    assert effect({"policy_kwargs": {"activation_fn": nn.ReLU}}) != effect({})
    assert effect({"learning_rate": lambda p: 3e-4}) == effect({"learning_rate": 3e-4})
    assert effect({"learning_rate": lambda p: 3e-4 * p}) != effect({"learning_rate": 3e-4})


def test_effect_agrees_with_a_built_sb3_model():
    """What the grader calls the same model is what SB3 builds: two kwargs the grader calls
    equal give SB3 models with the same hyperparameters and network."""
    config = dict(n_steps=64, batch_size=32, gamma=0.98, seed=0, target_kl=None,
                  policy_kwargs=dict(net_arch=[dict(pi=[16], vf=[8])], activation_fn=nn.ReLU))
    a = SB3PPO("MlpPolicy", "CartPole-v1", device="cpu", **to_sb3_kwargs(config))
    b = SB3PPO("MlpPolicy", "CartPole-v1", device="cpu", **drops_sb3_defaults(config))
    for name in ("n_steps", "batch_size", "gamma", "target_kl", "ent_coef", "seed"):
        assert getattr(a, name) == getattr(b, name)
    assert str(a.policy) == str(b.policy)
    assert "ReLU" in str(a.policy) and "out_features=16" in str(a.policy)


# read_sb3_log: right answers with other windows ----------------------------------------------

def reader(window=5, summary=lambda values: sum(values) / len(values)):
    def read_log(rows):
        def recent(key):
            values = [row[key] for row in rows if key in row][-window:]
            return summary(values) if values else None
        kl, clip = recent("train/approx_kl"), recent("train/clip_fraction")
        ev, entropy_loss = recent("train/explained_variance"), recent("train/entropy_loss")
        if (kl is not None and kl > 0.05) or (clip is not None and clip > 0.5):
            return "lower learning_rate"
        if entropy_loss is not None and -entropy_loss < 0.01:
            return "lower learning_rate"
        if kl is not None and kl < 0.001:
            return "raise learning_rate"
        if ev is not None and ev <= 0:
            return "fix the critic"
        return "nothing to fix"
    read_log.__name__ = f"window_{window}_{getattr(summary, '__name__', 'mean')}"
    return read_log


@pytest.mark.parametrize("answer", [reader(3), reader(5), reader(8), reader(10),
                                    reader(5, statistics.median)], ids=lambda f: f.__name__)
def test_right_read_sb3_log_pass(answer, capsys):
    assert grading.check("read_sb3_log", answer), capsys.readouterr().out
