"""The Ray engine of ``ppo_lib.sweeps.run_grid``: each run is a Ray task with one CPU
(issue 14).

On this machine, ``engine="ray"`` starts a local Ray with one CPU per core and stops it when
the sweep ends. On a cluster of several machines, each with this course installed in the same
Python environment (``pip install -e .``), start Ray once:

    ray start --head --port=6379                 # on the head machine
    ray start --address=HEAD_IP:6379             # on every other machine

then, on the head machine, run the same sweep with one more argument:

    frame = run_grid(config, grid, seeds, engine="ray", address="auto", results="grid.csv")

(or set ``RAY_ADDRESS=HEAD_IP:6379`` and leave ``address`` out; ``"ray://HEAD_IP:10001"``
joins through Ray Client from another machine). Joining leaves the cluster running. A
learner who called ``ray.init`` already gets that Ray, left running too.

Ray does the scheduling: one task per run, ``ray.wait`` hands back each run as it finishes, so
its row is written at once. A node that dies mid-sweep costs its runs a retry (Ray's task
retries for system failures, ``MAX_RETRIES``); a run that raises is a row with its error, as on
every engine; Ctrl-C cancels the runs not finished and keeps the finished rows.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

from .grid import run_one

# Retries of a run whose worker or node died (a run that raises is never retried: run_one
# already turns its exception into a row).
MAX_RETRIES = 3
ADDRESS_FORMS = "None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT'"


def check_address(address: str | None) -> None:
    """``address`` is None (RAY_ADDRESS, else a local Ray), "auto" (the cluster ``ray start``
    made on this machine), "HOST:PORT" or "ray://HOST:PORT"."""
    if address is None or address == "auto":
        return
    if not isinstance(address, str) or not re.fullmatch(r"(ray://)?[^\s:/]+:\d+", address):
        raise ValueError(f"address must be {ADDRESS_FORMS} to join a Ray cluster, "
                         f"got {address!r}")


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or RAY_ADDRESS), or start a local Ray with one CPU
    per core; True when this call connected, so the sweep disconnects at its end. A Ray
    already initialised in this process is used as it is (``address`` is then not read)
    and left running."""
    import ray

    if ray.is_initialized():
        return False
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # "local": a new Ray for this sweep, never a cluster left running on this machine
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False)
    else:
        ray.init(address=address)   # None: Ray reads RAY_ADDRESS
    return True


def failed(error: BaseException) -> dict[str, Any]:
    """The row of a run Ray could not finish (e.g. its node died more than MAX_RETRIES
    times), as ``grid.outcome`` writes a worker process that died."""
    return dict(eval_mean=math.nan, ep_rew_mean=math.nan, seconds=math.nan, curve_steps=[],
                curve_ep_rew_mean=[], error=f"{type(error).__name__}: {error}")


def result(ref) -> dict[str, Any]:
    """A finished task's result columns. A KeyboardInterrupt inside the run (Ray reports it
    as a cancelled task; this engine cancels only after a Ctrl-C) stops the sweep."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError as error:
        raise KeyboardInterrupt from error
    except ray.exceptions.RayError as error:
        return failed(error)


def run_ray(tasks, trainer: Callable[..., dict[str, Any]], finish, progress,
            address: str | None = None) -> None:
    """Each run a Ray task with one CPU, ``grid.run_one`` on one torch thread; each row
    recorded by ``finish`` as its run finishes.

    Ctrl-C: the rows of runs already done are recorded, the others cancelled, and the
    KeyboardInterrupt raised again (run_grid returns the finished rows).
    """
    check_address(address)
    if not tasks:   # every row already in the results file: no Ray to start or join
        return
    import ray

    started = connect(address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES,
                            retry_exceptions=False)(run_one)
        pending = {}   # {task: run index} of the runs not recorded yet
        try:
            for index, config, seed, env_id, total_timesteps, n_eval in tasks:
                pending[remote.remote(trainer, config, seed, env_id, total_timesteps,
                                      n_eval)] = index
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ref)
                finish(index, result(ref))
                progress.update(1)
        except KeyboardInterrupt:
            keep_done_and_cancel(pending, finish, progress)
            raise
    finally:
        if started:
            ray.shutdown()


def keep_done_and_cancel(pending: dict, finish, progress) -> None:
    """After a Ctrl-C: record the runs that finished meanwhile, cancel the rest."""
    import ray

    if not pending:
        return
    done, running = ray.wait(list(pending), num_returns=len(pending), timeout=0)
    for ref in done:
        try:
            finish(pending[ref], result(ref))
            progress.update(1)
        except KeyboardInterrupt:   # a run stopped by the Ctrl-C itself is not a row
            pass
    for ref in running:
        ray.cancel(ref)
