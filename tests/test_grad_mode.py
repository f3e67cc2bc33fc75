"""Training calls train whatever mode the caller is in (ppo_lib.grad_mode): inside
``torch.no_grad()`` or ``torch.inference_mode()``, or with float64 torch's default dtype,
they give the numbers of a call outside it (float32), keep no inference tensor, and give
the caller's modes back."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from ppo_lib import PPO
from ppo_lib.lm import VOCAB, TinyLM, pretrain
from ppo_lib.lockstep import train_seeds
from ppo_lib.rlhf_train import RLConfig, train_grpo, train_ppo, train_reward_model
from ppo_lib.trpo import train_trpo
from ppo_lib.vpg import make_env, make_policy, train_vpg



@contextlib.contextmanager
def float64_default():
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(torch.float32)


MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
         "float64_default": float64_default}


def _modes() -> tuple:
    return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.get_default_dtype()
SMALL = dict(n_envs=2, n_steps=32, batch_size=16, n_epochs=2, seed=1)


def _ppo(env_id="CartPole-v1", fast=True, **kw):
    model = PPO("MlpPolicy", env_id, **{**SMALL, **kw})
    model.fast_path = fast
    return model.learn(128)


def _state(model) -> list[torch.Tensor]:
    """Everything a later update reads: parameters, Adam's state, the rollout."""
    kept = [p.detach() for p in model.policy.parameters()]
    for state in model.optimizer.state.values():
        kept += [v for v in state.values() if isinstance(v, torch.Tensor)]
    r = model.rollout
    return kept + [r.obs, r.actions, r.rewards, r.values, r.log_probs, r.advantages, r.returns]


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert not x.is_inference(), "an inference tensor kept in the model"
        assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("run", [
    dict(), dict(fast=False), dict(fast=False, ent_coef=0.01, clip_range_vf=0.2),
    dict(env_id="Pendulum-v1"), dict(env_id="Pendulum-v1", fast=False),
], ids=["fast", "reference", "reference-vf-clip", "pendulum-fast", "pendulum-reference"])
def test_ppo_built_and_trained_inside_a_mode_equals_outside(mode, run):
    outside = _ppo(**run)
    with MODES[mode]():
        callers = _modes()
        inside = _ppo(**run)
        assert _modes() == callers  # the caller's modes are back
        obs = inside.env.last_obs
        np.testing.assert_array_equal(inside.predict(obs, deterministic=True)[0],
                                      outside.predict(obs, deterministic=True)[0])
    _assert_same(_state(inside), _state(outside))
    assert [r["train/loss"] for r in inside.logger.rows] == \
           [r["train/loss"] for r in outside.logger.rows]
    # and it goes on training outside, as the model trained outside does
    for model in (inside, outside):
        torch.manual_seed(5)  # the global stream the next rollouts draw from
        model.learn(64, reset_num_timesteps=False)
    _assert_same(_state(inside), _state(outside))


@pytest.mark.parametrize("mode", MODES)
def test_load_inside_a_mode_gives_a_model_that_trains(mode, tmp_path):
    model = _ppo(fast=False)
    path = model.save(tmp_path / "m")
    with MODES[mode]():
        loaded = PPO.load(path)
        loaded.fast_path = False
        loaded.learn(64, reset_num_timesteps=False)
    again = PPO.load(path)
    again.fast_path = False
    again.learn(64, reset_num_timesteps=False)
    _assert_same(_state(loaded), _state(again))


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids as (chosen, rejected) pairs: what they say does not matter here."""
    tokens = torch.randint(len(VOCAB), (2, 16, 12), generator=torch.Generator().manual_seed(1))
    return tokens[0], tokens[1]


def _fitted(model: torch.nn.Module, losses: list) -> list:
    return [p.detach() for p in model.parameters()] + [np.asarray(losses)]


def _rl_history(train, lm: TinyLM) -> list:
    reward_model, _ = train_reward_model(*_pairs(), steps=3)
    config = RLConfig(n_updates=2, n_completions=8, group_size=4, batch_size=4, n_epochs=2)
    policy, history = train(lm, reward_model, config, seed=2)
    return [p.detach() for p in policy.parameters()] + [
        v for k, v in sorted(history.items()) if k != "seconds"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("make, train", [
    (lambda: None, lambda _: train_vpg(n_iterations=2, n_envs=2, seed=3).history),
    (lambda: None, lambda _: train_trpo(n_iterations=2, n_envs=2, seed=3).history),
    (TinyLM, lambda lm: pretrain(lm, steps=3, batch_size=4)),  # the network made outside
    (_pairs,
     lambda pairs: _fitted(*train_reward_model(*pairs, steps=3))),
    (TinyLM, lambda lm: _rl_history(train_ppo, lm)),
    (TinyLM, lambda lm: _rl_history(train_grpo, lm)),
], ids=["vpg", "trpo", "pretrain", "reward-model", "rlhf-ppo", "grpo"])
def test_lesson_training_loops_inside_a_mode_equal_outside(mode, make, train):
    def no_time(result):
        if isinstance(result, list) and result and isinstance(result[0], dict):
            return [{k: v for k, v in row.items() if k != "time"} for row in result]
        return result

    torch.manual_seed(0)
    outside = train(make())
    torch.manual_seed(0)
    made = make()
    with MODES[mode]():
        inside = train(made)
    inside, outside = no_time(inside), no_time(outside)
    if isinstance(inside, list) and inside and not isinstance(inside[0], dict):
        assert len(inside) == len(outside)  # tensors and arrays
        for x, y in zip(inside, outside):
            assert not (isinstance(x, torch.Tensor) and x.is_inference())
            assert np.array_equal(np.asarray(x), np.asarray(y))
    else:
        assert inside == outside


def test_a_network_made_inside_inference_mode_is_a_clear_error():
    with torch.inference_mode():
        lm = TinyLM()
        policy = make_policy(make_env("CartPole-v1", 2))
    with pytest.raises(ValueError, match=r"model has parameters created inside "
                                         r"torch.inference_mode\(\).*outside"):
        pretrain(lm, steps=2)
    with pytest.raises(ValueError, match=r"policy has parameters created inside"):
        train_vpg(n_iterations=1, n_envs=2, policy=policy)
    with pytest.raises(ValueError, match=r"policy has parameters created inside"):
        train_trpo(n_iterations=1, n_envs=2, policy=policy)


@pytest.mark.parametrize("mode", MODES)
def test_seeds_in_lockstep_inside_a_mode_equal_outside(mode):
    config = dict(n_envs=2, n_steps=32, batch_size=64, n_epochs=2)
    outside = train_seeds(config, "CartPole-v1", [0, 1], 128, processes=1)
    with MODES[mode]():
        inside = train_seeds(config, "CartPole-v1", [0, 1], 128, processes=1)
    for a, b in zip(inside, outside):
        _assert_same(_state(a), _state(b))
