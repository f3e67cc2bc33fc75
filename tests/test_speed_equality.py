"""ppo_lib.full_batch (issue 15): the full-batch update equals PPO.train bit for bit.

Each case trains twice from the same seed, once through ``learn`` as it runs (the full-batch
update where it applies) and once with ``full_batch_update`` switched off (lesson 05's
``PPO.train`` every update), and compares every logged number (wall-clock keys left out),
the parameters, Adam's state and the env's state exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppo_lib.ppo
from ppo_lib import PPO, presets
from ppo_lib.full_batch import full_batch_update
from ppo_lib.losses import ppo_loss
from ppo_lib.schedules import linear_schedule
from training_equality import assert_same_training

CASES = {
    "zoo": (dict(**presets.get("cartpole_tuned")), "CartPole-v1", 1024),
    "zoo vectorised": (dict(**presets.get("cartpole_tuned"),
                            vectorization_mode="vector_entry_point"), "CartPole-v1", 1024),
    "cartpole_fast": (presets.get("cartpole_fast"), "CartPole-v1", 1024),
    "target_kl stops": (dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20,
                             learning_rate=1e-2, target_kl=0.001), "CartPole-v1", 1024),
    "odd batch, value clip, entropy": (dict(n_envs=3, n_steps=50, batch_size=150, n_epochs=4,
                                            clip_range_vf=0.1, ent_coef=0.01),
                                       "CartPole-v1", 600),
    "gaussian, normalisation, schedule": (dict(n_envs=2, n_steps=128, batch_size=256,
                                               n_epochs=4, normalize_obs=True,
                                               normalize_reward=True, ent_coef=0.001,
                                               learning_rate=linear_schedule(1e-3)),
                                          "Pendulum-v1", 768),
}


def _train(config: dict, env_id: str, steps: int) -> PPO:
    return PPO("MlpPolicy", env_id, seed=3, **config).learn(steps)


@pytest.mark.parametrize("case", list(CASES))
def test_full_batch_update_equals_train(case, monkeypatch):
    config, env_id, steps = CASES[case]
    calls = []
    real = ppo_lib.ppo.full_batch_update
    monkeypatch.setattr(ppo_lib.ppo, "full_batch_update",
                        lambda model, progress: calls.append(1) or real(model, progress))
    fast = _train(config, env_id, steps)
    assert calls
    monkeypatch.setattr(ppo_lib.ppo, "full_batch_update", lambda model, progress: None)
    reference = _train(config, env_id, steps)
    assert_same_training(fast, reference)


def test_full_batch_update_only_where_it_applies():
    small = dict(n_envs=2, n_steps=16, n_epochs=1, seed=0)
    model = PPO("MlpPolicy", "CartPole-v1", batch_size=16, **small).learn(32)
    assert full_batch_update(model) is None  # minibatches: PPO.train shuffles
    for kwargs in (dict(loss_fn=ppo_loss), dict(kl_penalty=1.0)):
        model = PPO("MlpPolicy", "CartPole-v1", batch_size=32, **small, **kwargs).learn(32)
        assert full_batch_update(model) is None
    model = PPO("MlpPolicy", "CartPole-v1", batch_size=32, **small).learn(32)
    model.fast_path = False
    assert full_batch_update(model) is None
    model.fast_path = True
    assert isinstance(full_batch_update(model), dict)


def test_full_batch_update_reports_nan_parameters():
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=16, batch_size=32, n_epochs=2,
                seed=0).learn(32)
    with torch.no_grad():
        model.policy.value_net.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or inf in"):
        full_batch_update(model)


def test_a_subclass_train_still_runs():
    class Counting(PPO):
        calls = 0

        def train(self, progress_remaining=1.0):
            Counting.calls += 1
            return super().train(progress_remaining)

    Counting("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=16, batch_size=32, seed=0).learn(64)
    assert Counting.calls == 2
