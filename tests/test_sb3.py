"""ppo_lib.lab.sb3: the name mapping, SB3's log reader, the per-update recorder and the
SB3 trainer for ppo_lib.sweeps."""

import csv
import warnings
from functools import partial

import pytest
import torch
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from torch import nn

from ppo_lib.diagnostics import diagnose
from ppo_lib.lab import sb3 as sb3_compat
from ppo_lib.lab.sb3 import (FIXES, NAME_TABLE, SB3LogRecorder, from_sb3_kwargs,
                             read_progress_csv, read_sb3_log, sb3_env_kwargs, to_sb3_kwargs,
                             train_sb3)
from ppo_lib.sweeps import run_seeds

CONFIG = dict(n_envs=4, learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=4,
              gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.01, vf_coef=0.5,
              max_grad_norm=0.5, target_kl=None, normalize_obs=True, seed=3,
              policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]),
                                 activation_fn=nn.Tanh))


def test_same_names_copied_env_names_left_out():
    kwargs = to_sb3_kwargs(CONFIG)
    assert "n_envs" not in kwargs and "normalize_obs" not in kwargs
    for name in ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma",
                 "gae_lambda", "clip_range", "ent_coef", "vf_coef", "max_grad_norm",
                 "target_kl", "seed"):
        assert kwargs[name] == CONFIG[name]
    assert kwargs["policy_kwargs"] == CONFIG["policy_kwargs"]
    assert sb3_env_kwargs(CONFIG) == dict(n_envs=4, norm_obs=True, norm_reward=False)


def test_config_not_modified_and_schedule_kept():
    def schedule(progress):
        return 3e-4 * progress
    config = dict(CONFIG, learning_rate=schedule)
    before = dict(config)
    kwargs = to_sb3_kwargs(config)
    assert config == before
    assert kwargs["learning_rate"] is schedule
    kwargs["policy_kwargs"]["net_arch"]["pi"].append(1)
    assert CONFIG["policy_kwargs"]["net_arch"]["pi"] == [64, 64]


def test_old_net_arch_format_becomes_dict():
    old = dict(policy_kwargs=dict(net_arch=[dict(pi=[256, 256], vf=[256, 256])]))
    assert to_sb3_kwargs(old)["policy_kwargs"]["net_arch"] == dict(pi=[256, 256], vf=[256, 256])
    assert to_sb3_kwargs(dict(policy_kwargs=dict(net_arch=[32])))["policy_kwargs"] == {
        "net_arch": [32]}


@pytest.mark.parametrize("config,words", [
    (dict(loss_fn=lambda *a: 0), "loss_fn"),
    (dict(advantage_fn=print), "advantage_fn"),
    (dict(lerning_rate=1e-3), "lerning_rate"),
    (dict(policy=nn.Module), "policy"),
    (dict(policy_kwargs=dict(net_arch=dict(shared=[64], pi=[64], vf=[64]))), "shared"),
])
def test_bad_config_named_in_error(config, words):
    with pytest.raises(ValueError, match=words):
        to_sb3_kwargs(config)


def test_not_a_dict():
    with pytest.raises(TypeError, match="config"):
        to_sb3_kwargs([("n_steps", 8)])


def test_round_trip():
    kwargs = to_sb3_kwargs(CONFIG)
    back = from_sb3_kwargs(kwargs, **sb3_env_kwargs(CONFIG))
    assert back == CONFIG
    with pytest.raises(ValueError, match="use_sde"):
        from_sb3_kwargs(dict(use_sde=True))


def test_table_covers_every_name():
    names = [row[0] for row in NAME_TABLE]
    assert len(names) == len(set(names))
    assert set(CONFIG) <= set(names)
    assert {"advantage_fn", "loss_fn"} <= set(names)


def test_sb3_accepts_the_kwargs_without_warning():
    torch.set_num_threads(1)
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = dict(policy_kwargs=dict(net_arch=[dict(pi=[8], vf=[8])]))
        model = SB3PPO("MlpPolicy", venv, **to_sb3_kwargs(dict(CONFIG, **old)), device="cpu")
    assert model.n_steps == 128 and model.n_epochs == 4
    assert [m.out_features for m in model.policy.mlp_extractor.policy_net
            if isinstance(m, nn.Linear)] == [8]


def test_read_progress_csv_skips_empty_cells(tmp_path):
    path = tmp_path / "progress.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rollout/ep_rew_mean", "train/approx_kl", "train/explained_variance"])
        writer.writerow(["20.5", "", ""])
        writer.writerow(["30", "0.2", "-0.5"])
    rows = read_progress_csv(path)
    assert rows == [{"rollout/ep_rew_mean": 20.5},
                    {"rollout/ep_rew_mean": 30.0, "train/approx_kl": 0.2,
                     "train/explained_variance": -0.5}]
    assert diagnose(rows[0]) == []
    assert len(diagnose(rows[1])) == 2
    assert read_sb3_log(rows) == "lower learning_rate"
    with pytest.raises(FileNotFoundError, match="progress.csv"):
        read_progress_csv(tmp_path / "nope.csv")


def test_read_sb3_log_rules():
    def rows(**m):
        return [{}, {f"train/{k}": v for k, v in m.items()}]
    assert read_sb3_log(rows(approx_kl=1e-4)) == "raise learning_rate"
    assert read_sb3_log(rows(approx_kl=0.01, explained_variance=0.0)) == "fix the critic"
    assert read_sb3_log(rows(approx_kl=0.01, clip_fraction=0.51)) == "lower learning_rate"
    assert read_sb3_log(rows(approx_kl=0.01, explained_variance=0.3)) == "nothing to fix"
    assert read_sb3_log(rows(approx_kl=0.0, entropy_loss=-1e-9)) == "lower learning_rate"
    assert read_sb3_log(rows(approx_kl=0.0, entropy_loss=-0.5)) == "raise learning_rate"
    assert set(FIXES) == {"lower learning_rate", "raise learning_rate", "fix the critic",
                          "nothing to fix"}
    with pytest.raises(ValueError, match="rows"):
        read_sb3_log([])


def test_recorder_and_csv_agree_on_a_tiny_sb3_run(tmp_path):
    torch.set_num_threads(1)
    config = dict(n_envs=1, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model = sb3_compat.make_sb3(config, "CartPole-v1", seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    recorder = SB3LogRecorder()
    model.learn(96, callback=recorder)
    rows = read_progress_csv(tmp_path / "progress.csv")
    assert len(rows) == 3 and len(recorder.rows) == 3
    assert "train/approx_kl" not in rows[0]
    # SB3's CSV carries update k's train/ values in row k + 1; the recorder in row k.
    for k in range(2):
        assert recorder.rows[k]["train/approx_kl"] == pytest.approx(rows[k + 1]["train/approx_kl"])
    assert recorder.rows[-1]["time/total_timesteps"] == 96
    assert recorder.get("train/n_updates") == [1.0, 2.0, 3.0]


def test_copy_sb3_weights_gives_the_same_policy():
    from ppo_lib.policies import CategoricalActorCritic
    torch.manual_seed(0)
    net_arch = dict(pi=[16, 16], vf=[8])
    sb3 = SB3PPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=net_arch),
                 device="cpu", seed=0)
    policy = CategoricalActorCritic(sb3.observation_space, sb3.action_space, net_arch=net_arch)
    sb3_compat.copy_sb3_weights(sb3.policy, policy)
    obs, actions = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    with torch.no_grad():
        want = sb3.policy.evaluate_actions(obs, actions)
        got = policy.evaluate_actions(obs, actions)
    for w, g in zip(want, got):
        assert torch.allclose(w.flatten(), g.flatten(), atol=1e-6)
    other = CategoricalActorCritic(sb3.observation_space, sb3.action_space,
                                   net_arch=dict(pi=[16, 16], vf=[4]))
    with pytest.raises(ValueError, match="shape"):
        sb3_compat.copy_sb3_weights(sb3.policy, other)
    with pytest.raises(ValueError, match="missing"):
        sb3_compat.copy_sb3_weights({}, policy)


def test_train_sb3_is_a_sweeps_trainer():
    torch.set_num_threads(1)
    config = dict(n_envs=1, n_steps=32, batch_size=32, n_epochs=1)
    train = partial(train_sb3, env_id="CartPole-v1", total_timesteps=64)
    curves = run_seeds(train, config, seeds=[0], grid=[32, 64], key="train/n_updates")
    assert curves.values.tolist() == [[1.0, 2.0]]
    assert curves.seconds[0] > 0 and len(curves.rows[0]) == 2
