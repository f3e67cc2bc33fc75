import gymnasium as gym
import numpy as np
import pytest

from ppo_lib.envs import VecEnv, check_spaces, make_vec_env
from ppo_lib.normalization import Normalizer, RunningMeanStd


class CountEnv(gym.Env):
    """obs = [steps so far], reward 1, never terminates; wrapped in a TimeLimit."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, False, {}


def count_env(limit=3):
    return gym.wrappers.TimeLimit(CountEnv(), max_episode_steps=limit)


def test_seeding_env_i_gets_seed_plus_i():
    env = make_vec_env("CartPole-v1", n_envs=3, seed=10)
    obs = env.reset()
    for i in range(3):
        expected, _ = gym.make("CartPole-v1").reset(seed=10 + i)
        np.testing.assert_array_equal(obs[i], expected)
    again = make_vec_env("CartPole-v1", n_envs=3, seed=10).reset()
    np.testing.assert_array_equal(obs, again)
    assert not np.array_equal(obs, make_vec_env("CartPole-v1", n_envs=3, seed=11).reset())


def test_final_obs_at_truncation_and_same_step_reset():
    env = VecEnv([count_env, lambda: count_env(2)])
    env.reset()
    obs, rewards, term, trunc, infos = env.step(np.array([0, 0]))
    assert not infos["_final_obs"].any()
    obs, rewards, term, trunc, infos = env.step(np.array([0, 0]))
    # env 1 (limit 2) truncated: final obs [2], and obs is already the next episode's first
    assert list(trunc) == [False, True] and not term.any()
    assert list(infos["_final_obs"]) == [False, True]
    assert infos["final_obs"][1, 0] == 2.0 and obs[1, 0] == 0.0 and obs[0, 0] == 2.0
    assert infos["episode_return"][1] == 2.0 and infos["episode_length"][1] == 2


def test_episode_statistics():
    env = VecEnv([count_env])
    env.reset()
    for _ in range(7):
        env.step(np.array([0]))
    assert list(env.episode_returns) == [3.0, 3.0] and list(env.episode_lengths) == [3, 3]
    assert env.episode_count == 2


class MixedRewardsEnv(gym.Env):
    """Rewards 0.1 (a float), np.float32(0.2), int 3, np.float64(0.7) in turn; terminates
    after ``length`` steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    REWARDS = (0.1, np.float32(0.2), 3, np.float64(0.7))

    def __init__(self, length):
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        reward = self.REWARDS[self.t % 4]
        self.t += 1
        return np.array([self.t], np.float32), reward, self.t == self.length, False, {}


def test_rewards_float32_returns_summed_in_float64():
    """Each step's rewards as float32; an episode's return the float64 sum of what the env
    returned (not of the float32 copies), reported where and in the order episodes end
    (episodes of 4, 2 and 4 steps: env 1 ends at steps 2 and 4, all three at step 4)."""
    env = VecEnv([lambda: MixedRewardsEnv(4), lambda: MixedRewardsEnv(2),
                  lambda: MixedRewardsEnv(4)])
    env.reset()
    steps = [env.step(np.array([0, 0, 0])) for _ in range(4)]
    short = 0.1 + float(np.float32(0.2))               # 2 steps, summed in float64
    full = short + float(3) + float(np.float64(0.7))   # 4 steps
    for _, rewards, _, _, _ in steps:
        assert rewards.dtype == np.float32
    assert steps[0][1].tolist() == [np.float32(0.1)] * 3
    assert steps[1][2].tolist() == [False, True, False]
    assert steps[1][4]["episode_return"][1] == short
    assert steps[3][2].tolist() == [True, True, True]
    assert steps[3][4]["episode_return"].tolist() == [full, short, full]
    assert list(env.episode_returns) == [short, full, short, full]
    assert list(env.episode_lengths) == [2, 4, 2, 4] and env.episode_count == 4


def test_state_roundtrip_resumes_exactly():
    a = make_vec_env("CartPole-v1", n_envs=2, seed=3)
    a.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        a.step(rng.integers(0, 2, 2))
    state = a.get_state()
    b = make_vec_env("CartPole-v1", n_envs=2, seed=99)
    assert b.set_state(state)
    np.testing.assert_array_equal(a.last_obs, b.last_obs)
    for _ in range(200):  # through several episode ends and seeded resets
        act = rng.integers(0, 2, 2)
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra[0], rb[0])
        np.testing.assert_array_equal(ra[3], rb[3])
    assert list(a.episode_returns) == list(b.episode_returns)


def test_refuses_unsupported_spaces():
    box = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(ValueError, match="not flat.*MlpPolicy"):
        check_spaces(gym.spaces.Box(0, 255, (4, 84, 84)), gym.spaces.Discrete(2))
    check_spaces(gym.spaces.Box(0, 255, (4, 84, 84)), gym.spaces.Discrete(2), flat_obs=False)
    check_spaces(box, gym.spaces.MultiBinary(3))  # supported (tests/test_action_spaces.py)
    with pytest.raises(ValueError, match="Tuple.*Discrete, Box, MultiDiscrete and MultiBinary"):
        check_spaces(box, gym.spaces.Tuple([gym.spaces.Discrete(2)]))
    with pytest.raises(ValueError, match="MultiBinary actions must be flat"):
        check_spaces(box, gym.spaces.MultiBinary([2, 2]))
    with pytest.raises(ValueError, match="Dict.*Box observation"):
        check_spaces(gym.spaces.Dict({"a": box}), gym.spaces.Discrete(2))


def test_make_vec_env_inputs():
    assert make_vec_env(gym.make("CartPole-v1")).num_envs == 1
    assert make_vec_env([count_env, count_env]).num_envs == 2
    assert make_vec_env(gym.make("CartPole-v1"), n_envs=2).num_envs == 2
    with pytest.raises(ValueError, match="n_envs must be a positive integer, got 0"):
        make_vec_env("CartPole-v1", n_envs=0)
    with pytest.raises(ValueError, match="env must be"):
        make_vec_env(42)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3, 2, (300, 2))
    rms = RunningMeanStd((2,), epsilon=1e-12)
    for chunk in np.split(data, 6):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-9)


def test_normalizer_as_vecnormalize():
    norm = Normalizer((1,), 1, gamma=0.5, normalize_obs=True, normalize_reward=True)
    out = norm.obs(np.full((1, 1), 1000.0), update=True)
    assert abs(out[0, 0]) < 10.0 + 1e-6  # clipped to +-10
    r = norm.reward(np.array([4.0]), np.array([True]))
    assert norm.returns[0] == 0.0 and r.shape == (1,)


# --- clear errors for envs that do not fit ----------------------------------------------
from ppo_lib.ppo import PPO  # noqa: E402

SMALL = dict(n_steps=8, batch_size=8, n_epochs=1)


@pytest.mark.parametrize("factory, match", [
    (lambda: 42, r"env factory 0 \(.*\) returned 42 \(int\), not an env.*lambda: gymnasium"),
    (lambda: None, r"returned None \(NoneType\), not an env"),
    (lambda: "CartPole-v1", r"returned 'CartPole-v1' \(str\), not an env"),
    (lambda: CountEnv, r"returned the class CountEnv, not an env.*lambda: CountEnv\(\)"),
])
def test_factory_returning_a_non_env_is_named(factory, match):
    with pytest.raises(ValueError, match=match):
        VecEnv([factory])
    with pytest.raises(ValueError, match=match):
        PPO("MlpPolicy", [factory], **SMALL)


class DictObsEnv(CountEnv):
    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (2,)),
                                         "goal": gym.spaces.Box(-1, 1, (2,))})


class TupleObsEnv(CountEnv):
    observation_space = gym.spaces.Tuple((gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3)))


@pytest.mark.parametrize("env_cls, kind", [(DictObsEnv, "Dict"), (TupleObsEnv, "Tuple")])
def test_dict_and_tuple_observations_are_refused_with_the_flattening_wrapper(env_cls, kind):
    match = f"{kind}.*not supported.*FlattenObservation"
    with pytest.raises(ValueError, match=match):
        PPO("MlpPolicy", [env_cls], **SMALL)
    with pytest.raises(ValueError, match=match):
        make_vec_env(env_cls())


class OldResetEnv(CountEnv):
    def reset(self, *, seed=None, options=None):
        return super().reset(seed=seed)[0]  # obs only, as gym < 0.26


class OldStepEnv(CountEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or truncated, info  # (obs, reward, done, info)


class NoSeedResetEnv(CountEnv):
    def reset(self):
        return super().reset()


class NoneRewardEnv(CountEnv):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, None, terminated, truncated, info


class WrongShapeEnv(CountEnv):
    """Declares obs (1,) but returns (3,) from step (from reset too with at_reset)."""

    at_reset = False

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed)
        return (np.zeros(3, np.float32) if self.at_reset else obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return np.zeros(3, np.float32), reward, terminated, truncated, info


class WrongShapeAtResetEnv(WrongShapeEnv):
    at_reset = True


class BroadcastingObsEnv(gym.Env):
    """Declares obs (4,) but returns (1,): numpy would broadcast it into the buffer."""

    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


@pytest.mark.parametrize("env_cls, match", [
    (OldResetEnv, r"env 0 \(OldResetEnv\).reset\(\) returned array.*not \(obs, info\).*old gym "
                  r"API.*shimmy"),
    (OldStepEnv, r"env 0 \(OldStepEnv\).step\(\) returned 4 values, not \(obs, reward, "
                 r"terminated, truncated, info\).*old gym API"),
    (NoSeedResetEnv, r"reset does not take seed=.*old gym API"),
    (NoneRewardEnv, r"env 0 \(NoneRewardEnv\) returned the reward None from step\(\); a reward "
                    r"must be a number"),
    (WrongShapeEnv, r"env 0 \(WrongShapeEnv\) returned an observation of shape \(3,\) from "
                    r"step\(\), but its observation_space is Box.*shape \(1,\)"),
    (WrongShapeAtResetEnv, r"observation of shape \(3,\) from reset\(\)"),
    (BroadcastingObsEnv, r"observation of shape \(1,\) from step\(\).*shape \(4,\)"),
])
def test_envs_that_break_the_api_are_named(env_cls, match):
    with pytest.raises(ValueError, match=match):
        PPO("MlpPolicy", [env_cls], seed=0, **SMALL).learn(16)


def test_vec_env_envs_must_share_spaces():
    with pytest.raises(ValueError, match=r"env 1 has spaces .*\(4,\).*env 0 has .*\(1,\)"):
        VecEnv([count_env, lambda: gym.make("CartPole-v1")])
