"""Lesson 10's grid (ppo_lib.ablations) and the results file the lesson loads: every variant a
valid PPO changing what its name says, the file complete, and a few of its rows trained again
here giving the same numbers."""

import json
import math

import pytest

from ppo_lib import PPO
from ppo_lib.ablations import (BUDGETS, ENV_IDS, RESULTS, base_config, load_results, machine,
                               run_ablations, variants)

MACHINE = RESULTS.with_suffix(".json")  # where and how the file was made


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_variant_is_a_valid_ppo_that_changes_one_thing(env_id):
    every = variants(env_id)
    assert every["base"] == {}
    assert list(every) == list(variants(ENV_IDS[0])), "the same names on every task"
    base = base_config(env_id)
    for name, changes in every.items():
        if name == "base":
            continue
        assert len(changes) == 1, f"{name} changes {sorted(changes)}: one detail at a time"
        (key, value), = changes.items()
        assert key not in base or base[key] != value or callable(base[key]), \
            f"{name} sets {key}={value!r}, which the base already has"
        model = PPO("MlpPolicy", env_id, seed=0, **{**base, **changes})
        assert model.n_steps * model.n_envs >= model.batch_size


def test_variants_act_on_the_model():
    env_id = "CartPole-v1"
    every, base = variants(env_id), base_config(env_id)
    build = {name: PPO("MlpPolicy", env_id, seed=0, **{**base, **changes})
             for name, changes in every.items()}
    assert build["Adam eps 1e-8"].optimizer.param_groups[0]["eps"] == 1e-8
    assert build["base"].optimizer.param_groups[0]["eps"] == 1e-5
    assert build["constant learning rate"].lr_schedule(0.1) == base["learning_rate"](1.0)
    assert build["shared network"].policy.mlp_extractor.shared_net
    assert not build["base"].policy.mlp_extractor.shared_net
    assert build["minibatches / 4"].batch_size * 4 == base["batch_size"]
    assert build["2x epochs"].n_epochs == 2 * base["n_epochs"]


def test_unknown_variant_names_are_a_clear_error():
    with pytest.raises(ValueError, match="no such detail"):
        run_ablations(["CartPole-v1"], seeds=[0], names=["no such detail"])


@pytest.fixture(scope="module")
def full_grid():
    if not RESULTS.exists():
        pytest.fail(f"{RESULTS} is missing: `python -m ppo_lib.ablations` makes it")
    return load_results()


def test_the_results_file_holds_the_whole_grid(full_grid):
    assert len(full_grid) == len(ENV_IDS) * len(variants("CartPole-v1")) * 10
    assert all(error is None for error in full_grid["error"]), "no run of the full grid failed"
    for env_id in ENV_IDS:
        rows = full_grid[full_grid["env_id"] == env_id]
        assert set(rows["total_timesteps"]) == {BUDGETS[env_id]}
        assert sorted(set(rows["seed"])) == list(range(10))
        assert set(rows["variant"]) == set(variants(env_id))
        for name, changes in variants(env_id).items():
            (stored,) = set(rows.loc[rows["variant"] == name, "changes"])
            assert stored == json.dumps(changes, default=repr), name   # as run_grid writes it
    assert all(math.isfinite(value) for value in full_grid["eval_mean"])


RERUN = [("CartPole-v1", "base", 0), ("CartPole-v1", "no advantage normalisation", 3),
         ("CartPole-v1", "ReLU", 7), ("Pendulum-v1", "value clipping (0.2)", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("env_id, name, seed", RERUN)
def test_rows_of_the_file_train_again_to_the_same_numbers(full_grid, env_id, name, seed):
    """On the machine kind that wrote the file (same torch, same CPU kernels): bit for bit.
    Elsewhere low bits differ and a 50k-step run drifts: then the run must land within the
    spread of that variant's ten seeds, a looser check, said so."""
    (stored,) = full_grid[(full_grid["env_id"] == env_id) & (full_grid["variant"] == name)
                          & (full_grid["seed"] == seed)].to_dict("records")
    fresh = run_ablations([env_id], seeds=[seed], names=[name], progress_bar=False)
    (row,) = fresh.to_dict("records")
    recorded = json.loads(MACHINE.read_text())["machine"]
    here = machine()
    if (recorded["torch"], recorded["cpu_capability"], recorded["cpu"]) == \
            (here["torch"], here["cpu_capability"], here["cpu"]):
        for column in ("eval_mean", "ep_rew_mean", "curve_steps", "curve_ep_rew_mean"):
            assert row[column] == stored[column], column
    else:
        seeds = full_grid[(full_grid["env_id"] == env_id) & (full_grid["variant"] == name)]
        low, high = seeds["eval_mean"].min(), seeds["eval_mean"].max()
        margin = 0.1 * (high - low) + 1.0
        assert low - margin <= row["eval_mean"] <= high + margin
    assert BUDGETS[env_id] <= row["curve_steps"][-1] < BUDGETS[env_id] + 4096
