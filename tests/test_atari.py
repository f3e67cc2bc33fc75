"""ppo_lib.atari: the preprocessing pipeline and the Nature CNN actor-critic."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from ppo_lib.atari import (AtariPreprocess, ClipReward, NatureCNNActorCritic,
                           area_resize_matrix, cnn_output_size, make_atari, make_atari_env,
                           preprocess_frame, resize_area, to_grey, to_uint8)

OBS_SPACE = spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)
PONG_ACTIONS = spaces.Discrete(6)


def _preprocess_layer(env: gym.Env) -> AtariPreprocess:
    while not isinstance(env, AtariPreprocess):
        env = env.env
    return env


# --- one frame -----------------------------------------------------------------------------

def test_area_resize_matrix_rows_average():
    m = area_resize_matrix(210, 84)
    assert m.shape == (84, 210)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(area_resize_matrix(4, 2), [[.5, .5, 0, 0], [0, 0, .5, .5]])
    np.testing.assert_allclose(area_resize_matrix(5, 5), np.eye(5))
    # 5 -> 2: each output covers 2.5 inputs, the middle one split half and half
    np.testing.assert_allclose(area_resize_matrix(5, 2),
                               [[.4, .4, .2, 0, 0], [0, 0, .2, .4, .4]], atol=1e-6)


def test_resize_area_keeps_the_mean_and_orientation():
    image = np.zeros((210, 160), np.float32)
    image[:105] = 200.0                             # upper half bright
    small = resize_area(image, (84, 84))
    assert small.shape == (84, 84)
    assert small[:42].min() == pytest.approx(200.0) and small[42:].max() == pytest.approx(0.0)
    assert small.mean() == pytest.approx(image.mean(), rel=1e-5)


def test_preprocess_frame_grey_weights_and_dtype():
    red = np.zeros((210, 160, 3), np.uint8)
    red[..., 0] = 255
    out = preprocess_frame(red)
    assert out.shape == (84, 84) and out.dtype == np.uint8
    assert (out == 76).all()                        # round(0.299 * 255) = round(76.2)
    grey = np.full((210, 160, 3), 37, np.uint8)
    assert (preprocess_frame(grey) == 37).all()     # the weights sum to 1
    with pytest.raises(ValueError, match="frame"):
        to_grey(np.zeros((210, 160), np.uint8))


def test_to_uint8_rounds_and_saturates():
    np.testing.assert_array_equal(to_uint8(np.array([0.4, 0.6, 254.7, 300.0, -3.0])),
                                  np.array([0, 1, 255, 255, 0], np.uint8))


# --- the env -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pong():
    env = make_atari("ALE/Pong-v5", noop_max=0)
    yield env
    env.close()


def test_observation_shape_and_dtype(pong):
    obs, _ = pong.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert pong.observation_space == OBS_SPACE
    assert pong.action_space == PONG_ACTIONS
    obs, reward, terminated, truncated, _ = pong.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert pong.observation_space.contains(obs)


def test_stack_is_oldest_first_newest_last(pong):
    obs, _ = pong.reset(seed=1)
    # after reset the stack is the first frame repeated
    assert all((obs[i] == obs[-1]).all() for i in range(4))
    frames = [obs[-1]]
    for action in (2, 3, 2, 3, 0):
        new, *_ = pong.step(action)
        np.testing.assert_array_equal(new[:-1], obs[1:])   # shifted by one: old frames first
        frames.append(new[-1])
        obs = new
    for k in range(4):                                       # the last 4 frames, in order
        np.testing.assert_array_equal(obs[k], frames[-4 + k])


def test_wrapper_frame_is_preprocess_frame_of_the_max_pooled_screens(pong):
    pong.reset(seed=2)
    layer = _preprocess_layer(pong)
    for _ in range(20):
        obs, *_ = pong.step(2)
    a, b = layer._screens
    want = to_uint8(resize_area(np.maximum(to_grey(a), to_grey(b)), (84, 84)))
    diff = np.abs(obs[-1].astype(int) - want)
    assert diff.max() <= 1 and diff.mean() < 0.01          # torch vs numpy summation order
    same = np.stack([a, a])
    layer._screens[:] = same
    assert np.abs(layer._observation().astype(int) - preprocess_frame(a)).max() <= 1


def test_frame_skip_plays_four_frames_per_step(pong):
    pong.reset(seed=3)
    ale = pong.unwrapped.ale
    before = ale.getEpisodeFrameNumber()
    pong.step(0)
    assert ale.getEpisodeFrameNumber() - before == 4


def test_noop_reset_varies_the_start():
    env = make_atari("ALE/Pong-v5", noop_max=30)
    starts = set()
    for seed in range(6):
        env.reset(seed=seed)
        starts.add(env.unwrapped.ale.getEpisodeFrameNumber())
    env.close()
    assert len(starts) > 1 and all(1 <= s <= 30 for s in starts)


def test_reward_clipping():
    clip = ClipReward(gym.make("CartPole-v1"))
    assert [clip.reward(r) for r in (3.0, -0.5, 0.0, 1.0)] == [1.0, -1.0, 0.0, 1.0]


def test_terminal_on_life_loss_ends_on_the_first_lost_life():
    env = make_atari("ALE/Breakout-v5", noop_max=0, terminal_on_life_loss=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(2000):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    lives = env.unwrapped.ale.lives()
    env.close()
    assert terminated and lives == 4                       # Breakout starts with 5


def test_bad_env_arguments_are_named():
    with pytest.raises(ValueError, match="frameskip=1"):
        AtariPreprocess(gym.make("ALE/Pong-v5"))             # v5 skips 4 frames itself
    with pytest.raises(TypeError, match="ALE"):
        AtariPreprocess(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="noop_max"):
        make_atari(noop_max=-1)
    with pytest.raises(ValueError, match="n_envs"):
        make_atari_env(n_envs=0)


def test_make_atari_env_factories_are_seeded_and_picklable():
    fns = make_atari_env("ALE/Pong-v5", n_envs=2, seed=5)
    assert len(fns) == 2 and all(callable(f) for f in fns)
    fns = pickle.loads(pickle.dumps(fns))
    first = [f() for f in fns]
    again = make_atari_env("ALE/Pong-v5", n_envs=2, seed=5)[0]()
    for env in (*first, again):
        env.action_space.seed(0)
    rollouts = []
    for env in (first[0], again):
        rollouts.append(np.stack([env.step(a)[0] for a in (2, 3, 2, 2, 3, 1)]))
        env.close()
    first[1].close()
    np.testing.assert_array_equal(rollouts[0], rollouts[1])


# --- the network ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return NatureCNNActorCritic(OBS_SPACE, PONG_ACTIONS)


def _batch(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 4, 84, 84), generator=g, dtype=torch.uint8)


def test_cnn_output_shapes(policy):
    obs = _batch(5)
    actions, values, log_probs = policy(obs)
    assert actions.shape == values.shape == log_probs.shape == (5,)
    assert actions.dtype == torch.int64 and ((0 <= actions) & (actions < 6)).all()
    values2, log_probs2, entropy = policy.evaluate_actions(obs, actions)
    assert values2.shape == log_probs2.shape == entropy.shape == (5,)
    torch.testing.assert_close(values2, values)
    torch.testing.assert_close(log_probs2, log_probs)
    assert policy.predict_values(obs).shape == (5,)
    assert policy.get_distribution(obs).logits.shape == (5, 6)
    assert policy.n_flatten == cnn_output_size(84, 84) == 3136


def test_initial_policy_is_near_uniform_and_deterministic_is_argmax(policy):
    obs = _batch(8, seed=1)
    _, _, entropy = policy.evaluate_actions(obs, torch.zeros(8))
    assert torch.allclose(entropy, torch.full((8,), float(np.log(6))), atol=1e-3)  # gain 0.01
    actions, _, _ = policy(obs, deterministic=True)
    torch.testing.assert_close(actions, policy.get_distribution(obs).logits.argmax(-1))


def test_uint8_and_float_observations_agree(policy):
    obs = _batch(3, seed=2)
    torch.testing.assert_close(policy.predict_values(obs), policy.predict_values(obs.float()))


def test_parameter_count_matches_the_nature_cnn(policy):
    convs = (4 * 32 * 8 * 8 + 32) + (32 * 64 * 4 * 4 + 64) + (64 * 64 * 3 * 3 + 64)
    linear = 3136 * 512 + 512
    heads = (512 * 6 + 6) + (512 + 1)
    assert sum(p.numel() for p in policy.parameters()) == convs + linear + heads == 1_687_719


def test_same_outputs_as_sb3_cnn_policy_with_copied_weights(policy):
    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    sb3 = ActorCriticCnnPolicy(OBS_SPACE, PONG_ACTIONS, lambda _: 2.5e-4)
    names = {"features_extractor.0": "features_extractor.cnn.0",
             "features_extractor.2": "features_extractor.cnn.2",
             "features_extractor.4": "features_extractor.cnn.4",
             "linear.0": "features_extractor.linear.0",
             "action_net": "action_net", "value_net": "value_net"}
    sb3_state = sb3.state_dict()
    state = {}
    for ours, theirs in names.items():
        for kind in ("weight", "bias"):
            state[f"{ours}.{kind}"] = sb3_state[f"{theirs}.{kind}"]
    policy_copy = NatureCNNActorCritic(OBS_SPACE, PONG_ACTIONS)
    policy_copy.load_state_dict(state)
    assert sum(p.numel() for p in sb3.parameters()) == sum(
        p.numel() for p in policy.parameters())
    obs = _batch(4, seed=3)
    actions = torch.tensor([0, 5, 2, 3])
    with torch.no_grad():
        want = sb3.evaluate_actions(obs, actions)
        got = policy_copy.evaluate_actions(obs, actions)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w.reshape(g.shape), atol=1e-5, rtol=1e-5)


def test_bad_spaces_are_named():
    with pytest.raises(ValueError, match="observation_space"):
        NatureCNNActorCritic(spaces.Box(-1, 1, (8,)), PONG_ACTIONS)
    with pytest.raises(ValueError, match="too small"):
        NatureCNNActorCritic(spaces.Box(0, 255, (4, 30, 84), np.uint8), PONG_ACTIONS)
    with pytest.raises(ValueError, match="action_space"):
        NatureCNNActorCritic(OBS_SPACE, spaces.Box(-1, 1, (2,)))


# --- with the trainer ----------------------------------------------------------------------

def test_a_few_ppo_updates_on_pong_change_every_parameter(tmp_path):
    from ppo_lib.ppo import PPO

    torch.set_num_threads(1)
    model = PPO(NatureCNNActorCritic, make_atari_env("ALE/Pong-v5", n_envs=2), n_steps=16,
                batch_size=16, n_epochs=1, learning_rate=2.5e-4, clip_range=0.1,
                ent_coef=0.01, seed=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=64)
    assert model.num_timesteps == 64 and len(model.logger.rows) == 2
    assert all(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    assert all(np.isfinite(model.logger.get("train/loss")))
    obs = np.stack([model.env.observation_space.sample() for _ in range(3)])
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (3,)
    model.save(tmp_path / "pong.pt")
    # the env is passed: PPO.load would rebuild the bare "ALE/Pong-v5" id without the
    # preprocessing wrappers (reported to the trainer's owner)
    loaded = PPO.load(tmp_path / "pong.pt", env=make_atari_env("ALE/Pong-v5", n_envs=2))
    assert isinstance(loaded.policy, NatureCNNActorCritic)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)


def test_cnn_policy_string_selects_the_nature_cnn():
    from ppo_lib.ppo import PPO

    model = PPO("CnnPolicy", make_atari_env("ALE/Pong-v5", n_envs=1), n_steps=8,
                batch_size=8, seed=0)
    assert isinstance(model.policy, NatureCNNActorCritic)
