"""Fingerprints of training runs, to prove a refactoring changed no number (not a test:
bit-equality across versions of the code is a property of one machine and one torch).

    python benchmarks/training_hashes.py > before.txt    # on the old code
    python benchmarks/training_hashes.py > after.txt     # on the new code
    diff before.txt after.txt                            # empty: the same bits

Each line is a run and the SHA-256 of its final parameters, optimizer state and every logged
number (wall-clock keys left out). The runs cover the written-out fast path, the autograd
reference path (a custom ``loss_fn``), Gaussian policies with normalisation, value clipping,
schedules and target_kl, a shared trunk with an entropy bonus, save -> load -> learn, the
Nature CNN on Pong, and the lessons' VPG and TRPO loops.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile

import numpy as np
import torch

from ppo_lib import PPO
from ppo_lib.losses import ppo_loss
from ppo_lib.schedules import linear_schedule

TIMED = ("time/fps", "time/time_elapsed")


def _digest(model: PPO) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.policy.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    for state in model.optimizer.state_dict()["state"].values():
        for key in sorted(state):
            h.update(torch.as_tensor(state[key]).contiguous().numpy().tobytes())
    for row in model.logger.rows:
        for key in sorted(row):
            if key not in TIMED:
                h.update(f"{key}={row[key]!r}".encode())
    return h.hexdigest()[:16]


def _runs():
    yield "cartpole fast path", lambda: PPO("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=128,
                                            batch_size=64, n_epochs=4, seed=0), 2048
    yield "cartpole reference path (loss_fn)", lambda: PPO(
        "MlpPolicy", "CartPole-v1", n_envs=4, n_steps=128, batch_size=64, n_epochs=4, seed=0,
        loss_fn=ppo_loss), 2048
    yield "cartpole shared trunk, entropy, relu, odd batch", lambda: PPO(
        "MlpPolicy", "CartPole-v1", n_envs=2, n_steps=100, batch_size=64, n_epochs=3, seed=1,
        ent_coef=0.01, policy_kwargs=dict(net_arch=dict(shared=[32], pi=[16], vf=[16]),
                                          activation_fn=torch.nn.ReLU)), 1000
    yield "cartpole target_kl, clip_range_vf, schedules", lambda: PPO(
        "MlpPolicy", "CartPole-v1", n_envs=4, n_steps=64, batch_size=32, n_epochs=10,
        seed=2, learning_rate=linear_schedule(3e-3), clip_range=linear_schedule(0.3),
        clip_range_vf=0.2, target_kl=0.01), 2048
    yield "pendulum gaussian, normalisation", lambda: PPO(
        "MlpPolicy", "Pendulum-v1", n_envs=2, n_steps=256, batch_size=64, n_epochs=5, seed=0,
        normalize_obs=True, normalize_reward=True, ent_coef=0.001), 2048
    yield "pendulum gaussian reference path", lambda: PPO(
        "MlpPolicy", "Pendulum-v1", n_envs=2, n_steps=256, batch_size=64, n_epochs=5, seed=0,
        loss_fn=ppo_loss), 1024


def _pong():
    from ppo_lib.atari import NatureCNNActorCritic, make_atari_env
    model = PPO(NatureCNNActorCritic, make_atari_env("ALE/Pong-v5", n_envs=2), n_steps=16,
                batch_size=16, n_epochs=1, learning_rate=2.5e-4, clip_range=0.1,
                ent_coef=0.01, seed=0)
    return model.learn(64)


def _resume(folder: str) -> PPO:
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=64, batch_size=64, n_epochs=2,
                seed=3)
    model.learn(512)
    path = model.save(os.path.join(folder, "m"))
    return PPO.load(path).learn(512, reset_num_timesteps=False)


def _hash_values(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(np.asarray(t, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def main() -> int:
    torch.set_num_threads(1)
    for name, make, steps in _runs():
        print(f"{name:50s} {_digest(make().learn(steps))}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'save -> load -> learn':50s} {_digest(_resume(folder))}", flush=True)
    print(f"{'pong nature cnn':50s} {_digest(_pong())}", flush=True)
    from ppo_lib.trpo import train_trpo
    from ppo_lib.vpg import train_vpg
    for name, train in (("vpg", train_vpg), ("trpo", train_trpo)):
        result = train(n_iterations=3, seed=0)
        params = [p.detach().numpy().ravel() for p in result.policy.parameters()]
        returns = [row[k] for row in result.history for k in sorted(row) if k not in ("seconds", "time")
                   and isinstance(row[k], (int, float))]
        print(f"{name:50s} {_hash_values(returns, *params)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
