"""ppo_lib.grid.run_grid (public as ppo_lib.sweeps.run_grid): rows, engines, resume, faults."""

import csv
import math

import pytest

from ppo_lib import grid, presets, sweeps
from ppo_lib.sweeps import run_grid

STEPS = 2048                                  # 8 updates of cartpole_fast (16 envs x 16 steps)
GRID = {"n_epochs": [1, 2]}
SEEDS = [0, 1]
FAST = dict(total_timesteps=STEPS, n_eval_episodes=3, progress_bar=False)
CALLS = []                                    # (config, seed) of each fake run


def fake_trainer(config, seed, env_id, total_timesteps, n_eval_episodes):
    """No training: numbers that depend on the run, instantly."""
    CALLS.append((dict(config), seed))
    value = 10.0 * config["n_epochs"] + seed
    return dict(eval_mean=value, ep_rew_mean=value / 3, curve_steps=[1, 2],
                curve_ep_rew_mean=[0.0, value / 3])


def interrupted_on_third_run(config, seed, env_id, total_timesteps, n_eval_episodes):
    if len(CALLS) == 2:
        raise KeyboardInterrupt
    return fake_trainer(config, seed, env_id, total_timesteps, n_eval_episodes)


@pytest.fixture(autouse=True)
def no_calls_yet():
    CALLS.clear()


@pytest.fixture(scope="module")
def local_frame():
    return run_grid(presets.get("cartpole_fast"), GRID, SEEDS, **FAST)


def without_seconds(frame):
    return frame.drop(columns="seconds")


def test_public_path_is_sweeps():
    assert sweeps.run_grid is grid.run_grid


def test_one_row_per_grid_point_and_seed_in_grid_order(local_frame):
    frame = local_frame
    assert list(frame.columns) == ["env_id", "total_timesteps", "n_epochs", "seed", "eval_mean",
                                   "ep_rew_mean", "seconds", "error", "curve_steps",
                                   "curve_ep_rew_mean"]
    assert list(zip(frame.n_epochs, frame.seed)) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (frame.env_id == "CartPole-v1").all() and (frame.total_timesteps == STEPS).all()
    assert frame.error.isna().all()
    for row in frame.itertuples():
        assert 8 <= row.eval_mean <= 500 and row.seconds > 0
        assert row.curve_steps[-1] == STEPS and len(row.curve_steps) == len(row.curve_ep_rew_mean)
        assert row.ep_rew_mean == row.curve_ep_rew_mean[-1]
    assert frame.eval_mean.nunique() > 1, "every run gave the same evaluation"


def test_processes_engine_gives_the_same_numbers_bit_for_bit(local_frame):
    frame = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, engine="processes", **FAST)
    assert without_seconds(frame).equals(without_seconds(local_frame))
    assert list(frame.eval_mean) == list(local_frame.eval_mean)
    assert list(frame.curve_ep_rew_mean) == list(local_frame.curve_ep_rew_mean)


def test_resume_runs_only_the_missing_rows_and_gives_the_same_frame(local_frame, tmp_path,
                                                                     monkeypatch):
    real = grid.train_and_evaluate

    def counting(config, seed, *args):
        CALLS.append((dict(config), seed))
        return real(config, seed, *args)

    monkeypatch.setattr(grid, "train_and_evaluate", counting)
    results = tmp_path / "grid.csv"
    first = run_grid(presets.get("cartpole_fast"), GRID, [1], results=results, **FAST)
    assert len(first) == 2 and len(CALLS) == 2
    CALLS.clear()
    frame = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, results=results, **FAST)
    assert sorted((config["n_epochs"], seed) for config, seed in CALLS) == [(1, 0), (2, 0)]
    assert without_seconds(frame).equals(without_seconds(local_frame))
    with results.open() as file:
        assert len(list(csv.reader(file))) == 1 + 4
    CALLS.clear()
    again = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, results=results, **FAST)
    assert CALLS == [] and without_seconds(again).equals(without_seconds(frame))


def test_another_budget_or_env_in_the_same_file_is_another_run(tmp_path):
    results = tmp_path / "grid.csv"
    run_grid({}, GRID, [0], results=results, trainer=fake_trainer, **FAST)
    run_grid({}, GRID, [0], results=results, trainer=fake_trainer,
             **dict(FAST, total_timesteps=STEPS + 1))
    run_grid({}, GRID, [0], env_id="Acrobot-v1", results=results, trainer=fake_trainer, **FAST)
    assert len(CALLS) == 6


def test_a_run_that_raises_is_a_row_with_its_error():
    frame = run_grid(presets.get("cartpole_fast"), {"clip_range": [0.2, -1.0]}, [0], **FAST)
    good, bad = frame.iloc[0], frame.iloc[1]
    assert good.error is None and good.eval_mean > 0 and len(good.curve_steps) == 8
    assert "clip_range" in bad.error and math.isnan(bad.eval_mean) and bad.curve_steps == []


def test_a_results_line_cut_short_by_a_kill_is_run_again(tmp_path):
    results = tmp_path / "grid.csv"
    run_grid({}, GRID, SEEDS, results=results, trainer=fake_trainer, **FAST)
    text = results.read_text()
    results.write_text(text[:text.rstrip("\n").rfind("\n") + 1] + '"CartPole-v1",2048,2')
    CALLS.clear()
    run_grid({}, GRID, SEEDS, results=results, trainer=fake_trainer, **FAST)
    assert [(config["n_epochs"], seed) for config, seed in CALLS] == [(2, 1)]


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(grid={"n_epoch": [1, 2]}), ValueError, ["'n_epoch'", "n_epochs"]),
    (dict(grid={"seed": [1, 2]}), ValueError, ["'seed'", "PPO argument"]),
    (dict(grid={"n_epochs": []}), ValueError, ["grid['n_epochs']", "non-empty list"]),
    (dict(grid={"n_epochs": 3}), ValueError, ["grid['n_epochs']", "non-empty list", "3"]),
    (dict(grid={}), ValueError, ["grid", "non-empty dict"]),
    (dict(base_config={"lr": 1e-3}), ValueError, ["base_config", "'lr'", "learning_rate"]),
    (dict(seeds=[0, 1.5]), ValueError, ["seeds", "1.5", "float"]),
    (dict(seeds=[]), ValueError, ["seeds", "empty"]),
    (dict(engine="threads"), ValueError, ["engine", "'threads'", "'processes'"]),
    (dict(engine="ray", address="head-node"), ValueError, ["address", "'head-node'", "HOST:PORT"]),
    (dict(address="auto"), ValueError, ["address", "engine='ray'"]),
    (dict(total_timesteps=0), ValueError, ["total_timesteps", "positive integer"]),
])
def test_bad_input_is_a_clear_error_before_anything_runs(kwargs, error, words, tmp_path):
    args = dict(base_config={}, grid=GRID, seeds=SEEDS, trainer=fake_trainer,
                results=tmp_path / "grid.csv", **FAST)
    with pytest.raises(error) as raised:
        run_grid(**{**args, **kwargs})
    for word in words:
        assert word in str(raised.value)
    assert CALLS == [] and not (tmp_path / "grid.csv").exists()


def test_ctrl_c_keeps_the_finished_rows_and_a_rerun_finishes_the_sweep(tmp_path):
    results = tmp_path / "grid.csv"
    with pytest.warns(UserWarning, match="2 of 4 runs"):
        frame = run_grid({}, GRID, SEEDS, results=results, trainer=interrupted_on_third_run,
                         **FAST)
    assert list(zip(frame.n_epochs, frame.seed)) == [(1, 0), (1, 1)]
    assert list(frame.eval_mean) == [10.0, 11.0]
    with results.open() as file:
        assert len(list(csv.reader(file))) == 1 + 2
    CALLS.clear()
    frame = run_grid({}, GRID, SEEDS, results=results, trainer=fake_trainer, **FAST)
    assert [(config["n_epochs"], seed) for config, seed in CALLS] == [(2, 0), (2, 1)]
    assert list(frame.eval_mean) == [10.0, 11.0, 20.0, 21.0]


def test_a_results_file_of_another_grid_is_refused(tmp_path):
    results = tmp_path / "grid.csv"
    run_grid({}, GRID, [0], results=results, trainer=fake_trainer, **FAST)
    with pytest.raises(ValueError, match="another grid"):
        run_grid({}, {"n_epochs": [1], "gamma": [0.9]}, [0], results=results,
                 trainer=fake_trainer, **FAST)


def test_the_progress_bar_counts_runs(capsys):
    run_grid({}, GRID, SEEDS, trainer=fake_trainer, **dict(FAST, progress_bar=True))
    assert "4/4" in capsys.readouterr().err


def interrupted_on_last_run(config, seed, env_id, total_timesteps, n_eval_episodes):
    if (config["n_epochs"], seed) == (2, 1):
        raise KeyboardInterrupt
    return fake_trainer(config, seed, env_id, total_timesteps, n_eval_episodes)


def test_ctrl_c_in_the_processes_engine_keeps_what_finished(tmp_path):
    results = tmp_path / "grid.csv"
    with pytest.warns(UserWarning, match="of 4 runs"):
        frame = run_grid({}, GRID, SEEDS, engine="processes", results=results,
                         trainer=interrupted_on_last_run, **FAST)
    kept = list(zip(frame.n_epochs, frame.seed))
    assert (2, 1) not in kept and len(kept) <= 3
    assert list(frame.eval_mean) == [10.0 * epochs + seed for epochs, seed in kept]
    with results.open() as file:
        assert len(list(csv.reader(file))) == 1 + len(kept)
    frame = run_grid({}, GRID, SEEDS, results=results, trainer=fake_trainer, **FAST)
    assert len(CALLS) == 4 - len(kept) and (2, 1) in [(c["n_epochs"], s) for c, s in CALLS]
    assert list(frame.eval_mean) == [10.0, 11.0, 20.0, 21.0]
