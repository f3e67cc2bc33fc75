"""ppo_lib.fast_rollout (issue 15): collect_rollout_fast equals collect_rollout bit for bit.

Each case trains twice from the same seed, once through ``learn`` as it runs (the fast
collector where it applies) and once with it switched off (lesson 04's ``collect_rollout``
every rollout), and compares every logged number (wall-clock keys left out), the parameters,
Adam's state, the last rollout's buffers, the normaliser and the env's state exactly; a
callback sees, at each of its calls, the same step count and the same buffers.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
import torch

import ppo_lib.ppo
from ppo_lib import PPO, presets
from ppo_lib.callbacks import BaseCallback
from ppo_lib.fast_rollout import collect_rollout_fast
from ppo_lib.policies import MultiCategoricalActorCritic
from ppo_lib.rollout import Rollout, collect_rollout
from ppo_lib.vector_cartpole import CartPoleVecEnv
from training_equality import assert_same_training

ZOO = dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20)


class ActionInReward(gym.Wrapper):
    """Adds the action the env got to the reward: an unclipped action would show (Pendulum
    clips the torque itself, so clip_actions would change nothing visible)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward + float(np.sum(action)), terminated, truncated, info


def pendulum_50():
    """Pendulum with a TimeLimit of 50 steps: truncations to bootstrap, Box actions."""
    return ActionInReward(gym.make("Pendulum-v1", max_episode_steps=50))


def cartpole_20():
    return gym.make("CartPole-v1", max_episode_steps=20)


CASES = {  # name: (PPO arguments, env, total steps)
    "zoo": (ZOO, "CartPole-v1", 1024),
    "zoo vectorised": (dict(ZOO, vectorization_mode="vector_entry_point"), "CartPole-v1", 1024),
    "cartpole_fast": (presets.get("cartpole_fast"), "CartPole-v1", 1024),
    "minibatches": (dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=2), "CartPole-v1", 512),
    "pendulum, normalisation": (dict(n_envs=2, n_steps=128, batch_size=64, n_epochs=2,
                                     normalize_obs=True, normalize_reward=True),
                                "Pendulum-v1", 768),
    "pendulum, time limit 50": (dict(n_steps=64, batch_size=64, n_epochs=2),
                                [pendulum_50, pendulum_50], 512),
    "cartpole, time limit 20, normalisation": (dict(n_steps=32, batch_size=48, n_epochs=2,
                                                    normalize_obs=True, normalize_reward=True),
                                               [cartpole_20] * 3, 384),
    "vectorised, time limit 20": (dict(n_steps=32, batch_size=128, n_epochs=2),
                                  "vector cartpole 20", 512),
}


def make(config: dict, env) -> PPO:
    if env == "vector cartpole 20":  # truncations in gymnasium's vectorised CartPole
        env = CartPoleVecEnv("CartPole-v1", 4, seed=3, env_kwargs=dict(max_episode_steps=20))
    return PPO("MlpPolicy", env, seed=3, **config)


def digest(model: PPO) -> str:
    """What a callback can see at a step: the step count and every buffer, hashed."""
    r = model.rollout
    h = hashlib.sha256(str(model.num_timesteps).encode())
    for x in (r.obs, r.actions, r.rewards, r.dones, r.values, r.log_probs, r.last_values):
        h.update(x.numpy().tobytes())
    return h.hexdigest()


class Recording(BaseCallback):
    """Records what it sees at every call; stops training at call ``stop_at``."""

    def __init__(self, stop_at: int | None = None):
        super().__init__()
        self.stop_at, self.seen = stop_at, []

    def _on_step(self) -> bool:
        self.seen.append((self.n_calls, self.num_timesteps, digest(self.model),
                          float(sum(p.sum() for p in self.model.policy.parameters()))))
        return self.n_calls != self.stop_at


def train_both(monkeypatch, config, env, steps, callback_fn=lambda: None):
    """-> (model, callback) trained with the fast collector, then without it."""
    used = []
    real = ppo_lib.ppo.collect_rollout_fast

    def counted(*args):
        result = real(*args)
        used.append(result is not None)
        return result
    monkeypatch.setattr(ppo_lib.ppo, "collect_rollout_fast", counted)
    fast_cb = callback_fn()
    fast = make(config, env).learn(steps, callback=fast_cb)
    fast_rng = torch.get_rng_state()
    assert used and all(used), "the fast collector did not run"
    monkeypatch.setattr(ppo_lib.ppo, "collect_rollout_fast", lambda *args: None)
    ref_cb = callback_fn()
    reference = make(config, env).learn(steps, callback=ref_cb)
    assert torch.equal(fast_rng, torch.get_rng_state())
    assert_same_training(fast, reference)
    return (fast, fast_cb), (reference, ref_cb)


@pytest.mark.parametrize("case", list(CASES))
def test_fast_collector_equals_collect_rollout(case, monkeypatch):
    config, env, steps = CASES[case]
    (fast, fast_cb), (_, ref_cb) = train_both(monkeypatch, config, env, steps, Recording)
    assert fast_cb.seen == ref_cb.seen  # same calls, same counts, same buffers and weights
    assert len(fast_cb.seen) == steps // fast.n_envs  # once per vector step, as SB3


@pytest.mark.parametrize("case", ["zoo", "pendulum, time limit 50"])
@pytest.mark.parametrize("stop_at", [1, 45, 64])  # first step, mid-rollout, a rollout's end
def test_a_callback_stopping_early(case, stop_at, monkeypatch):
    config, env, steps = CASES[case]
    (fast, fast_cb), (_, ref_cb) = train_both(monkeypatch, config, env, steps,
                                              lambda: Recording(stop_at))
    assert fast_cb.seen == ref_cb.seen and len(fast_cb.seen) == stop_at
    assert fast.num_timesteps == stop_at * fast.n_envs


def test_truncations_were_bootstrapped():
    """The time-limit cases do reach the bootstrap (else they would test nothing)."""
    model = make(*CASES["pendulum, time limit 50"][:2])
    rollout, env = model.rollout, model.env
    collect_rollout_fast(model.policy, env, rollout, env.reset(), model.gamma)
    assert rollout.dones.sum() >= 2  # 64 steps of a 50-step limit: each env truncated once


def test_one_rollout_directly():
    """Same policy, same env state: the two collectors write the same buffers."""
    a = PPO("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=64, batch_size=64, seed=1)
    b = PPO("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=64, batch_size=64, seed=1)
    b.policy.load_state_dict(a.policy.state_dict())
    obs_a, obs_b = a.env.reset(), b.env.reset()
    torch.manual_seed(0)
    out_a = collect_rollout_fast(a.policy, a.env, a.rollout, obs_a, 0.99)
    torch.manual_seed(0)
    out_b = collect_rollout(b.policy, b.env, b.rollout, obs_b, 0.99)
    np.testing.assert_array_equal(out_a[0], out_b[0])
    assert out_a[1] is out_b[1] is True
    for field in ("obs", "actions", "rewards", "dones", "values", "log_probs", "last_values"):
        assert torch.equal(getattr(a.rollout, field), getattr(b.rollout, field)), field


def test_only_where_it_applies():
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, batch_size=16, seed=0)
    obs = model.env.reset()
    args = (model.env, model.rollout)
    assert collect_rollout_fast(model.policy, *args, obs.astype(np.float64), 0.99) is None

    class Subclass(type(model.policy)):
        pass
    other = Subclass(model.observation_space, model.action_space)
    assert collect_rollout_fast(other, *args, obs, 0.99) is None
    multi = gym.spaces.MultiDiscrete([2, 3])
    rollout = Rollout.allocate(8, 2, model.observation_space, multi)
    policy = PPO("MlpPolicy", env=None, observation_space=model.observation_space,
                 action_space=multi).policy
    assert collect_rollout_fast(policy, model.env, rollout, obs, 0.99) is None
    assert model.env.get_state()["returns"].sum() == 0  # nothing was stepped


@pytest.mark.parametrize("env_id, arch, activation", [
    ("CartPole-v1", None, torch.nn.Tanh),
    ("CartPole-v1", dict(shared=[32], pi=[64], vf=[16, 16]), torch.nn.ReLU),
    ("Pendulum-v1", dict(pi=[8], vf=[]), torch.nn.Tanh),
])
def test_mlp_heads_are_the_policys_heads(env_id, arch, activation):
    """mlp_heads: policy.heads without nn.Module calls, the same bits, on a rollout's batch
    sizes (one env, eight, 64)."""
    from ppo_lib.fast_rollout import mlp_heads

    policy = PPO("MlpPolicy", env_id, seed=0, policy_kwargs=dict(net_arch=arch,
                                                                 activation_fn=activation),
                 ).policy
    heads = mlp_heads(policy)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n in (1, 8, 64):
            obs = torch.randn(n, policy.obs_dim, generator=generator) * 3
            for ours, theirs in zip(heads(obs), policy.heads(obs)):
                assert ours.shape == theirs.shape and torch.equal(ours, theirs)


class HookAt(BaseCallback):
    """At call ``at``, a forward hook on the policy's value head that adds 1 to V(s): from
    then on a collector must run it, as calling the policy does."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, []

    def _on_step(self) -> bool:
        if self.n_calls == self.at:
            self.model.policy.value_net.register_forward_hook(
                lambda module, args, out: self.calls.append(len(out)) or out + 1.0)
        self.seen = digest(self.model)
        return True


def test_a_hook_added_mid_rollout_runs_from_the_next_step(monkeypatch):
    """Hooks force the plain policy call (mlp_heads would skip them); a hook that a callback
    adds in the middle of a rollout changes the next step's values in both collectors.
    (Learning with a hook uses the reference update too: the rollout is what is compared.)"""
    from ppo_lib.fast_rollout import mlp_heads

    config, env, _ = CASES["zoo"]
    (fast, fast_cb), (reference, ref_cb) = train_both(monkeypatch, config, env, 256,
                                                      lambda: HookAt(5))
    assert fast_cb.calls == ref_cb.calls and len(fast_cb.calls) >= 32 - 5
    assert fast_cb.seen == ref_cb.seen
    assert mlp_heads(fast.policy) is None


@pytest.mark.parametrize("env_id, arch, activation", [
    ("CartPole-v1", None, torch.nn.Tanh),
    ("CartPole-v1", dict(shared=[32], pi=[64], vf=[16, 16]), torch.nn.ReLU),
    ("Pendulum-v1", dict(pi=[8], vf=[]), torch.nn.Tanh),
    ("Pendulum-v1", dict(shared=[16], pi=[], vf=[8]), torch.nn.Tanh),
])
def test_fast_actions_are_the_policys_actions(env_id, arch, activation):
    """fast_actions(policy, obs, deterministic) is policy(obs, deterministic)[0] bit for bit,
    deterministic and sampled (the same random draws: the generator ends in the same state),
    for a batch of one, eight and twenty; PPO.predict gives the same with fast_path off."""
    from ppo_lib.fast_rollout import fast_actions

    model = PPO("MlpPolicy", env_id, seed=0, policy_kwargs=dict(net_arch=arch,
                                                                activation_fn=activation))
    policy = model.policy
    generator = torch.Generator().manual_seed(1)
    for n in (1, 8, 20):
        obs = torch.randn(n, policy.obs_dim, generator=generator) * 3
        for deterministic in (True, False):
            torch.manual_seed(n)
            with torch.no_grad():
                theirs = policy(obs, deterministic)[0]
            after = torch.get_rng_state()
            torch.manual_seed(n)
            with torch.no_grad():
                ours = fast_actions(policy, obs, deterministic)
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
            assert torch.equal(ours, theirs) and torch.equal(torch.get_rng_state(), after)
            predicted = []
            for fast_path in (True, False):
                model.fast_path = fast_path
                torch.manual_seed(n)
                predicted.append(model.predict(obs.numpy(), deterministic)[0])
            assert np.array_equal(*predicted) and predicted[0].dtype == predicted[1].dtype


def test_fast_actions_leave_hooked_and_other_policies_to_the_policy():
    """A forward hook anywhere in the policy (or a global one) makes fast_actions return None,
    and PPO.predict then calls the policy, which runs the hook; so does another policy class
    (MultiDiscrete's)."""
    from ppo_lib.fast_rollout import fast_actions

    model = PPO("MlpPolicy", "CartPole-v1", seed=0)
    obs = np.zeros((3, 4), dtype=np.float32)
    assert fast_actions(model.policy, torch.from_numpy(obs)) is not None
    calls = []
    ex = model.policy.mlp_extractor
    for module in (model.policy, model.policy.value_net, ex.policy_net[1]):
        handle = module.register_forward_hook(lambda m, args, out: calls.append(m) or None)
        try:
            assert fast_actions(model.policy, torch.from_numpy(obs)) is None
            model.predict(obs, deterministic=True)
            assert calls and calls[-1] is module
        finally:
            handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: None)
    try:
        assert fast_actions(model.policy, torch.from_numpy(obs)) is None
    finally:
        handle.remove()
    multi = MultiCategoricalActorCritic(gym.spaces.Box(-1, 1, (4,)),
                                        gym.spaces.MultiDiscrete([2, 3]))
    assert fast_actions(multi, torch.zeros(2, 4)) is None


@pytest.mark.parametrize("method", ["forward", "heads", "latents", "sample"])
def test_a_method_replaced_on_the_policy_is_not_skipped(method):
    """The fast paths stand in for forward, heads, latents and sample; one of them replaced on
    the instance (here by a wrapper that counts its calls) is called by predict and by every
    step of the rollout."""
    from ppo_lib.fast_rollout import fast_actions

    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=16, batch_size=16, n_epochs=1)
    policy, calls = model.policy, []
    original = getattr(policy, method)

    def counted(*args, **kwargs):
        calls.append(method)
        return original(*args, **kwargs)

    setattr(policy, method, counted)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    assert fast_actions(policy, torch.from_numpy(obs)) is None
    model.predict(obs, deterministic=True)
    assert len(calls) == 1
    model.learn(16)
    assert len(calls) >= 1 + 16


def test_a_method_replaced_by_a_callback_mid_rollout_is_called_from_the_next_step():
    """A callback that replaces policy.heads at its 5th call: the fast rollout calls the
    replacement at every later step of that rollout (11 of 16), as collect_rollout would."""
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=16, batch_size=16, n_epochs=1)
    calls = []

    class ReplaceAt5(BaseCallback):
        def _on_step(self):
            if self.n_calls == 5:
                policy, original = self.model.policy, self.model.policy.heads
                policy.heads = lambda obs: calls.append(len(obs)) or original(obs)
            return True

    model.learn(16, callback=ReplaceAt5())
    assert len(calls) >= 11  # steps 6..16 (the update's reference step may add more)
    assert calls[:11] == [1] * 11  # one env: one observation per rollout step


def test_a_learners_draw_runs_outside_inference_mode():
    """The fast rollout's policy step runs in torch.inference_mode (none of the user's code
    in it). A ``draw`` replaced on the instance (an epsilon-greedy exercise, say) is the
    user's code: it runs, in rollout and predict, under no_grad as collect_rollout runs it,
    so the tensors it keeps are ordinary ones."""
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=16, batch_size=16, n_epochs=1)
    policy, modes = model.policy, []
    original = policy.draw

    def draw(logits, deterministic=False):
        modes.append(torch.is_inference_mode_enabled())
        return original(logits, deterministic)

    policy.draw = draw
    model.predict(np.zeros((3, 4), dtype=np.float32))
    model.learn(16)
    assert len(modes) >= 1 + 16 and not any(modes)
