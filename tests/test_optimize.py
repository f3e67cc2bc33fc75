"""ppo_lib.optimize: rl-zoo style hyperparameter search (Optuna TPE + median pruner) on the
"local" and "processes" engines (the "ray" engine is tested in tests/test_sweeps_ray.py,
inside a loopback-only network namespace)."""

import json
from collections import Counter
import multiprocessing
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ppo_lib import ablations, grid
from ppo_lib import optimize_engines as engines
from ppo_lib.optimize import Objective, optimize, sample_ppo_params, trial_arguments
from ppo_lib.ppo import PPO

BASE = ablations.base_config("CartPole-v1")   # 8 envs x 32 steps: 256 steps per update
SMALL = dict(env_id="CartPole-v1", total_timesteps=4096, n_evaluations=4, n_eval_episodes=5,
             progress_bar=False)


def small_space(trial):
    """A cheap corner of zoo's space (the default space's big networks and tiny minibatches
    cost seconds per trial)."""
    return dict(learning_rate=trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
                n_epochs=trial.suggest_categorical("n_epochs", [1, 5]),
                gae_lambda=trial.suggest_float("gae_lambda", 0.8, 0.98))


def with_bad_trials(trial):
    """small_space, except trial 1: an argument PPO rejects (ValueError: pruned), trial 2: a
    sampler bug (RuntimeError: failed), trial 3 onwards: a learning rate so large that the
    policy collapses onto one action (CartPole returns of about 9), which the median pruner
    must stop at its first evaluation, when trial 0 does better."""
    config = small_space(trial)
    if trial.number == 1:
        config["gamma"] = 1.5
    if trial.number == 2:
        raise RuntimeError("sampler bug in trial 2")
    if trial.number >= 3:
        config.update(learning_rate=0.1, max_grad_norm=100.0)
    return config


@pytest.fixture(scope="module")
def local_study():
    return optimize(BASE, n_trials=4, sampler_fn=small_space, n_startup_trials=2, seed=3,
                    **SMALL)


def test_local_study_is_deterministic(local_study):
    again = optimize(BASE, n_trials=4, sampler_fn=small_space, n_startup_trials=2, seed=3,
                     **SMALL)
    assert len(local_study.trials) == len(again.trials) == 4
    for first, second in zip(local_study.trials, again.trials):
        assert first.params == second.params
        assert first.state == second.state
        assert first.value == second.value
        assert first.intermediate_values == second.intermediate_values


def test_another_seed_samples_other_params(local_study):
    other = optimize(BASE, n_trials=1, sampler_fn=small_space, seed=4, **SMALL)
    assert other.trials[0].params != local_study.trials[0].params


def test_a_trial_value_is_run_grids_evaluation_of_its_arguments(local_study):
    best = local_study.best_trial
    assert best.state == TrialState.COMPLETE
    config = trial_arguments(best.params, BASE, SMALL["total_timesteps"], small_space)
    row = grid.run_one(grid.train_and_evaluate, config, 3, "CartPole-v1",
                       SMALL["total_timesteps"], SMALL["n_eval_episodes"])
    assert row["error"] is None
    assert row["eval_mean"] == best.value
    # reported at evaluations 1..4 (one update of 256 steps ends each quarter of 4096)
    assert sorted(best.intermediate_values) == [1, 2, 3, 4]
    assert best.intermediate_values[4] == best.value


def test_the_pruner_stops_a_trial_that_cannot_learn_and_errors_are_recorded():
    study = optimize(BASE, n_trials=6, sampler_fn=with_bad_trials, n_startup_trials=1,
                     seed=0, **dict(SMALL, total_timesteps=8192))
    states = [trial.state for trial in study.trials]
    assert len(states) == 6
    assert states[0] == TrialState.COMPLETE
    rejected, failed = study.trials[1], study.trials[2]
    assert rejected.state == TrialState.PRUNED
    assert rejected.user_attrs["error"].startswith("ValueError: gamma")
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"] == "RuntimeError: sampler bug in trial 2"
    frozen = study.trials[3:]
    assert all(trial.state == TrialState.PRUNED for trial in frozen)
    assert all(max(trial.intermediate_values) < 4 for trial in frozen)  # stopped early
    assert all("error" not in trial.user_attrs for trial in frozen)


def test_every_combination_of_zoos_space_trains(tmp_path):
    """zoo's space fitted to the budget: one rollout fits in it, a minibatch in a rollout,
    and PPO accepts every sampled combination."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(64):
        trial = study.ask()
        sampled = sample_ppo_params(trial)
        config = trial_arguments(trial.params, BASE, 4096)
        assert set(sampled) <= set(grid.ppo_arguments())
        assert config["n_steps"] * 8 <= 4096
        assert config["batch_size"] <= config["n_steps"] * 8
        assert config["n_steps"] == min(sampled["n_steps"], 512)
        model = PPO("MlpPolicy", "CartPole-v1", seed=0, **config)
        assert model.batch_size == config["batch_size"]
        study.tell(trial, 0.0)


def test_processes_engine_shares_one_journal_file(tmp_path):
    path = tmp_path / "study.log"
    study = optimize(BASE, n_trials=4, sampler_fn=with_bad_trials, engine="processes",
                     n_workers=2, storage=str(path), study_name="cartpole", n_startup_trials=1,
                     **SMALL)
    assert len(study.trials) == 4
    assert {trial.number for trial in study.trials} == set(range(4))
    states = {trial.number: trial.state for trial in study.trials}
    assert states[1] == TrialState.PRUNED and states[2] == TrialState.FAIL
    assert set(states.values()) <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    assert states[0] == TrialState.COMPLETE
    assert "RuntimeError" in study.trials[2].user_attrs["error"]
    # each worker ran its share, worker 0's sampler (seed 0) and worker 1's (seed 1) differ
    assert sorted(Counter(trial.user_attrs["worker"] for trial in study.trials).values()) \
        == [2, 2]
    first_two = {json.dumps(trial.params, sort_keys=True) for trial in study.trials[:2]}
    assert len(first_two) == 2
    # the storage is Optuna's journal: JSON lines, not an SQLite database
    head = path.read_bytes()[:16]
    assert not head.startswith(b"SQLite format")
    assert "op_code" in json.loads(path.read_text().splitlines()[0])
    stored = optuna.load_study(study_name="cartpole", storage=journal(path))
    assert [trial.state for trial in stored.trials] == [trial.state for trial in study.trials]
    # a re-run with the same storage and name finds the study complete and runs nothing
    again = optimize(BASE, n_trials=4, sampler_fn=with_bad_trials, engine="processes",
                     n_workers=2, storage=str(path), study_name="cartpole", **SMALL)
    assert [trial.value for trial in again.trials] == [trial.value for trial in study.trials]


def test_a_worker_run_again_runs_only_what_its_first_run_did_not(tmp_path):
    """Ray runs a worker again when its node dies: the new run fails the trial the old one
    left RUNNING and runs the rest of the worker's share, so the study keeps its size."""
    settings = dict(seed=0, n_trials=3, n_startup_trials=1, n_evaluations=2)
    path = str(tmp_path / "study.log")
    study = engines.study_for(path, "retried", settings)
    done, left_running = study.ask(), study.ask()
    for trial in (done, left_running):
        trial.set_user_attr("worker", "call-0")
    study.tell(done, 1.0)
    objective = Objective(BASE, "CartPole-v1", 2048, 2, 2, small_space, 0)
    assert engines.run_worker(path, "retried", settings, 0, objective, 3, "call-0") == 1
    trials = engines.study_for(path, "retried", settings).trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                                 TrialState.COMPLETE]
    assert all(trial.user_attrs["worker"] == "call-0" for trial in trials)


def interrupted_at_trial_2(trial):
    if trial.number == 2:
        raise KeyboardInterrupt
    return small_space(trial)


def test_ctrl_c_returns_the_study_so_far():
    with pytest.warns(UserWarning, match="interrupted"):
        study = optimize(BASE, n_trials=4, sampler_fn=interrupted_at_trial_2, **SMALL)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2 + [
        TrialState.FAIL]


def interrupt_after_the_first_trial(study, all_done, n_trials, progress_bar):
    """optimize_engines.follow, with a Ctrl-C once a trial has finished."""
    while not engines.finished(study):
        assert not all_done()
    raise KeyboardInterrupt


def test_ctrl_c_ends_the_worker_processes_and_returns_the_study_in_memory(monkeypatch,
                                                                          tmp_path):
    """Without a storage the workers share a temporary journal file; after a Ctrl-C the
    workers are gone, their unfinished trials FAIL and the study is copied into memory.
    (The temporary folder goes to a private tempdir: other jobs on the machine may have
    their own ppo_optimize_* folders in the system's.)"""
    monkeypatch.setattr(engines, "follow", interrupt_after_the_first_trial)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    temporary = set(Path(tempfile.gettempdir()).glob("ppo_optimize_*"))
    assert temporary == set()
    with pytest.warns(UserWarning, match="interrupted"):
        study = optimize(BASE, n_trials=20, sampler_fn=small_space, engine="processes",
                         n_workers=2, **SMALL)
    assert multiprocessing.active_children() == []
    states = [trial.state for trial in study.trials]
    assert TrialState.RUNNING not in states and TrialState.COMPLETE in states
    assert len(states) < 20
    assert set(Path(tempfile.gettempdir()).glob("ppo_optimize_*")) == temporary  # removed


def journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


@pytest.mark.parametrize("kwargs, words", [
    (dict(engine="threads"), ["engine", "'threads'", "'processes'", "'ray'"]),
    (dict(n_trials=0), ["n_trials", "0", "positive integer"]),
    (dict(total_timesteps=-5), ["total_timesteps", "-5"]),
    (dict(n_evaluations=1.5), ["n_evaluations", "1.5"]),
    (dict(engine="processes", storage="sqlite:///study.db"),
     ["sqlite:///study.db", "'processes'", "database is locked", "JournalStorage"]),
    (dict(engine="ray", storage="sqlite:///study.db"), ["sqlite:///study.db", "'ray'"]),
    (dict(engine="processes", storage=optuna.storages.InMemoryStorage()),
     ["InMemoryStorage", "journal file path"]),
    (dict(address="127.0.0.1:6379"), ["address", "engine='ray'"]),
    (dict(n_workers=2), ["n_workers=2", "engine='local'"]),
    (dict(engine="processes", n_workers=0), ["n_workers", "0"]),
    (dict(base_config={"seed": 1}), ["base_config", "'seed'"]),
    (dict(base_config={"n_step": 64}), ["base_config", "'n_step'", "n_steps"]),
    (dict(base_config=[("n_steps", 64)]), ["base_config", "list"]),
    (dict(engine="processes", sampler_fn=lambda trial: {}), ["sampler_fn", "module level"]),
    (dict(sampler_fn="tpe"), ["sampler_fn", "'tpe'"]),
    (dict(storage=3), ["storage", "3"]),
    (dict(n_startup_trials=-1), ["n_startup_trials", "-1"]),
    (dict(seed="0"), ["seed", "'0'"]),
    (dict(env_id=None), ["env_id", "None"]),
])
def test_bad_input_is_a_clear_error_before_anything_runs(kwargs, words, tmp_path,
                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        optimize(**{"base_config": BASE, "progress_bar": False, **kwargs})
    for word in words:
        assert word in str(info.value)
    assert list(tmp_path.iterdir()) == []   # nothing written, nothing run
