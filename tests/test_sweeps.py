"""ppo_lib.sweeps: metrics on a grid, multi-seed runs and sweeps with a fake trainer, bands."""

import numpy as np
import pytest

from ppo_lib.sweeps import BROKEN_RUNS, HEALTHY, band, on_grid, run_seeds, sweep, sweep_runs


def fake_train(config, seed):
    """Rows whose return is lr * 1000 + seed, logged every 100 steps from step 100."""
    rows = [{"time/total_timesteps": float(t), "rollout/ep_rew_mean": config["lr"] * 1000 + seed}
            for t in range(100, 401, 100)]
    rows[0].pop("rollout/ep_rew_mean")  # no finished episode yet
    return rows, 0.5


def test_on_grid_is_a_step_function():
    rows = [{"time/total_timesteps": 100.0, "x": 1.0}, {"time/total_timesteps": 200.0},
            {"time/total_timesteps": 300.0, "x": 3.0}]
    out = on_grid(rows, "x", np.array([0, 99, 100, 250, 300, 1000]))
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert np.isnan(on_grid([], "x", np.arange(3))).all()


def test_run_seeds_stacks_seeds():
    curves = run_seeds(fake_train, {"lr": 0.01}, [0, 1, 2], np.array([0, 150, 400]))
    assert curves.values.shape == (3, 3)
    assert np.isnan(curves.values[:, :2]).all()
    assert curves.final().tolist() == [10.0, 11.0, 12.0]
    assert curves.seconds.tolist() == [0.5] * 3 and len(curves.rows) == 3
    with pytest.raises(ValueError, match="seeds"):
        run_seeds(fake_train, {"lr": 0.01}, [], np.array([0]))


def test_sweep_shares_the_base_run():
    calls = []

    def counting(config, seed):
        calls.append(dict(config))
        return fake_train(config, seed)

    base = {"lr": 0.01, "n": 1}
    grid = {"lr": [0.001, 0.01], "n": [1, 2]}
    out = sweep(counting, base, grid, [0, 1], np.array([400]))
    assert len(calls) == sweep_runs(base, grid, 2) == 6  # base once, 2 others, 2 seeds each
    assert out["lr"][0.01] is out["n"][1]
    assert out["lr"][0.001].final().tolist() == [1.0, 2.0]


def test_band_std_and_ci():
    values = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    mean, low, high = band(values)
    assert mean.tolist() == [2.0, 1.0]
    assert np.allclose(high - mean, [np.std([0, 2, 4]), 0.0])
    mean, low, high = band(values, kind="ci")
    assert (low <= mean).all() and (mean <= high).all()
    assert low[1] == high[1] == 1.0 and 0.0 <= low[0] < 2.0 < high[0] <= 4.0
    assert np.array_equal(band(values, kind="ci")[1], low)  # fixed seed
    with pytest.raises(ValueError, match="kind"):
        band(values, kind="iqr")
    with pytest.raises(ValueError, match="shape"):
        band(np.zeros(3))


def test_broken_runs_differ_from_healthy_in_one_way_each():
    assert set(BROKEN_RUNS) == {"A", "B", "C"}
    for config in BROKEN_RUNS.values():
        assert config != HEALTHY and set(config) >= set(HEALTHY)
