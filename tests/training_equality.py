"""What "bit for bit the same training" means for the fast paths' tests
(tests/test_speed_equality.py, tests/test_fast_rollout.py): two PPO models trained alike,
one with a fast path and one without, must agree on every logged number but time/*, the
weights, Adam's state, the rollout buffers, the last observation, the counters, the env's
state and the normaliser's."""

from __future__ import annotations

import numpy as np
import torch

from ppo_lib import PPO

ROLLOUT_FIELDS = ("obs", "actions", "rewards", "dones", "values", "log_probs", "advantages",
                  "returns", "last_values")


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def assert_same_training(a: PPO, b: PPO) -> None:
    assert repr(untimed(a.logger.rows)) == repr(untimed(b.logger.rows))  # NaN as well
    for (name, x), (_, y) in zip(a.policy.state_dict().items(), b.policy.state_dict().items()):
        assert torch.equal(x, y), name
    for s, t in zip(a.optimizer.state_dict()["state"].values(),
                    b.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(torch.as_tensor(s[k]), torch.as_tensor(t[k])) for k in s)
    for field in ROLLOUT_FIELDS:
        assert torch.equal(getattr(a.rollout, field), getattr(b.rollout, field)), field
    np.testing.assert_array_equal(a.last_obs, b.last_obs)
    assert a.n_updates == b.n_updates and a.num_timesteps == b.num_timesteps
    assert repr(a.env.get_state()) == repr(b.env.get_state())
    if a.normalizer is not None:
        assert repr(a.normalizer.state_dict()) == repr(b.normalizer.state_dict())
