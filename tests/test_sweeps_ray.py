"""run_grid(engine="ray") on a real two-node Ray cluster (a head and one worker node, one CPU
each) whose traffic stays on loopback: rows equal the "local" engine's bit for bit, a worker
node removed mid-sweep costs only a retry, an interrupted sweep resumes, RAY_ADDRESS joins,
and ppo_lib.optimize's Ray engine runs its trials there. (The "processes" engine's equality is
tests/test_grid.py's test_processes_engine_gives_the_same_numbers_bit_for_bit.)

Ray binds to the machine's network address unless loopback is its only interface, so the
tests run in a network namespace of their own: outside one, the launcher test re-runs this
file under ``unshare -n`` (root, as CI is) and the Ray tests skip; inside, the launcher skips
and the Ray tests run. By hand: ``unshare -n bash -c 'ip link set lo up; .venv/bin/python -m
pytest tests/test_sweeps_ray.py -n 0'``. Every Ray process the tests start, they stop.
"""

import csv
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ppo_lib import grid, grid_ray, presets
from ppo_lib.sweeps import run_grid

STEPS = 2048                                  # 8 updates of cartpole_fast (16 envs x 16 steps)
GRID = {"n_epochs": [1, 2]}
SEEDS = [0, 1]
FAST = dict(total_timesteps=STEPS, n_eval_episodes=3, progress_bar=False)
LOG = None             # a file the trainers below append to (set per test; travels with them)
IN_NAMESPACE = [name for _, name in socket.if_nameindex()] == ["lo"]
inside_only = pytest.mark.skipif(not IN_NAMESPACE, reason="Ray tests run only in a loopback-"
                                 "only network namespace: the launcher test runs them there")


# ---- the launcher (outside the namespace) --------------------------------------------------

def skip_or_fail(why: str):
    """Without root or unshare the Ray tests are skipped; CI (env CI set) never skips them."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Ray tests, but {why}")
    pytest.skip(f"Ray cluster tests skipped: {why}")


def test_the_ray_tests_run_in_a_network_namespace_of_their_own():
    if IN_NAMESPACE:
        pytest.skip("already in a loopback-only network namespace: the tests below run here")
    if os.geteuid() != 0:
        skip_or_fail("they need root to make a loopback-only network namespace (unshare -n)")
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        skip_or_fail(f"{' and '.join(missing)} not found (util-linux, iproute2)")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        skip_or_fail(f"`unshare -n` failed: {probe.stderr.strip()}")
    pytest_here = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0",
                   "--timeout=300", str(Path(__file__).resolve())]
    script = "ip link set lo up && exec " + shlex.join(pytest_here)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYTEST_", "RAY_"))}
    child = subprocess.Popen(["unshare", "-n", "bash", "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env,
                             cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        output, _ = child.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)   # Ray's reaper then stops the cluster
        output, _ = child.communicate()
        pytest.fail(f"the Ray tests did not finish in 8 minutes:\n{output}")
    assert child.returncode == 0, f"the Ray tests failed in their namespace:\n{output}"


# ---- the cluster (inside the namespace) ----------------------------------------------------

def net_namespace(pid) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:   # gone, or not ours to read
        return None


def ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        with open(f"/proc/{pid}/stat") as file:
            pid = int(file.read().rsplit(")", 1)[1].split()[1])
    return pids


def processes_left() -> list[str]:
    """Live processes of this network namespace other than this test run: Ray's, if any."""
    ours, mine, left = net_namespace("self"), ancestors(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in mine or net_namespace(pid) != ours:
            continue
        try:
            with open(f"/proc/{pid}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            left.append(f"{pid}: {command[:120]}")
    return left


@pytest.fixture(scope="module")
def cluster():
    """A head and one worker node, one CPU each, on 127.0.0.1; the driver is not connected
    (each test joins as run_grid would). Everything it started is stopped at the end."""
    import ray
    from ray.cluster_utils import Cluster

    # the trainers below are defined here, a module Ray's workers cannot import: send them
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    assert processes_left() == [], "Ray processes were running before the tests"
    ray_cluster = Cluster()
    try:
        ray_cluster.add_node(num_cpus=1, include_dashboard=False)   # the head
        ray_cluster.add_node(num_cpus=1)
        yield ray_cluster
    finally:
        ray.shutdown()
        ray_cluster.shutdown()
        for _ in range(100):          # killed processes may take a moment to leave
            if not processes_left():
                break
            time.sleep(0.1)
        assert processes_left() == [], "a Ray process outlived the tests"


@pytest.fixture(scope="module")
def local_frame():
    return run_grid(presets.get("cartpole_fast"), GRID, SEEDS, **FAST)


@pytest.fixture(autouse=True)
def log_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "LOG", str(tmp_path / "log"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def logged() -> list[list[str]]:
    return [line.split() for line in Path(LOG).read_text().splitlines()] \
        if Path(LOG).exists() else []


def log(*words) -> None:
    with open(LOG, "a") as file:
        file.write(" ".join(map(str, words)) + "\n")


def without_seconds(frame):
    return frame.drop(columns="seconds")


def result_rows(path: Path) -> int:
    with path.open() as file:
        return len(list(csv.reader(file))) - 1


# ---- trainers (module-level: Ray sends them to its workers) ---------------------------------

def counted(config, seed, env_id, total_timesteps, n_eval_episodes):
    """train_and_evaluate, logging the run and the node it ran on."""
    import ray

    context = ray.get_runtime_context()
    log(config["n_epochs"], seed, context.get_node_id(), context.gcs_address)
    return grid.train_and_evaluate(config, seed, env_id, total_timesteps, n_eval_episodes)


def stalls_on_the_worker_node(config, seed, env_id, total_timesteps, n_eval_episodes):
    """A run on the node named in ``LOG + '.node'`` waits there until the test removes it."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    log(config["n_epochs"], seed, node, "started")
    if node == Path(LOG + ".node").read_text():
        time.sleep(120)
        raise RuntimeError("the worker node was not removed")
    return grid.train_and_evaluate(config, seed, env_id, total_timesteps, n_eval_episodes)


def stalls_on_the_last_run(config, seed, env_id, total_timesteps, n_eval_episodes):
    """Run (2, 1) waits for the Ctrl-C; the others train."""
    if (config["n_epochs"], seed) == (2, 1):
        time.sleep(120)
        raise RuntimeError("the sweep was not interrupted")
    return counted(config, seed, env_id, total_timesteps, n_eval_episodes)


def raises_on_seed_1(config, seed, env_id, total_timesteps, n_eval_episodes):
    if seed == 1:
        raise ValueError(f"run {config['n_epochs']}, {seed} fails")
    return dict(eval_mean=float(seed), ep_rew_mean=0.0, curve_steps=[], curve_ep_rew_mean=[])


def crashes_on_seed_1(config, seed, env_id, total_timesteps, n_eval_episodes):
    log(config["n_epochs"], seed)
    if seed == 1:
        os._exit(1)   # the worker process dies: a system failure, retried by Ray
    return dict(eval_mean=float(seed), ep_rew_mean=0.0, curve_steps=[], curve_ep_rew_mean=[])


def logs_its_cluster(config, seed, env_id, total_timesteps, n_eval_episodes):
    import ray

    log(config["n_epochs"], seed, ray.get_runtime_context().gcs_address)
    return dict(eval_mean=1.0, ep_rew_mean=0.0, curve_steps=[], curve_ep_rew_mean=[])


# ---- the tests (inside the namespace) ------------------------------------------------------

@inside_only
def test_rows_on_a_two_node_cluster_equal_the_local_engine_bit_for_bit(cluster, local_frame):
    import ray

    frame = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, engine="ray",
                     address=cluster.address, trainer=counted, **FAST)
    assert without_seconds(frame).equals(without_seconds(local_frame))
    assert list(frame.eval_mean) == list(local_frame.eval_mean)
    assert list(frame.curve_ep_rew_mean) == list(local_frame.curve_ep_rew_mean)
    assert frame.error.isna().all() and (frame.seconds > 0).all()
    runs = logged()
    assert sorted((int(e), int(s)) for e, s, *_ in runs) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert {gcs for *_, gcs in runs} == {cluster.address}
    assert not ray.is_initialized(), "run_grid joined the cluster and should leave it"


@inside_only
def test_a_run_that_raises_is_a_row_with_its_error(cluster):
    frame = run_grid({}, GRID, SEEDS, engine="ray", address=cluster.address,
                     trainer=raises_on_seed_1, **FAST)
    assert list(frame.error) == [None, "ValueError: run 1, 1 fails",
                                 None, "ValueError: run 2, 1 fails"]
    assert list(frame.eval_mean[frame.seed == 0]) == [0.0, 0.0]
    assert frame.eval_mean[frame.seed == 1].isna().all()


@inside_only
def test_a_run_whose_worker_keeps_dying_is_a_row_with_its_error_after_the_retries(
        cluster, monkeypatch):
    monkeypatch.setattr(grid_ray, "MAX_RETRIES", 1)
    frame = run_grid({}, {"n_epochs": [1]}, SEEDS, engine="ray", address=cluster.address,
                     trainer=crashes_on_seed_1, **FAST)
    assert frame.error[0] is None and frame.eval_mean[0] == 0.0
    assert "WorkerCrashedError" in frame.error[1] and math.isnan(frame.eval_mean[1])
    assert [int(seed) for _, seed in logged()].count(1) == 2      # one try, one retry


@inside_only
def test_a_worker_node_removed_mid_sweep_costs_only_a_retry(cluster, local_frame):
    [worker] = cluster.worker_nodes
    Path(LOG + ".node").write_text(worker.node_id)
    removed = threading.Event()

    def remove_the_worker_once_a_run_stalls_there():
        for _ in range(1200):
            if any(node == worker.node_id for _, _, node, _ in logged()):
                cluster.remove_node(worker)
                removed.set()
                return
            time.sleep(0.1)

    remover = threading.Thread(target=remove_the_worker_once_a_run_stalls_there)
    remover.start()
    try:
        frame = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, engine="ray",
                         address=cluster.address, trainer=stalls_on_the_worker_node, **FAST)
    finally:
        remover.join()
        if not cluster.worker_nodes:                 # the next tests get two nodes again
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
    assert removed.is_set(), "no run was scheduled on the worker node"
    assert frame.error.isna().all(), list(frame.error)
    assert without_seconds(frame).equals(without_seconds(local_frame))
    starts = logged()
    assert len(starts) == 5 and [node for _, _, node, _ in starts].count(worker.node_id) == 1


@inside_only
def test_an_interrupted_sweep_keeps_its_rows_and_resumes_where_it_stopped(cluster, local_frame,
                                                                          tmp_path):
    results = tmp_path / "grid.csv"

    def ctrl_c_when_three_rows_are_written():
        for _ in range(1200):
            if results.exists() and result_rows(results) == 3:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    # Ctrl-C raises KeyboardInterrupt even where SIGINT was ignored (a job started with &)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=ctrl_c_when_three_rows_are_written)
    interrupter.start()
    try:
        with pytest.warns(UserWarning, match="3 of 4 runs"):
            first = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, engine="ray",
                             address=cluster.address, results=results,
                             trainer=stalls_on_the_last_run, **FAST)
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, before)
    assert list(zip(first.n_epochs, first.seed)) == [(1, 0), (1, 1), (2, 0)]
    assert result_rows(results) == 3
    Path(LOG).unlink()
    frame = run_grid(presets.get("cartpole_fast"), GRID, SEEDS, engine="ray",
                     address=cluster.address, results=results, trainer=counted, **FAST)
    assert [(int(e), int(s)) for e, s, *_ in logged()] == [(2, 1)]
    assert without_seconds(frame).equals(without_seconds(local_frame))
    assert result_rows(results) == 4


@inside_only
def test_ray_address_joins_the_cluster_and_a_ray_already_running_is_left_running(
        cluster, monkeypatch):
    import ray

    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    frame = run_grid({}, GRID, [0], engine="ray", trainer=logs_its_cluster, **FAST)
    assert list(frame.eval_mean) == [1.0, 1.0]
    assert {gcs for *_, gcs in logged()} == {cluster.address}
    assert not ray.is_initialized()
    monkeypatch.delenv("RAY_ADDRESS")
    ray.init(address=cluster.address)
    try:
        run_grid({}, GRID, [0], engine="ray", trainer=logs_its_cluster, **FAST)
        assert ray.is_initialized(), "run_grid stopped a Ray the learner had started"
        assert len(logged()) == 4
    finally:
        ray.shutdown()


@inside_only
def test_optimize_runs_its_trials_as_ray_tasks_on_the_cluster(cluster):
    """ppo_lib.optimize's Ray engine (its other engines: tests/test_optimize.py)."""
    import optuna
    import ray

    from ppo_lib.optimize import optimize

    study = optimize(presets.get("cartpole_fast"), "CartPole-v1", n_trials=4,
                     total_timesteps=2048, n_evaluations=2, n_eval_episodes=2, engine="ray",
                     address=cluster.address, progress_bar=False)
    states = [trial.state for trial in study.trials]
    assert len(states) == 4, states
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert optuna.trial.TrialState.COMPLETE in states
    assert not ray.is_initialized()

def test_a_sweep_whose_rows_are_all_in_the_results_file_joins_no_cluster(tmp_path,
                                                                          monkeypatch):
    def refuse(address):
        raise AssertionError(f"run_ray joined Ray at {address!r} with nothing to run")

    results = tmp_path / "grid.csv"
    first = run_grid({}, GRID, SEEDS, results=results, trainer=raises_on_seed_1, **FAST)
    monkeypatch.setattr(grid_ray, "connect", refuse)
    again = run_grid({}, GRID, SEEDS, engine="ray", address="head:6379", results=results,
                     trainer=raises_on_seed_1, **FAST)
    assert without_seconds(again).equals(without_seconds(first))
