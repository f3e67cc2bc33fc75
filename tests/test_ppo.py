import glob
import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from ppo_lib import presets
from ppo_lib.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from ppo_lib.diagnostics import METRIC_KEYS
from ppo_lib.envs import VecEnv
from ppo_lib.losses import ppo_loss
from ppo_lib.fastpath import LeanAdam, clip_grad_norm
from ppo_lib.ppo import PPO
from ppo_lib.returns import gae
from ppo_lib.rollout import Rollout, collect_rollout, minibatches
from ppo_lib.schedules import linear_schedule

from test_envs import CountEnv

SMALL = dict(n_steps=32, batch_size=32, n_epochs=2)


class ValueIsTenTimesObs(nn.Module):
    """A stub policy: action 0, V(s) = 10 * s, log-prob 0."""

    def forward(self, obs, deterministic=False):
        n = obs.shape[0]
        return torch.zeros(n, dtype=torch.long), self.predict_values(obs), torch.zeros(n)

    def predict_values(self, obs):
        return 10.0 * obs[:, 0].float()


class TerminatingCountEnv(CountEnv):
    def step(self, action):
        obs, r, _, _, info = super().step(action)
        return obs, r, self.t == 3, False, info


def run_stub_rollout(make_env, n_steps=5, gamma=0.9):
    env = VecEnv([make_env])
    rollout = Rollout.allocate(n_steps, 1, env.observation_space, env.action_space)
    last_obs, done = collect_rollout(ValueIsTenTimesObs(), env, rollout, env.reset(), gamma)
    assert done
    return rollout, last_obs


def test_timeout_is_bootstrapped_with_value_of_final_obs():
    rollout, last_obs = run_stub_rollout(
        lambda: gym.wrappers.TimeLimit(CountEnv(), max_episode_steps=3))
    # truncation at the 3rd step: final obs [3], V = 30, reward 1 + 0.9 * 30
    torch.testing.assert_close(rollout.rewards[:, 0], torch.tensor([1, 1, 1 + 0.9 * 30, 1, 1.]))
    torch.testing.assert_close(rollout.dones[:, 0], torch.tensor([0, 0, 1, 0, 0.]))
    torch.testing.assert_close(rollout.obs[:, 0, 0], torch.tensor([0, 1, 2, 0, 1.]))
    torch.testing.assert_close(rollout.values[:, 0], torch.tensor([0, 10, 20, 0, 10.]))
    assert rollout.last_values[0].item() == 20.0 and last_obs[0, 0] == 2.0


def test_termination_is_not_bootstrapped():
    rollout, _ = run_stub_rollout(TerminatingCountEnv)
    torch.testing.assert_close(rollout.rewards[:, 0], torch.ones(5))
    torch.testing.assert_close(rollout.dones[:, 0], torch.tensor([0, 0, 1, 0, 0.]))


def test_minibatches_cover_every_sample_once():
    rollout = Rollout.allocate(6, 4, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
    rollout.rewards[:] = torch.arange(24.0).reshape(6, 4)
    rollout.returns[:] = rollout.rewards
    batches = list(minibatches(rollout, 10))
    assert [len(b.returns) for b in batches] == [10, 10, 4]
    assert sorted(torch.cat([b.returns for b in batches]).tolist()) == list(range(24))


@pytest.mark.parametrize("kwargs, match", [
    (dict(clip_range=0.0), r"clip_range must be in \(0.0, 1.0\), got 0.0"),
    (dict(clip_range=1.5), r"clip_range must be in \(0.0, 1.0\), got 1.5"),
    (dict(gamma=1.1), r"gamma must be in \[0.0, 1.0\], got 1.1"),
    (dict(gae_lambda=-0.1), r"gae_lambda must be in \[0.0, 1.0\], got -0.1"),
    (dict(n_steps=0), "n_steps must be a positive integer, got 0"),
    (dict(n_steps=16, batch_size=64, n_envs=2), r"batch_size=64 is larger than the rollout"),
    (dict(policy="MlpPolicyy"), "policy must be 'MlpPolicy'.*got 'MlpPolicyy'"),
    (dict(learning_rate=-1.0), "learning_rate must be in"),
])
def test_bad_arguments_are_named(kwargs, match):
    kwargs = dict(kwargs)
    policy = kwargs.pop("policy", "MlpPolicy")
    with pytest.raises(ValueError, match=match):
        PPO(policy, "CartPole-v1", **kwargs)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'cartpol'.*cartpole_tuned"):
        presets.get("cartpol")
    p = presets.get("cartpole")
    p["n_steps"] = 1
    assert presets.get("cartpole")["n_steps"] == 128
    assert presets.get("atari") == dict(learning_rate=2.5e-4, n_steps=128, batch_size=256,
                                        n_epochs=4, clip_range=0.1)


@pytest.mark.parametrize("name", ["cartpole", "cartpole_tuned", "cartpole_fast", "mujoco"])
def test_presets_construct(name):
    env = "Pendulum-v1" if name == "mujoco" else "CartPole-v1"
    PPO("MlpPolicy", env, **presets.get(name))


def test_logger_keys_are_sb3s(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    model.learn(64)
    assert len(model.logger.rows) == 2
    row = model.logger.rows[-1]
    assert set(METRIC_KEYS) <= set(row)
    assert row["time/total_timesteps"] == 64 and row["train/n_updates"] == 4
    assert model.logger.get("time/total_timesteps") == [32, 64]
    g = PPO("MlpPolicy", "Pendulum-v1", seed=0, **SMALL).learn(32)
    assert math.isclose(g.logger.rows[-1]["train/std"], 1.0, rel_tol=0.05)
    with pytest.raises(KeyError, match="unknown logger key"):
        model.logger.get("train/aprox_kl")


def test_tensorboard_event_file_written(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, tensorboard_log=str(tmp_path), **SMALL)
    model.learn(64)
    model.logger.close()
    files = glob.glob(str(tmp_path / "PPO_1" / "events.out.tfevents.*"))
    assert files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "PPO_1"))
    acc.Reload()
    assert "train/approx_kl" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("rollout/ep_len_mean")] == [32, 64]


class Recorder(BaseCallback):
    def __init__(self):
        super().__init__()
        self.events = []

    def _on_training_start(self):
        self.events.append("start")

    def _on_rollout_start(self):
        self.events.append("rollout_start")

    def _on_step(self):
        self.events.append("step")
        return True

    def _on_rollout_end(self):
        self.events.append("rollout_end")

    def _on_update_end(self):
        self.events.append(("update", len(self.model.logger.rows)))

    def _on_training_end(self):
        self.events.append("end")


def test_callbacks_called_in_order(tmp_path):
    rec = Recorder()
    ckpt = CheckpointCallback(save_freq=16, save_path=str(tmp_path / "ck"))
    ev = EvalCallback("CartPole-v1", eval_freq=32, n_eval_episodes=2)
    PPO("MlpPolicy", "CartPole-v1", n_envs=2, seed=0, **SMALL).learn(128, callback=[rec, ckpt, ev])
    assert rec.events[0] == "start" and rec.events[-1] == "end"
    assert rec.events.count("step") == 64
    assert rec.events[1:35] == ["rollout_start"] + ["step"] * 32 + ["rollout_end"]
    assert ("update", 1) in rec.events and ("update", 2) in rec.events
    assert sorted(p.rsplit("_", 2)[1] for p in ckpt.saved) == ["128", "32", "64", "96"]
    assert len(glob.glob(str(tmp_path / "ck" / "*.pt"))) == 4
    assert ev.evaluations_timesteps == [64, 128] and len(ev.evaluations_results[0]) == 2


def test_callback_can_stop_training():
    class StopAt(BaseCallback):
        def _on_step(self):
            return self.num_timesteps < 40
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    model.learn(1000, callback=StopAt())
    assert model.num_timesteps == 40 and len(model.logger.rows) == 1


def _run_small(fast_path=True, **kw):
    m = PPO("MlpPolicy", "CartPole-v1", n_envs=2, seed=3, **SMALL, **kw)
    m.fast_path = fast_path
    m.learn(128)
    return m.logger.get("train/loss"), [p.detach().clone() for p in m.policy.parameters()]


def test_same_seed_same_run_and_hooks_equal_reference():
    loss_a, params_a = _run_small(fast_path=False)  # the reference: ppo_loss_terms
    loss_b, params_b = _run_small(advantage_fn=gae, loss_fn=ppo_loss)
    assert loss_a == loss_b
    for a, b in zip(params_a, params_b):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert _run_small(fast_path=False)[0] == loss_a  # same seed, same run


def test_fast_path_trains_as_the_reference():
    """ppo_lib.fastpath (the default for MLP policies) against ppo_loss_terms over four
    updates: equal up to float32 rounding (the gradients are summed in another order)."""
    loss_ref, params_ref = _run_small(fast_path=False)
    loss_fast, params_fast = _run_small()
    np.testing.assert_allclose(loss_fast, loss_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(params_fast, params_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_schedules_and_target_kl():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, learning_rate=linear_schedule(1e-3),
                clip_range=linear_schedule(0.2), **SMALL).learn(128)
    lrs = model.logger.get("train/learning_rate")
    np.testing.assert_allclose(lrs, [1e-3 * (1 - k / 4) for k in range(1, 5)], rtol=1e-6)
    np.testing.assert_allclose(model.logger.get("train/clip_range")[:3], [0.15, 0.1, 0.05])
    stopped = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=16, n_epochs=10,
                  learning_rate=5e-3, target_kl=1e-5).learn(64)
    assert stopped.logger.rows[-1]["train/n_updates"] < 10


def test_lean_adam_and_clip_equal_torch():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, eps=1e-5, foreach=False)
    opt_b = LeanAdam(list(b.parameters()), lr=1e-2, eps=1e-5)
    for step in range(6):
        x = torch.randn(8, 4) * (10 if step % 2 else 0.1)  # clipping on every other step
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
        nn.utils.clip_grad_norm_(a.parameters(), 0.5)
        clip_grad_norm(list(b.parameters()), 0.5)
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-6, atol=1e-7)
        opt_a.step()
        opt_b.step() if step % 2 else opt_b.lean_step()
        if step == 3:
            opt_b.param_groups[0]["lr"] = opt_a.param_groups[0]["lr"] = 3e-3
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert opt_a.state_dict()["state"][0]["step"] == opt_b.state_dict()["state"][0]["step"] == 6


class NaNEnv(CountEnv):
    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        return np.array([np.nan], np.float32) if self.t == 5 else obs, r, term, trunc, info


def test_nan_observation_stops_with_clear_error():
    model = PPO("MlpPolicy", [NaNEnv], seed=0, **SMALL)
    with pytest.raises(FloatingPointError, match="NaN or inf in the observations"):
        model.learn(64)


def overflowing_loss(*args):
    return ppo_loss(*args) * 1e39  # inf in float32, as a diverging loss would be


def test_diverging_loss_stops_with_clear_error():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, loss_fn=overflowing_loss, **SMALL)
    with pytest.raises(FloatingPointError, match="after update 2.*learning rate .* too high"):
        model.learn(64)


def test_predict_single_and_batch_and_clipping():
    model = PPO("MlpPolicy", "Pendulum-v1", seed=0, policy_kwargs=dict(log_std_init=3.0),
                **SMALL)
    obs = np.zeros(3, np.float32)
    action, state = model.predict(obs)
    assert action.shape == (1,) and state is None
    actions, _ = model.predict(np.zeros((50, 3), np.float32))
    assert actions.shape == (50, 1) and np.abs(actions).max() <= 2.0
    cp = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    a, _ = cp.predict(np.zeros(4, np.float32), deterministic=True)
    assert a.shape == () and int(a) in (0, 1)


def test_normalize_obs_and_reward_run():
    model = PPO("MlpPolicy", "Pendulum-v1", seed=0, normalize_obs=True, normalize_reward=True,
                **SMALL).learn(64)
    assert model.normalizer.obs_rms.count > 60
    assert np.all(np.isfinite(model.logger.get("train/loss")))


# --- clear errors: predict's input, schedules, batch_size -------------------------------
@pytest.mark.parametrize("obs, error, match", [
    (np.zeros(3, np.float32), ValueError,
     r"predict: obs has shape \(3,\), but the model's observation space is Box.*pass one "
     r"observation of shape \(4,\) or a batch of shape \(n, 4\)"),
    (np.zeros((5, 3), np.float32), ValueError, r"obs has shape \(5, 3\)"),
    (np.zeros((2, 2, 4), np.float32), ValueError, r"obs has shape \(2, 2, 4\)"),
    ("cart at 0.1", TypeError, r"predict: obs must be an array of numbers.*got str"),
    (None, TypeError, r"obs must be an array of numbers, one observation of shape \(4,\).*"
                      r"got NoneType"),
    ({"x": 1.0}, TypeError, "got dict"),
    ([[0.0, 0.0, 0.0, 0.0], [0.0]], TypeError, "got list"),
])
def test_predict_names_a_wrong_observation(obs, error, match):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    with pytest.raises(error, match=match):
        model.predict(obs)


def test_predict_takes_lists_and_tensors():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(model.predict(torch.from_numpy(obs), deterministic=True)[0],
                                  expected)
    np.testing.assert_array_equal(model.predict(obs.tolist(), deterministic=True)[0], expected)
    assert model.predict(obs[0].tolist(), deterministic=True)[0] == expected[0]
    sliced = np.zeros((7, 5), np.float32)[:, 1:]  # not contiguous, another address
    sliced[1:] = obs
    np.testing.assert_array_equal(model.predict(sliced[1:], deterministic=True)[0], expected)


class ParameterSnapshots(BaseCallback):
    """The parameters at every rollout's end (just before that rollout's update)."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def _on_rollout_end(self):
        self.snapshots.append([p.detach().clone() for p in self.model.policy.parameters()])

    def _on_step(self):
        return True


def negative_late(progress_remaining):
    return 1e-3 if progress_remaining > 0.5 else -1e-4


def nan_late(progress_remaining):
    return 0.2 if progress_remaining > 0.5 else float("nan")


@pytest.mark.parametrize("name, schedule, shown", [
    ("learning_rate", negative_late, "-0.0001"),
    ("clip_range", nan_late, "nan"),
    ("clip_range_vf", negative_late, "-0.0001"),
])
def test_a_schedule_going_negative_or_nan_stops_before_the_update(name, schedule, shown):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **{name: schedule}, **SMALL)
    snapshots = ParameterSnapshots()
    with pytest.raises(ValueError, match=rf"the {name} schedule '{schedule.__name__}' returned "
                                         rf"{shown} at progress_remaining=0.5 \(num_timesteps"
                                         rf"=64, the update not made\); a {name} must be a finite "
                                         rf"number >= 0"):
        model.learn(128, callback=snapshots)
    assert len(model.logger.rows) == 1 and len(snapshots.snapshots) == 2
    for p, before in zip(model.policy.parameters(), snapshots.snapshots[-1]):
        assert torch.equal(p, before)  # the refused update changed nothing


def test_a_schedule_negative_from_the_start_or_not_a_number_is_refused_at_once():
    with pytest.raises(ValueError, match=r"learning_rate schedule .* returned -0.001 at "
                                         r"progress_remaining=1 \(num_timesteps=0"):
        PPO("MlpPolicy", "CartPole-v1", learning_rate=lambda p: -1e-3, **SMALL)
    with pytest.raises(ValueError, match=r"clip_range schedule .* returned None"):
        PPO("MlpPolicy", "CartPole-v1", clip_range=lambda p: None, **SMALL)
    # 0 is allowed: a linear schedule ends there
    PPO("MlpPolicy", "CartPole-v1", learning_rate=linear_schedule(1e-3), **SMALL).learn(32)


def test_batch_size_not_dividing_the_rollout_warns_as_sb3():
    with pytest.warns(UserWarning, match=r"batch_size=48 does not divide the rollout, n_steps \* "
                                         r"n_envs = 32 \* 2 = 64: after every 1 minibatches of "
                                         r"48 comes a truncated one of 16") as seen:
        PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=32, batch_size=48)
    assert seen[0].filename == __file__  # the warning points at the line that made the model
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=32, batch_size=16)


def test_every_preset_states_its_budget():
    for name in presets.PRESETS:
        assert isinstance(presets.budget(name), int) and presets.budget(name) > 0
    with pytest.raises(ValueError, match="unknown preset 'cartpol'"):
        presets.budget("cartpol")


# --- PPO-penalty (kl_penalty): the adaptive-KL variant of the PPO paper, lesson 07 -------

from ppo_lib.kl import adaptive_kl_coefficient  # noqa: E402
from ppo_lib.rollout import Minibatch  # noqa: E402
from ppo_lib.sweeps import HEALTHY  # noqa: E402


@pytest.mark.parametrize("target, factor", [(1e-7, 2.0), (10.0, 0.5)])
def test_kl_penalty_doubles_and_halves_beta_as_the_rule_says(target, factor):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, kl_penalty=1.0, kl_penalty_target=target,
                **dict(SMALL, batch_size=8)).learn(128)  # 4 steps an epoch: approx_kl > 1e-6
    betas, kls = model.logger.get("train/kl_coef"), model.logger.get("train/approx_kl")
    assert betas == [factor ** k for k in range(4)]  # the beta each update used
    assert model.kl_penalty == factor ** 4          # and the one the next update will use
    for k in range(3):
        assert betas[k + 1] == adaptive_kl_coefficient(betas[k], kls[k], target)


def test_kl_penalty_follows_the_rule_on_every_update_of_a_run():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, kl_penalty=1.0, kl_penalty_target=0.01,
                **HEALTHY).learn(4096)
    betas, kls = model.logger.get("train/kl_coef"), model.logger.get("train/approx_kl")
    for k in range(len(betas) - 1):
        assert betas[k + 1] == adaptive_kl_coefficient(betas[k], kls[k], 0.01)
    assert {b2 / b1 for b1, b2 in zip(betas, betas[1:])} == {0.5, 1.0, 2.0}  # every branch


def test_kl_penalty_loss_equals_the_formula_on_a_hand_made_batch():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, kl_penalty=0.7, vf_coef=0.5,
                ent_coef=0.01, clip_range_vf=0.2)
    torch.manual_seed(1)
    batch = Minibatch(obs=torch.randn(6, 4), actions=torch.tensor([0, 1, 1, 0, 1, 0]),
                      old_values=torch.randn(6), old_log_probs=torch.log(torch.full((6,), 0.4)),
                      advantages=torch.randn(6), returns=torch.randn(6))
    adv = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    loss, terms, log_ratio, ratio = model.minibatch_loss(batch, adv, clip_range=0.2,
                                                         clip_range_vf=0.2)
    values, log_probs, entropy = model.policy.evaluate_actions(batch.obs, batch.actions)
    r = torch.exp(log_probs - batch.old_log_probs)
    assert (r - 1).abs().max() > 0.2  # ratios outside the clip band: no clip is applied
    k3 = ((r - 1) - torch.log(r)).mean()
    v = batch.old_values + torch.clamp(values - batch.old_values, -0.2, 0.2)
    policy = -(r * adv).mean() + 0.7 * k3
    want = policy + 0.5 * ((batch.returns - v) ** 2).mean() - 0.01 * entropy.mean()
    torch.testing.assert_close(terms.policy, policy)
    torch.testing.assert_close(loss, want)
    loss.backward()  # the reference path: the loss carries the gradient
    assert all(p.grad is not None for p in model.policy.parameters())


def test_kl_penalty_takes_the_reference_step_whatever_fast_path_says():
    runs = []
    for fast_path in (True, False):
        model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, seed=3, kl_penalty=1.0, **SMALL)
        model.fast_path = fast_path
        model.learn(128)
        runs.append([p.detach().clone() for p in model.policy.parameters()])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # bit for bit: both are the reference


def test_kl_penalty_learns_cartpole():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, kl_penalty=1.0, kl_penalty_target=0.01,
                **HEALTHY).learn(16_000)
    assert model.logger.get("rollout/ep_rew_mean")[-1] > 100  # random play scores about 22


@pytest.mark.parametrize("kwargs, match", [
    (dict(kl_penalty=0.0), "kl_penalty"), (dict(kl_penalty=-1.0), "kl_penalty"),
    (dict(kl_penalty=float("inf")), "kl_penalty"),
    (dict(kl_penalty_target=0.0), "kl_penalty_target"),
    (dict(kl_penalty=1.0, loss_fn=ppo_loss), "loss_fn"),
])
def test_kl_penalty_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_clip_runs_log_no_kl_coef():
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL).learn(32)
    assert "train/kl_coef" not in model.logger.rows[-1] and model.kl_penalty is None


def test_save_load_keeps_the_current_beta(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, kl_penalty=1.0, kl_penalty_target=1e-7,
                **SMALL).learn(64)
    assert model.kl_penalty == 4.0
    path = model.save(tmp_path / "m")
    model.learn(64, reset_num_timesteps=False)  # go on training, then the same from the file
    loaded = PPO.load(path)
    assert (loaded.kl_penalty, loaded.kl_penalty_target) == (4.0, 1e-7)
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.logger.get("train/kl_coef") == model.logger.get("train/kl_coef")[-2:]
    for a, b in zip(model.policy.parameters(), loaded.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("normalize_obs", [False, True])
@pytest.mark.parametrize("fast", [True, False])
def test_ctrl_c_mid_rollout_leaves_the_model_where_the_envs_are(fast, normalize_obs):
    """An interrupted learn (Ctrl-C in a notebook) goes on, with reset_num_timesteps=False,
    from the envs' observation at that moment (SB3 keeps _last_obs per step), not from the
    one before the interrupted rollout."""
    from ppo_lib.callbacks import BaseCallback

    class CtrlC(BaseCallback):
        def _on_step(self):
            if self.num_timesteps == 2 * 40:
                raise KeyboardInterrupt
            return True

    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=64, batch_size=32, n_epochs=2,
                seed=0, normalize_obs=normalize_obs)
    model.fast_path = fast
    with pytest.raises(KeyboardInterrupt):
        model.learn(1000, callback=CtrlC())
    now = model.env.last_obs
    if normalize_obs:
        now = model.normalizer.obs(now)
    np.testing.assert_array_equal(model.last_obs, now)
    model.learn(128, reset_num_timesteps=False)
    np.testing.assert_array_equal(model.rollout.obs[0].numpy(), now)  # the next rollout


def test_target_kl_stops_above_one_and_a_half_times_it_and_on_nan():
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, target_kl=0.01)
    assert not model._kl_stops(1.5 * 0.01, 0) and model._kl_stops(0.0151, 0)  # at: goes on
    assert model._kl_stops(float("nan"), 0)  # a NaN approx_kl never lets training go on


def test_numpy_numbers_as_hyperparameters_train_as_python_numbers(tmp_path):
    """A configuration read back from numpy or pandas holds np.int64 / np.float64: the same
    run as with Python numbers, and a model that saves and loads."""
    config = dict(n_envs=2, n_steps=32, batch_size=16, n_epochs=2, gamma=0.98, ent_coef=0.01,
                  learning_rate=1e-3, seed=4)
    as_numpy = {k: (np.int64(v) if isinstance(v, int) else np.float64(v))
                for k, v in config.items()}
    a = PPO("MlpPolicy", "CartPole-v1", **as_numpy).learn(np.int64(128))
    b = PPO("MlpPolicy", "CartPole-v1", **config).learn(128)
    for p, q in zip(a.policy.parameters(), b.policy.parameters()):
        assert torch.equal(p, q)
    loaded = PPO.load(a.save(tmp_path / "numpy_config"))
    assert loaded.n_steps == 32 and type(loaded.n_steps) is int
    assert loaded.ent_coef == 0.01 and type(loaded.ent_coef) is float
    loaded.learn(64, reset_num_timesteps=False)


def test_a_float_where_an_integer_goes_says_so():
    with pytest.raises(ValueError, match=r"n_steps must be a positive integer, got 64\.0 "
                                         r"\(a float: pass int\(64\.0\)"):
        PPO("MlpPolicy", "CartPole-v1", n_steps=64.0)
    with pytest.raises(ValueError, match=r"total_timesteps must be a positive integer, got "
                                         r"100000\.0 \(a float"):
        PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32).learn(1e5)


@pytest.mark.parametrize("seed", [1.5, "3", -1, 2**32, True])
def test_a_seed_that_is_not_a_32_bit_integer_is_a_clear_error(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32 - 1\] or "
                                         r"None, got " + re.escape(repr(seed))):
        PPO("MlpPolicy", "CartPole-v1", seed=seed)


def test_a_function_callback_is_called_with_the_model_and_can_stop_training():
    seen = []

    def every_step(model):
        seen.append(model.num_timesteps)
        return model.num_timesteps < 40

    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=32, batch_size=64, seed=0)
    model.learn(640, callback=every_step)
    assert seen == list(range(2, 42, 2)) and model.num_timesteps == 40


def test_an_sb3_style_function_callback_is_a_clear_error_before_training():
    def sb3_style(locals_, globals_):
        return True

    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=32, batch_size=64, seed=0)
    with pytest.raises(TypeError, match=r"called as fn\(model\) -> bool.*'sb3_style' cannot "
                                        r"take one argument \(SB3's fn\(locals_, globals_\)"):
        model.learn(640, callback=sb3_style)
    assert model.num_timesteps == 0
