"""gymnasium's numpy-vectorised CartPole behind VecEnv's interface (ppo_lib.vector_cartpole):
same-step resets with the final observation kept, time-limit bootstrapping, episode
statistics, groups that draw independently, exact resume, clear errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ppo_lib.envs import VecEnv, make_vec_env
from ppo_lib.ppo import PPO
from ppo_lib.rollout import collect_rollout
from ppo_lib.vector_cartpole import CartPoleVecEnv


def random_actions(n_envs, steps, seed=0):
    return np.random.default_rng(seed).integers(0, 2, size=(steps, n_envs))


def test_physics_is_gymnasium_cartpoles():
    """From the same state with the same actions, each cart moves as gym.make's CartPole."""
    env = CartPoleVecEnv("CartPole-v1", 3, seed=0)
    obs = env.reset()
    singles = []
    for i in range(3):
        single = gym.make("CartPole-v1")
        single.reset(seed=0)
        single.unwrapped.state = env.env.state[:, i].copy()
        singles.append(single)
    for actions in random_actions(3, 8):
        obs, rewards, terminated, truncated, infos = env.step(actions)
        for i, single in enumerate(singles):
            s_obs, s_reward, s_term, s_trunc, _ = single.step(int(actions[i]))
            np.testing.assert_allclose(obs[i], s_obs, rtol=0, atol=1e-6)
            assert (rewards[i], terminated[i], truncated[i]) == (s_reward, s_term, s_trunc)


def test_reset_in_the_same_step_with_the_final_observation_kept():
    env = CartPoleVecEnv("CartPole-v1", 4, seed=1)
    env.reset()
    ended_seen = 0
    for actions in random_actions(4, 200):
        before = env.env.state.copy()
        obs, rewards, terminated, truncated, infos = env.step(actions)
        ended = terminated | truncated
        np.testing.assert_array_equal(infos["_final_obs"], ended)
        assert (rewards == 1.0).all()  # every step pays, none is a gymnasium "reset step"
        for i in np.flatnonzero(ended):
            ended_seen += 1
            final = infos["final_obs"][i]
            assert abs(final[0]) > 2.4 or abs(final[2]) > 12 * 2 * np.pi / 360
            assert np.abs(obs[i]).max() <= 0.05  # already the next episode's start
            assert env.env.steps[i] == 0
            assert infos["episode_length"][i] == infos["episode_return"][i] > 0
        for i in np.flatnonzero(~ended):  # the others moved on from where they were
            assert not np.array_equal(env.env.state[:, i], before[:, i])
    assert ended_seen >= 10
    assert env.episode_count == ended_seen == len(env.episode_lengths)
    assert list(env.episode_returns) == [float(n) for n in env.episode_lengths]


def test_time_limit_is_a_truncation_and_the_trainer_bootstraps_it():
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=4, batch_size=8, seed=0,
                vectorization_mode="vector_entry_point")
    model.last_obs = model.reset_env()
    model.env.env.steps[0] = 498  # cart 0's episode reaches 500 steps at the rollout's t = 1
    seen = []
    step = model.env.step

    def recording_step(actions):
        result = step(actions)
        seen.append((result[2].copy(), result[3].copy(), result[4]["final_obs"].copy()))
        return result

    model.env.step = recording_step
    collect_rollout(model.policy, model.env, model.rollout, model.last_obs, model.gamma)
    terminated, truncated, final_obs = seen[1]
    assert truncated[0] and not terminated[0]
    with torch.no_grad():
        v_final = model.policy.predict_values(torch.as_tensor(final_obs[:1]))[0]
    assert model.rollout.dones[1, 0] == 1.0
    torch.testing.assert_close(model.rollout.rewards[1, 0], 1.0 + model.gamma * v_final)
    assert model.rollout.rewards[0, 0] == 1.0 and model.rollout.dones[0, 0] == 0.0


def test_a_group_draws_what_it_would_draw_alone():
    """Carts 4-7 of a two-group env (seeds 3 and 5) are exactly a lone env seeded 5."""
    both = CartPoleVecEnv("CartPole-v1", 8, seed=[3, 5])
    alone = CartPoleVecEnv("CartPole-v1", 4, seed=5)
    np.testing.assert_array_equal(both.reset()[4:], alone.reset())
    actions = random_actions(8, 400, seed=2)
    for a in actions:
        obs, rewards, terminated, truncated, infos = both.step(a)
        obs1, rewards1, terminated1, truncated1, infos1 = alone.step(a[4:])
        np.testing.assert_array_equal(obs[4:], obs1)
        np.testing.assert_array_equal(terminated[4:], terminated1)
        np.testing.assert_array_equal(infos["final_obs"][4:], infos1["final_obs"])
    assert list(both.group_episode_returns[1]) == list(alone.episode_returns)
    assert both.group_episode_count[1] == alone.episode_count > 5
    assert both.episode_count == sum(both.group_episode_count)


def test_seeded_envs_repeat_and_differ_by_seed():
    a, b, c = (CartPoleVecEnv("CartPole-v1", 4, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.reset(), b.reset())
    assert not np.array_equal(a.last_obs, c.reset())


def test_state_round_trip_resumes_exactly():
    env = CartPoleVecEnv("CartPole-v1", 4, seed=[0, 1])
    env.reset()
    actions = random_actions(4, 300, seed=3)
    for a in actions[:150]:
        env.step(a)
    state = env.get_state()
    rest = [env.step(a)[0].copy() for a in actions[150:]]
    other = CartPoleVecEnv("CartPole-v1", 4, seed=[7, 8])
    assert other.set_state(state)
    np.testing.assert_array_equal(other.last_obs, state["last_obs"])
    for a, expected in zip(actions[150:], rest):
        np.testing.assert_array_equal(other.step(a)[0], expected)
    assert list(other.episode_returns) == list(env.episode_returns)
    assert other.group_episode_count == env.group_episode_count


def test_save_load_continue_equals_uninterrupted(tmp_path):
    def make():
        return PPO("MlpPolicy", "CartPole-v1", n_envs=16, n_steps=16, batch_size=64,
                   n_epochs=2, seed=4, vectorization_mode="vector_entry_point")
    straight = make().learn(1024)
    straight.learn(1024, reset_num_timesteps=False)
    first = make().learn(1024)
    first.save(tmp_path / "half")
    resumed = PPO.load(tmp_path / "half")
    assert resumed.vectorization_mode == "vector_entry_point"
    assert isinstance(resumed.env, CartPoleVecEnv) and resumed.env.num_envs == 16
    resumed.learn(1024, reset_num_timesteps=False)
    for a, b in zip(straight.policy.parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.logger.rows[-1]["rollout/ep_rew_mean"] == \
        straight.logger.rows[-1]["rollout/ep_rew_mean"]
    assert resumed.env.episode_count == straight.env.episode_count


def test_sync_stays_the_default_and_vector_mode_learns():
    assert isinstance(PPO("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, batch_size=16).env,
                      VecEnv)
    model = PPO("MlpPolicy", "CartPole-v1", n_envs=16, n_steps=32, batch_size=256,
                n_epochs=10, learning_rate=2e-3, gamma=0.98, gae_lambda=0.8, seed=0,
                vectorization_mode="vector_entry_point").learn(30_000)
    returns = model.logger.get("rollout/ep_rew_mean")
    assert returns[0] < 40 and returns[-1] > 100  # random play: about 22; seeds 0-4: 141-262


@pytest.mark.parametrize("env, kwargs, expected", [
    ("Pendulum-v1", dict(vectorization_mode="vector_entry_point"), "CartPole-v0, CartPole-v1"),
    ("CartPole-v1", dict(vectorization_mode="async"), "vectorization_mode must be one of"),
    ("CartPole-v1", dict(vectorization_mode="vector_entry_point",
                         wrapper_class=gym.wrappers.RecordEpisodeStatistics),
     "cannot wrap the vectorised CartPole"),
])
def test_bad_vectorization_requests_are_named(env, kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        make_vec_env(env, n_envs=2, **kwargs)


def test_groups_must_split_the_carts_evenly():
    with pytest.raises(ValueError, match="num_envs=7 cannot be split into 2 equal groups"):
        CartPoleVecEnv("CartPole-v1", 7, seed=[0, 1])
    with pytest.raises(ValueError, match="CartPoleVecEnv runs gymnasium's vectorised CartPole"):
        CartPoleVecEnv("Acrobot-v1", 2)
