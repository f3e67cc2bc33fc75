"""Where ``ppo_lib.optimize``'s trials run: this process, spawned processes sharing a journal
file, or Ray tasks sharing a storage (issue 14). Every engine runs the same objective
with Optuna's ``study.optimize``; the parallel ones in workers (``run_worker``) that share
out the trials the study lacks, so it ends with exactly ``n_trials``.

Storages, by what ``storage=`` is:
  None                 an in-memory study ("local"; "ray" serves it to its tasks over gRPC);
                       "processes" writes a temporary journal file and copies it back.
  a path               a JournalStorage on that file (JournalFileBackend): several processes
                       on one machine (or on a file system every node mounts) append to it.
  a URL, a storage     Optuna's own (``"postgresql://..."``, a JournalStorage on a
                       JournalRedisBackend, ...): every worker connects to it directly.
SQLite is refused for parallel workers: it locks the whole file on each write, and parallel
writers then fail with "database is locked".
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from multiprocessing import get_context
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

# rl-baselines3-zoo's default --n-startup-trials (its sampler's and its pruner's).
ZOO_STARTUP_TRIALS = 10
# Seconds between two looks at the study while parallel workers run (the progress bar).
POLL_SECONDS = 0.5


def make_sampler(seed: int, n_startup_trials: int, parallel: bool = False):
    """zoo's TPESampler(n_startup_trials, seed, multivariate=True); parallel workers also
    treat running trials as already bad ("constant liar"), so they do not all try one point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(n_startup_trials=n_startup_trials, seed=seed,
                                          multivariate=True, constant_liar=parallel)


def make_pruner(n_startup_trials: int, n_evaluations: int):
    """zoo's MedianPruner: no pruning in the first n_startup_trials trials, nor before a
    trial's evaluation n_evaluations // 3."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials,
                                       n_warmup_steps=n_evaluations // 3)


def is_path(storage: Any) -> bool:
    """A journal file path (str or PathLike without '://'), not a database URL."""
    return isinstance(storage, os.PathLike) or (isinstance(storage, str)
                                               and "://" not in storage)


def is_sqlite(storage: Any) -> bool:
    return isinstance(storage, str) and storage.strip().lower().startswith("sqlite")


def open_storage(storage: Any):
    """What Optuna takes as ``storage``: a journal file path becomes a JournalStorage."""
    import optuna

    if storage is not None and is_path(storage):
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(storage)))
    return storage


@contextlib.contextmanager
def quiet_and_one_thread() -> Iterator[None]:
    """Optuna's per-trial INFO lines off (warnings, e.g. failed trials, stay) and one torch
    thread (as run_grid: small MLPs are faster so, and the numbers reproducible)."""
    import optuna
    import torch

    verbosity, threads = optuna.logging.get_verbosity(), torch.get_num_threads()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        optuna.logging.set_verbosity(verbosity)


def study_for(storage: Any, study_name: str | None, settings: Mapping[str, Any],
              worker: int = 0, parallel: bool = False):
    """The study (created, or loaded when it exists) with worker ``worker``'s sampler,
    seeded seed + worker, and the pruner."""
    import optuna

    with quiet_and_one_thread():
        return optuna.create_study(
            storage=open_storage(storage), study_name=study_name, direction="maximize",
            load_if_exists=True, pruner=make_pruner(settings["n_startup_trials"],
                                                    settings["n_evaluations"]),
            sampler=make_sampler(settings["seed"] + worker, settings["n_startup_trials"],
                                 parallel))


class Tagged:
    """The objective, with each trial tagged by the worker that runs it."""

    def __init__(self, objective: Callable, tag: str):
        self.objective, self.tag = objective, tag

    def __call__(self, trial) -> float:
        trial.set_user_attr("worker", self.tag)
        return self.objective(trial)


def quotas(n_trials: int, n_workers: int) -> list[int]:
    """n_trials shared out: the first n_trials % n_workers workers run one more."""
    return [n_trials // n_workers + (worker < n_trials % n_workers)
            for worker in range(n_workers)]


def run_worker(storage: Any, study_name: str, settings: Mapping[str, Any], worker: int,
               objective: Callable, quota: int, tag: str) -> int:
    """One worker: ``study.optimize`` for its ``quota`` of trials, each tagged ``tag``, the
    worker's name in this call. The quotas sum to the trials the study lacks, so it ends
    with exactly n_trials (MaxTrialsCallback alone, counting the running trials as zoo's
    --max-total-trials does, let two workers that finish at once both start one more). A
    worker that Ray runs again (its node died) runs only what its first run did not, and
    marks the trial that run left RUNNING as FAIL. A trial that raises is recorded, and the
    worker goes on. Returns how many trials this run started."""
    import optuna
    from optuna.trial import TrialState

    with quiet_and_one_thread():
        study = study_for(storage, study_name, settings, worker, parallel=True)
        mine = [trial for trial in study.get_trials(deepcopy=False)
                if trial.user_attrs.get("worker") == tag]
        for trial in mine:
            if trial.state == TrialState.RUNNING:
                study.tell(trial.number, state=TrialState.FAIL)
        todo = quota - len(mine)
        if todo > 0:
            study.optimize(Tagged(objective, tag), n_trials=todo, catch=(Exception,),
                           callbacks=[optuna.study.MaxTrialsCallback(settings["n_trials"],
                                                                     states=None)])
        return max(todo, 0)


def run_local(study, objective: Callable, n_trials: int, progress_bar: bool) -> None:
    """Every trial in this process, one after another (same seed, same study)."""
    remaining = n_trials - len(study.get_trials(deepcopy=False))
    if remaining > 0:
        with quiet_and_one_thread():
            study.optimize(objective, n_trials=remaining, catch=(Exception,),
                           show_progress_bar=progress_bar)


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                        TrialState.PRUNED, TrialState.FAIL)))


def follow(study, all_done: Callable[[], bool], n_trials: int, progress_bar: bool) -> None:
    """Wait for the workers, a progress bar over the study's finished trials."""
    from tqdm.auto import tqdm

    with tqdm(total=n_trials, desc="trials", disable=not progress_bar) as progress:
        while True:
            done = all_done()
            count = min(n_trials, finished(study))
            if count > progress.n:
                progress.update(count - progress.n)
            if done:
                return


def run_processes(study, objective: Callable, settings: Mapping[str, Any], storage: Any,
                  n_workers: int, progress_bar: bool) -> None:
    """``n_workers`` spawned processes, each a ``run_worker`` on ``storage`` (a journal file,
    or a database every process reaches). Ctrl-C ends them and marks their trials FAIL."""
    context, call = get_context("spawn"), uuid.uuid4().hex[:8]
    shares = quotas(settings["n_trials"] - len(study.get_trials(deepcopy=False)), n_workers)
    workers = [context.Process(target=run_worker, daemon=True,
                               args=(storage, study.study_name, settings, worker, objective,
                                     quota, f"{call}-{worker}"))
               for worker, quota in enumerate(shares) if quota > 0]
    for process in workers:
        process.start()
    try:
        follow(study, lambda: exited(workers), settings["n_trials"], progress_bar)
    except KeyboardInterrupt:
        for process in workers:
            process.terminate()
        for process in workers:
            process.join()
        fail_running(study)
        raise
    codes = [process.exitcode for process in workers if process.exitcode]
    if codes and len(study.get_trials(deepcopy=False)) < settings["n_trials"]:
        raise RuntimeError(f"{len(codes)} of {len(workers)} worker processes exited with codes "
                           f"{codes} before the study had {settings['n_trials']} trials (their "
                           f"tracebacks are printed above)")


def exited(processes) -> bool:
    """Wait up to POLL_SECONDS for a process to end; True once all have."""
    wait_for([process.sentinel for process in processes if process.is_alive()],
             timeout=POLL_SECONDS)
    return not any(process.is_alive() for process in processes)


def fail_running(study) -> None:
    """Trials left RUNNING by workers that were stopped: FAIL (they count as tried)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)


def in_memory(storage: Any, study_name: str, settings: Mapping[str, Any]):
    """A copy of the study in this process's memory (its storage can then be deleted)."""
    import optuna

    memory = optuna.storages.InMemoryStorage()
    with quiet_and_one_thread():
        optuna.copy_study(from_study_name=study_name, from_storage=open_storage(storage),
                          to_storage=memory)
    return study_for(memory, study_name, settings)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve(storage, host: str):
    """Optuna's gRPC proxy of ``storage`` on ``host``, a free port: (server, proxy).

    ``optuna.storages.run_grpc_proxy_server`` blocks for ever with no handle to stop it; its
    first half, ``make_server``, returns the grpc.Server, which ``stop(grace).wait()`` shuts
    down cleanly (as optuna's own test harness, optuna/testing/storages.py, does)."""
    from optuna.storages import GrpcStorageProxy
    from optuna.storages._grpc.server import make_server

    port = free_port(host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        server = make_server(storage, host, port)
        server.start()
        proxy = GrpcStorageProxy(host=host, port=port)
    proxy.wait_server_ready(timeout=60)
    return server, proxy


def run_ray(study, objective: Callable, settings: Mapping[str, Any], storage: Any,
            n_workers: int | None, address: str | None, progress_bar: bool) -> None:
    """Each worker a Ray task (num_cpus=1; one per CPU of the cluster by default) running
    ``run_worker`` on ``storage``; a study in this process's memory (an InMemoryStorage) is
    served to them by an Optuna gRPC proxy at this node's IP. Ctrl-C cancels the tasks."""
    import optuna
    import ray

    from .grid_ray import MAX_RETRIES, check_address, connect

    check_address(address)
    started = connect(address)
    server = None
    try:
        if isinstance(storage, optuna.storages.InMemoryStorage):
            server, storage = serve(storage, ray.util.get_node_ip_address())
        if n_workers is None:
            n_workers = int(ray.cluster_resources().get("CPU", 1))
        call = uuid.uuid4().hex[:8]
        shares = quotas(settings["n_trials"] - len(study.get_trials(deepcopy=False)),
                        max(1, n_workers))
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(run_worker)
        refs = [remote.remote(storage, study.study_name, settings, worker, objective, quota,
                              f"{call}-{worker}")
                for worker, quota in enumerate(shares) if quota > 0]
        try:
            follow(study, lambda: not ray.wait(refs, num_returns=len(refs),
                                               timeout=POLL_SECONDS)[1],
                   settings["n_trials"], progress_bar)
            ray.get(refs)  # a task Ray could not finish (trials that raise are recorded)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref)
            ray.wait(refs, num_returns=len(refs), timeout=10)
            fail_running(study)
            raise
    finally:
        if server is not None:
            server.stop(grace=5).wait()
        if started:
            ray.shutdown()


def picklable(name: str, value: Any, engine: str) -> None:
    """Spawned processes receive the objective by pickle: a lambda or a nested function
    cannot travel (Ray's cloudpickle can, so this is for "processes" only)."""
    try:
        pickle.dumps(value)
    except Exception as error:  # noqa: BLE001 - pickle raises several types
        raise ValueError(f"{name}={value!r} cannot be sent to engine={engine!r}'s worker "
                         f"processes ({type(error).__name__}: {error}); define it at module "
                         f"level in an importable file") from None

