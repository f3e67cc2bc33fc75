"""Seeds in lockstep (ppo_lib.lockstep): each seed of a batched run equals, bit for bit, the
lone run ``PPO("MlpPolicy", env_id, seed=s, **config).learn(N)``: logger rows (but for the
timing keys), policy and optimizer state, env state, normaliser, num_timesteps.

The batched network is tested in one process (``processes=1``: every seed in one group,
whatever the machine's cores); the groups in several processes in test_seed_processes.py."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ppo_lib import presets
from ppo_lib.logger import rollout_row
from ppo_lib.lockstep import check_seeds, lockstep_problem, supports_lockstep, train_seeds
from ppo_lib.ppo import PPO
from ppo_lib.schedules import linear_schedule
from ppo_lib.sweeps import HEALTHY

TIMING_KEYS = ("time/fps", "time/time_elapsed")

# shared trunk, ReLU, value clipping, entropy bonus, both normalisations, shuffled
# minibatches (batch_size < rollout), schedules, no orthogonal init, Adam eps
MIXED = dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=3,
             learning_rate=linear_schedule(1e-3), clip_range=linear_schedule(0.2),
             clip_range_vf=0.2, ent_coef=0.01, normalize_obs=True, normalize_reward=True,
             policy_kwargs=dict(net_arch=dict(shared=[64, 64], pi=[], vf=[]),
                                activation_fn=nn.ReLU, ortho_init=False,
                                optimizer_kwargs=dict(eps=1e-8)))


def same(a, b) -> bool:
    """Equal bit for bit, through dicts, lists, arrays, tensors (NaN equal to NaN)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def untimed(runs):
    """Each run's logger rows without the timing keys."""
    return [[{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]
            for rows in runs]


def assert_lone_equal(model, config, env_id, seed, total_timesteps):
    lone = PPO("MlpPolicy", env_id, seed=seed, **config).learn(total_timesteps)
    lone_rng = torch.get_rng_state()
    rows = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in lone.logger.rows]
    mine = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in model.logger.rows]
    assert len(rows) == len(mine) > 0
    for i, (a, b) in enumerate(zip(rows, mine)):
        assert same(a, b), f"seed {seed}, row {i}: {a} != {b}"
    assert same(lone.policy.state_dict(), model.policy.state_dict()), f"seed {seed}: policy"
    assert same(lone.optimizer.state_dict(), model.optimizer.state_dict()), f"seed {seed}: Adam"
    assert same(lone.env.get_state(), model.env.get_state()), f"seed {seed}: env"
    assert same(lone.last_obs, model.last_obs)
    assert (lone.num_timesteps, lone.n_updates) == (model.num_timesteps, model.n_updates)
    if lone.normalizer is not None:
        assert same(lone.normalizer.state_dict(), model.normalizer.state_dict())
    if model.lockstep_rng_state is not None:  # None: trained alone (a fallback)
        assert torch.equal(model.lockstep_rng_state, lone_rng), f"seed {seed}: torch RNG"
    # the update runs in inference mode: nothing the model keeps may be an inference tensor
    params = list(model.policy.parameters())
    kept = [*params, *(p.grad for p in params if p.grad is not None),
            *(t for s in model.optimizer.state.values() for t in s.values()),
            *(t for t in vars(model.rollout).values() if isinstance(t, torch.Tensor))]
    assert not any(t.is_inference() for t in kept), f"seed {seed}: an inference tensor kept"
    # and the trained model goes on as the lone one would (its next rollout and update),
    # given the torch random state the lone run left
    lone.learn(lone.n_steps * lone.n_envs, reset_num_timesteps=False)
    torch.set_rng_state(lone_rng)
    model.learn(model.n_steps * model.n_envs, reset_num_timesteps=False)
    assert same(lone.policy.state_dict(), model.policy.state_dict()), f"seed {seed}: resumed"


@pytest.mark.parametrize("config, env_id, seeds, steps", [
    (HEALTHY, "CartPole-v1", [5], 1024),                                     # K = 1
    (dict(HEALTHY, vectorization_mode="vector_entry_point"), "CartPole-v1", [3, 0, 7], 1536),
    (dict(presets.get("pendulum"), n_steps=128), "Pendulum-v1", [1, 2], 1024),
    (MIXED, "CartPole-v1", [0, 1, 2], 768),
    # odd sizes: 3 envs, minibatches of 25, 25, 10 (misaligned slices, bmm's small loop)
    (dict(n_envs=3, n_steps=20, batch_size=25, n_epochs=2, normalize_advantage=False,
          gae_lambda=1.0), "CartPole-v1", [4, 2], 300),
    (dict(HEALTHY, n_envs=4, n_steps=16, batch_size=64), "Acrobot-v1", [1, 0, 2], 256),  # A = 3
    # a Tanh trunk under nets of unequal depth and width: the backward's pooled input-
    # gradient buffers (two per shape, shared by all layers) and the trunk's d_pi + d_vf
    (dict(HEALTHY, n_epochs=3, policy_kwargs=dict(
        net_arch=dict(shared=[64], pi=[64, 64], vf=[32]))), "CartPole-v1", [2, 6], 512),
], ids=["cartpole-K1", "cartpole-vector-K3", "pendulum-K2", "mixed-K3", "odd-sizes",
        "acrobot-K3", "tanh-trunk-K2"])
def test_each_seed_equals_its_lone_run(config, env_id, seeds, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch_size 25 does not divide 60
        models = train_seeds(config, env_id, seeds, steps, processes=1)
        assert [m.seed for m in models] == seeds
        for model, seed in zip(models, seeds):
            assert_lone_equal(model, config, env_id, seed, steps)


def test_company_does_not_matter():
    """Seed 5 trained among [0..7] equals seed 5 trained alone (K = 8 vs K = 1), and a
    Pendulum preset with a one-output action head, the value-head rule's other case."""
    config = dict(HEALTHY, n_epochs=2)
    eight = train_seeds(config, "CartPole-v1", range(8), 512, processes=1)
    alone = train_seeds(config, "CartPole-v1", [5], 512)[0]
    assert same(eight[5].policy.state_dict(), alone.policy.state_dict())
    assert same(eight[5].logger.rows[-1]["train/loss"], alone.logger.rows[-1]["train/loss"])
    for seed in (0, 5, 7):
        assert_lone_equal(eight[seed], config, "CartPole-v1", seed, 512)


def test_unsupported_configs_fall_back_to_lone_runs():
    config = dict(HEALTHY, target_kl=0.01)
    assert not supports_lockstep(config, "CartPole-v1")
    assert "target_kl" in lockstep_problem(config, "CartPole-v1")
    assert "CnnPolicy" in lockstep_problem(HEALTHY, "CartPole-v1", policy="CnnPolicy")
    assert lockstep_problem(HEALTHY, "MountainCarContinuous-v0") is None
    assert not supports_lockstep(dict(HEALTHY, kl_penalty=0.1))
    assert supports_lockstep(HEALTHY) and supports_lockstep(MIXED)
    models = train_seeds(config, "CartPole-v1", [0, 1], 512)
    for model, seed in zip(models, [0, 1]):
        assert_lone_equal(model, config, "CartPole-v1", seed, 512)


def test_lockstep_off_gives_the_same_models():
    on = train_seeds(HEALTHY, "CartPole-v1", [0, 1], 512, processes=1)
    off = train_seeds(HEALTHY, "CartPole-v1", [0, 1], 512, lockstep=False)
    for a, b in zip(on, off):
        assert same(a.policy.state_dict(), b.policy.state_dict())


@pytest.mark.parametrize("seeds, message", [
    ([], "seeds is empty"),
    ([0, 1, 0], "repeats [0]"),
    ([0, 1.5], "must be integers, got 1.5"),
    ([0, "1"], "must be integers, got '1'"),
    ([True], "must be integers, got True"),
    (3, "seeds must be a list"),
])
def test_bad_seeds_are_refused(seeds, message):
    with pytest.raises(ValueError, match=None) as error:
        check_seeds(seeds)
    assert message in str(error.value)
    with pytest.raises(ValueError):
        train_seeds(HEALTHY, "CartPole-v1", seeds, 256)


def test_threads_restored():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_seeds(HEALTHY, "CartPole-v1", [0], 256)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# --- the sweeps use it ----------------------------------------------------------------------
def test_run_seeds_and_sweep_same_with_lockstep_on_and_off():
    from functools import partial

    from ppo_lib.sweeps import lockstep_settings, run_seeds, sweep, train_ppo_lib

    train = partial(train_ppo_lib, env_id="CartPole-v1", total_timesteps=768)
    config = dict(HEALTHY, n_epochs=2)
    assert lockstep_settings(train, config, [0, 1]) == dict(env_id="CartPole-v1",
                                                            total_timesteps=768)
    assert lockstep_settings(train, config, [0, 0]) is None        # a seed twice: as before
    assert lockstep_settings(lambda c, s: ([], 0.0), config, [0, 1]) is None
    grid = np.linspace(0, 768, 4)
    on = run_seeds(train, config, [0, 1, 2], grid)
    off = run_seeds(train, config, [0, 1, 2], grid, lockstep=False)
    assert same(untimed(on.rows), untimed(off.rows)) and same(on.values, off.values)
    values = {"gae_lambda": [0.8, 1.0], "n_epochs": [1, 2]}
    on = sweep(train, config, values, [0, 1], grid)
    off = sweep(train, config, values, [0, 1], grid, lockstep=False)
    for param in values:
        for value in values[param]:
            assert same(untimed(on[param][value].rows), untimed(off[param][value].rows))


def test_run_grid_same_rows_with_lockstep_on_and_off():
    from ppo_lib.sweeps import run_grid

    base = dict(HEALTHY, n_epochs=2)
    grid = {"base": {}, "1 epoch": {"n_epochs": 1}, "KL stop": {"target_kl": 0.01}}
    kwargs = dict(env_id="CartPole-v1", total_timesteps=512, n_eval_episodes=2,
                  progress_bar=False)
    on = run_grid(base, grid, [0, 1], **kwargs)
    off = run_grid(base, grid, [0, 1], lockstep=False, **kwargs)
    assert on.drop(columns="seconds").equals(off.drop(columns="seconds"))
    assert on["error"].isna().all() and len(on) == 6
    # "processes": a grid point's seeds are one task, trained together in a worker
    processes = run_grid(base, grid, [0, 1], engine="processes", **kwargs)
    assert processes.drop(columns="seconds").equals(off.drop(columns="seconds"))


@pytest.mark.slow
def test_lesson_10_rows_of_the_results_file_in_lockstep():
    """Two seeds of a lesson-10 variant trained together (run_grid, engine "local") give
    the rows results/what_matters.csv holds (on the machine kind that wrote it)."""
    import json

    from ppo_lib.ablations import RESULTS, load_results, machine, run_ablations

    recorded = json.loads(RESULTS.with_suffix(".json").read_text())["machine"]
    here = machine()
    if (recorded["torch"], recorded["cpu_capability"], recorded["cpu"]) != \
            (here["torch"], here["cpu_capability"], here["cpu"]):
        pytest.skip("results/what_matters.csv was made on another machine kind")
    stored = load_results()
    fresh = run_ablations(["CartPole-v1"], seeds=[3, 7], names=["ReLU"], progress_bar=False)
    for row in fresh.to_dict("records"):
        (old,) = stored[(stored["env_id"] == "CartPole-v1") & (stored["variant"] == "ReLU")
                        & (stored["seed"] == row["seed"])].to_dict("records")
        for column in ("eval_mean", "ep_rew_mean", "curve_steps", "curve_ep_rew_mean"):
            assert row[column] == old[column], (row["seed"], column)


def test_a_few_grid_points_are_split_among_the_workers():
    from ppo_lib.grid_lockstep import split_for_workers

    assert split_for_workers([[1, 2, 3, 4, 5]], 2) == [[1, 2], [3, 4, 5]]
    assert split_for_workers([[1], [2, 3]], 4) == [[1], [2], [3]]
    assert split_for_workers([[1, 2], [3, 4]], 2) == [[1, 2], [3, 4]]


def test_grouped_cartpoles_step_as_each_seed_alone_through_time_limits():
    """The vectorised CartPole of K seeds (one env of K x n carts) against each seed's own
    CartPoleVecEnv: a pole-balancing rule keeps carts up past the 500-step time limit, so
    truncations, same-step resets and final_obs all happen; then the state handed back."""
    from ppo_lib.seed_envs import SeedEnvs
    from ppo_lib.vector_cartpole import CartPoleVecEnv

    config = dict(n_envs=4, n_steps=8, batch_size=32, vectorization_mode="vector_entry_point")
    models = [PPO("MlpPolicy", "CartPole-v1", seed=seed, **config) for seed in (3, 8)]
    alone = [CartPoleVecEnv("CartPole-v1", 4, seed=seed) for seed in (3, 8)]
    envs = SeedEnvs(models)
    obs = envs.reset()
    assert all(same(a.reset(), o) for a, o in zip(alone, obs))
    truncations = 0
    for _ in range(1200):
        # push the cart under the pole: angle + angular velocity decide (lasts 500 steps)
        actions = torch.from_numpy(np.stack([(o[:, 2] + o[:, 3] > 0).astype(np.int64)
                                             for o in obs]))
        results = envs.step(actions)
        for a, result, action in zip(alone, results, actions):
            expected = a.step(action.numpy())
            for got, want in zip(result[:4], expected[:4]):
                assert same(got, want)
            assert same(result[4]["final_obs"], expected[4]["final_obs"])
            truncations += int(result[3].sum())
        obs = [result[0] for result in results]
    assert truncations > 0
    for k, a in enumerate(alone):  # each seed's episode statistics, as its own env's
        assert same(envs.rollout_row(k), rollout_row(a))
    envs.hand_back()
    for model, a in zip(models, alone):
        assert same(model.env.get_state(), a.get_state())


def test_one_step_of_all_seeds_bootstraps_time_limits_as_each_seed_alone():
    """``SeedEnvs.step_together`` (one step of K x n carts, rewards and dones for all, as the
    rollout's float32 buffers take them) against ``after_env_step`` of each seed's own env:
    the time-limit bootstrap by each model's own value head included."""
    from ppo_lib.seed_envs import SeedEnvs, after_env_step
    from ppo_lib.vector_cartpole import CartPoleVecEnv

    config = dict(n_envs=4, n_steps=8, batch_size=32, vectorization_mode="vector_entry_point")
    models = [PPO("MlpPolicy", "CartPole-v1", seed=seed, **config) for seed in (5, 1, 9)]
    alone = [CartPoleVecEnv("CartPole-v1", 4, seed=seed) for seed in (5, 1, 9)]
    envs = SeedEnvs(models)
    assert envs.together()
    obs = np.concatenate(envs.reset())
    for a in alone:
        a.reset()
    bootstrapped = 0
    for _ in range(1100):  # as in collect: no autograd
        actions = torch.from_numpy((obs[:, 2] + obs[:, 3] > 0).astype(np.int64)).view(3, 4)
        with torch.no_grad():
            obs, rewards, dones = envs.step_together(actions)
        rewards_buf, dones_buf = np.empty(12, np.float32), np.empty(12, np.float32)
        rewards_buf[:], dones_buf[:] = rewards, dones  # as the rollout's buffers take them
        for k, (model, a) in enumerate(zip(models, alone)):
            with torch.no_grad():
                next_obs, want_rewards, want_dones = after_env_step(
                    model, *a.step(actions[k].numpy()))
            assert same(obs[4 * k:4 * k + 4], next_obs)
            assert same(torch.from_numpy(rewards_buf[4 * k:4 * k + 4]), want_rewards)
            assert same(torch.from_numpy(dones_buf[4 * k:4 * k + 4]), want_dones)
        bootstrapped += int((rewards_buf != rewards_buf.round()).sum())
    assert bootstrapped > 0  # rewards 1 + gamma * V(final obs): time limits were reached


def test_a_trained_model_saves_and_loads_as_its_lone_run(tmp_path):
    model = train_seeds(HEALTHY, "CartPole-v1", [0, 1], 512, processes=1)[1]
    lone = PPO("MlpPolicy", "CartPole-v1", seed=1, **HEALTHY).learn(512)
    assert model.policy.mlp_extractor.policy_net[0].weight.untyped_storage().nbytes() == \
        lone.policy.mlp_extractor.policy_net[0].weight.untyped_storage().nbytes()  # its own
    mine, theirs = PPO.load(model.save(tmp_path / "mine")), PPO.load(lone.save(tmp_path / "lone"))
    assert same(mine.policy.state_dict(), theirs.policy.state_dict())
    assert same(mine.optimizer.state_dict(), theirs.optimizer.state_dict())


def test_a_cpu_whose_batched_products_round_otherwise_still_gets_lone_runs(monkeypatch):
    """On another CPU baddbmm / bmm might not give each seed addmm / mm's bits. Stand-ins that
    move every batched product's last bits: each layer finds out on its first call of a shape
    and keeps per-seed products, so every seed still equals its lone run (which uses none)."""
    from ppo_lib import seed_layers

    baddbmm, bmm = torch.baddbmm, torch.bmm

    def off_by_a_bit(result):
        return torch.nextafter(result, torch.full_like(result, float("inf")))

    def rounding_baddbmm(*args, **kwargs):
        return off_by_a_bit(baddbmm(*args, **kwargs))

    def rounding_bmm(a, b, out=None):
        result = off_by_a_bit(bmm(a, b))
        return result if out is None else out.copy_(result)

    monkeypatch.setattr(torch, "baddbmm", rounding_baddbmm)
    monkeypatch.setattr(torch, "bmm", rounding_bmm)
    checked = []
    original = seed_layers.Layer.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        checked.append(self.exact)

    monkeypatch.setattr(seed_layers.Layer, "__init__", recording_init)
    config = dict(HEALTHY, n_epochs=2)
    models = train_seeds(config, "CartPole-v1", [0, 3], 512, processes=1)
    for model, seed in zip(models, [0, 3]):
        assert_lone_equal(model, config, "CartPole-v1", seed, 512)
    verdicts = [ok for exact in checked for ok in exact.values()]
    assert verdicts and not any(verdicts)  # every batched product was found off, and avoided


@pytest.mark.parametrize("B, A", [(1, 2), (8, 2), (25, 3), (256, 2)])
def test_batched_logsumexp_gives_each_seed_torchs_bits(B, A):
    """seed_layers.logsumexp of (K, B, A) logits: each seed's slice as ``torch.logsumexp``
    of the lone (B, A) tensor, infinite and NaN logits included."""
    from ppo_lib.seed_layers import logsumexp

    logits = torch.randn(3, B, A, generator=torch.Generator().manual_seed(B)) * 30
    logits[0, 0, 0] = float("inf")
    logits[1, 0] = float("-inf")
    logits[2, -1, -1] = float("nan")
    buffers: dict = {}
    for _ in range(2):  # the buffers made, then reused
        got = logsumexp(logits, buffers)
        for k in range(3):
            torch.testing.assert_close(got[k], torch.logsumexp(logits[k].clone(), -1),
                                       rtol=0, atol=0, equal_nan=True)
