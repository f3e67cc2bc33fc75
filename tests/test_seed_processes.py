"""Seeds in lockstep on several cores (ppo_lib.seed_processes): ``train_seeds`` trains its
groups of seeds at once, the first in this process and the others in forked children, and
every seed is still bit for bit its lone run; a child's errors, warnings, output, death and
unpicklable models are handled, and no child outlives the call.

``processes`` is given explicitly, so these tests run the same on a machine of any size."""

import contextlib
import os
import signal
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ppo_lib import presets
from ppo_lib import lockstep as lockstep_module
from ppo_lib.lockstep import train_seeds
from ppo_lib.schedules import linear_schedule
from ppo_lib.seed_processes import (check_processes, cpu_seconds, seed_groups,
                                    usable_cores)
from ppo_lib.sweeps import HEALTHY
from test_lockstep import assert_lone_equal, same

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="groups of seeds fork only on Linux")
CONFIG = dict(HEALTHY, n_epochs=2)


def children() -> set[int]:
    """This process's child processes, running or not yet reaped (Linux's /proc)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            pids |= {int(pid) for pid in (task / "children").read_text().split()}
    return pids


@pytest.fixture
def no_children_left():
    """After the test: no child process it made is left (running or unreaped); other
    tests' helpers (a multiprocessing resource tracker) may live on."""
    before = children()
    yield
    assert children() <= before


def test_groups_split_the_seeds_in_order():
    assert seed_groups([0, 1, 2, 3, 4, 5, 6, 7], 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert seed_groups([5, 1, 9], 2) == [[5, 1], [9]]
    assert seed_groups([5, 1, 9], 8) == [[5], [1], [9]]
    assert seed_groups([3, 4, 5, 6, 7], 3) == [[3, 4], [5, 6], [7]]
    assert seed_groups([3, 4], 1) == [[3, 4]]
    assert len(seed_groups(list(range(64)), None)) == min(64, usable_cores())


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "200000 100000\n"}, 2.0),                                   # cgroup v2
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_a_containers_cpu_quota_caps_the_groups(tmp_path, monkeypatch, files, quota):
    from ppo_lib import seed_processes

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert seed_processes.cgroup_cpu_quota(str(tmp_path)) == quota
    monkeypatch.setattr(seed_processes, "cgroup_cpu_quota", lambda: quota)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert usable_cores() == (64 if quota is None else 2)  # 1.5 CPUs: two processes


@pytest.mark.parametrize("processes", [0, -1, 1.5, True, "2"])
def test_bad_processes_are_refused(processes):
    with pytest.raises(ValueError, match=r"processes must be a positive integer.*got"):
        check_processes(processes)
    with pytest.raises(ValueError, match="processes"):
        train_seeds(CONFIG, "CartPole-v1", [0, 1], 256, processes=processes)


@pytest.mark.parametrize("config, env_id, seeds, processes, steps", [
    (CONFIG, "CartPole-v1", [0, 1, 2, 3], 2, 512),            # two lockstep groups of two
    (CONFIG, "CartPole-v1", [7, 2, 5], 2, 512),               # [7, 2] here, [5] alone there
    (dict(HEALTHY, n_epochs=2, vectorization_mode="vector_entry_point"), "CartPole-v1",
     [4, 0, 6, 1, 3], 3, 512),                                # three processes, two children
    (dict(presets.get("pendulum"), n_steps=256, n_epochs=2), "Pendulum-v1", [1, 2, 3, 4], 2,
     1024),                                                   # Gaussian policy, schedules none
    (dict(HEALTHY, n_epochs=2, learning_rate=linear_schedule(1e-3), normalize_obs=True,
          normalize_reward=True), "CartPole-v1", [0, 8, 9, 11], 2, 512),
], ids=["2x2", "2+1", "vector-3-processes", "pendulum", "schedules-normalised"])
@pytest.mark.usefixtures("no_children_left")
def test_each_seed_equals_its_lone_run(config, env_id, seeds, processes, steps):
    models = train_seeds(config, env_id, seeds, steps, processes=processes)
    assert [m.seed for m in models] == seeds
    for model, seed in zip(models, seeds):
        assert_lone_equal(model, config, env_id, seed, steps)


def test_the_split_gives_the_models_one_process_gives():
    together = train_seeds(CONFIG, "CartPole-v1", range(6), 512, processes=1)
    split = train_seeds(CONFIG, "CartPole-v1", range(6), 512, processes=2)
    for a, b in zip(together, split):
        assert same(a.policy.state_dict(), b.policy.state_dict())
        assert same(a.optimizer.state_dict(), b.optimizer.state_dict())
        assert same(a.env.get_state(), b.env.get_state())
        assert torch.equal(a.lockstep_rng_state, b.lockstep_rng_state)
        assert [r["train/loss"] for r in a.logger.rows] == [r["train/loss"]
                                                             for r in b.logger.rows]


def test_one_process_forks_nothing(monkeypatch):
    def no_fork():
        raise AssertionError("forked with processes=1")
    monkeypatch.setattr(os, "fork", no_fork)
    assert len(train_seeds(CONFIG, "CartPole-v1", [0, 1], 256, processes=1)) == 2


def test_a_process_that_cannot_be_made_trains_its_group_here(monkeypatch):
    def no_process():
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(os, "fork", no_process)
    models = train_seeds(CONFIG, "CartPole-v1", [0, 1, 2], 512, processes=2)
    assert [m.seed for m in models] == [0, 1, 2]
    for model, seed in zip(models, [0, 1, 2]):
        assert_lone_equal(model, CONFIG, "CartPole-v1", seed, 512)


@pytest.mark.usefixtures("no_children_left")
def test_a_childs_error_is_raised_here_and_no_child_is_left(monkeypatch):
    original = lockstep_module._train_group

    def failing(config, env_id, seeds, bar_total, **kwargs):
        if 3 in seeds:
            raise ValueError("the learning rate is NaN (seed 3's group)")
        return original(config, env_id, seeds, bar_total, **kwargs)
    monkeypatch.setattr(lockstep_module, "_train_group", failing)
    with pytest.raises(ValueError, match="seed 3's group") as error:
        train_seeds(CONFIG, "CartPole-v1", [0, 1, 2, 3], 256, processes=2)
    assert "seeds [2, 3]" in str(error.value.__cause__)  # where it happened, with traceback


@pytest.mark.usefixtures("no_children_left")
def test_an_error_here_ends_the_children(monkeypatch):
    original = lockstep_module._train_group

    def interrupted_here(config, env_id, seeds, bar_total, **kwargs):
        if 0 in seeds:  # the group of this process: as a Ctrl-C while the children train
            raise KeyboardInterrupt
        return original(config, env_id, seeds, bar_total, **kwargs)
    monkeypatch.setattr(lockstep_module, "_train_group", interrupted_here)
    with pytest.raises(KeyboardInterrupt):
        train_seeds(CONFIG, "CartPole-v1", [0, 1, 2, 3, 4, 5], 50_000, processes=3)


@pytest.mark.usefixtures("no_children_left")
def test_a_child_that_dies_is_an_error_naming_its_seeds(monkeypatch):
    original = lockstep_module._train_group

    def dying(config, env_id, seeds, bar_total, **kwargs):
        if 5 in seeds:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(config, env_id, seeds, bar_total, **kwargs)
    monkeypatch.setattr(lockstep_module, "_train_group", dying)
    with pytest.raises(RuntimeError, match=r"seeds \[5\].*killed by signal SIGKILL.*"
                                           r"processes=1"):
        train_seeds(CONFIG, "CartPole-v1", [4, 5], 256, processes=2)


def test_models_that_cannot_be_pickled_are_trained_here():
    """A lambda schedule cannot be pickled: the child says so, and its group trains here,
    with the same results."""
    config = dict(CONFIG, learning_rate=lambda progress: 1e-3 * progress)
    models = train_seeds(config, "CartPole-v1", [0, 1, 2, 3], 512, processes=2)
    for model, seed in zip(models, [0, 1, 2, 3]):
        assert_lone_equal(model, config, "CartPole-v1", seed, 512)


def test_a_childs_warnings_and_output_reach_this_process(monkeypatch, capsys):
    original = lockstep_module._train_group

    def chatty(config, env_id, seeds, bar_total, **kwargs):
        print(f"training {seeds}")
        warnings.warn(f"a warning from {seeds}", UserWarning)
        return original(config, env_id, seeds, bar_total, **kwargs)
    monkeypatch.setattr(lockstep_module, "_train_group", chatty)
    with pytest.warns(UserWarning) as caught:
        train_seeds(CONFIG, "CartPole-v1", [0, 1, 2, 3], 256, processes=2)
    assert {str(w.message) for w in caught} >= {"a warning from [0, 1]",
                                                "a warning from [2, 3]"}
    out = capsys.readouterr().out
    assert "training [0, 1]" in out and "training [2, 3]" in out


def test_cpu_seconds_count_the_children():
    """The CPU seconds sweeps report include the groups trained in children."""
    import time

    start, own = cpu_seconds(), time.process_time()
    train_seeds(CONFIG, "CartPole-v1", [0, 1, 2, 3], 2048, processes=2)
    total, here = cpu_seconds() - start, time.process_time() - own
    assert total > 1.5 * here  # the child's group did about as much as this process's


def test_a_policy_the_batched_step_cannot_take_trains_each_seed_alone():
    """A global forward hook turns the written-out step off (fast_gradient_step is None):
    each seed of each group trains alone, here or in a child, and each model still carries
    the torch random state its lone run leaves (a child's global state does not come back)."""
    from torch.nn.modules.module import register_module_forward_hook

    calls = []
    handle = register_module_forward_hook(lambda module, args, out: calls.append(1))
    try:
        models = train_seeds(CONFIG, "CartPole-v1", [0, 1, 2, 3], 512, processes=2)
        assert calls  # the hook ran: the reference path trained
        for model, seed in zip(models, [0, 1, 2, 3]):
            assert model.lockstep_rng_state is not None
            assert_lone_equal(model, CONFIG, "CartPole-v1", seed, 512)
    finally:
        handle.remove()
