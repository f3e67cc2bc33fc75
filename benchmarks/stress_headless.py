"""Stress headless execution of the widget notebooks: does any run stall?

    .venv/bin/python benchmarks/stress_headless.py                    # every widget notebook,
                                                                      # 2 rounds, 2 at once
    .venv/bin/python benchmarks/stress_headless.py --client plain --provoke 0.05 \\
        --notebooks solutions/03_clipped_objective.ipynb --rounds 3    # the defect, shown

The widget notebooks are the lessons and solutions whose code cells call ``interact``
(found by reading them). Each run is a fresh process executing one notebook; ``--parallel``
runs execute at once. Per run it reports the seconds, and for every ``execute_reply`` how
long after the kernel sent it (its header date) the client received it: a reply received
more than ``--late`` seconds after it was sent is a lost wake-up (the stall of
``ppo_lib.course.execution``'s docstring). A run stalls when it has such a reply, a cell past its
time limit, or does not finish within ``--hard-limit`` seconds (then it is killed).

Clients: ``fixed`` (``ppo_lib.course.execution.run_notebook``, what ``course execute`` uses),
``grade`` (``ppo_lib.course.grade.grade_notebook``: the same plus the grading step; the score is
reported) and ``plain`` (``nbclient.NotebookClient``, as the grader ran before the fix).
``--provoke S`` makes nbclient's Output-widget mimic lag ``S`` seconds before it handles
each captured output (what a busy machine does at random), which widens the race window
from rare to almost certain: with ``plain`` every ``interact`` cell then waits its whole
time limit; with ``fixed`` and ``grade`` nothing waits.

Exit code 0 when no run stalled, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(path: Path) -> str:
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path)


def widget_notebooks() -> list[Path]:
    """Lessons and solutions with a code cell that calls ``interact`` (or
    ``interact_with_readout``)."""
    found = []
    for folder in ("lessons", "solutions"):
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            nb = json.loads(path.read_text(encoding="utf-8"))
            for cell in nb.get("cells", []):
                src = cell.get("source", "")
                src = "".join(src) if isinstance(src, list) else src
                if cell.get("cell_type") == "code" and "interact" in src and "(" in src:
                    found.append(path)
                    break
    return found


# ---------------------------------------------------------------------------------------
# one run (in its own process)


def _instrument(provoke: float) -> list[float]:
    """Record, for every execute_reply, seconds between the kernel's send and receipt."""
    import nbclient
    import nbclient.output_widget as output_widget

    lateness: list[float] = []
    start_client = nbclient.NotebookClient.async_start_new_kernel_client

    async def instrumented(self):
        kc = await start_client(self)
        get_msg = kc.shell_channel.get_msg

        async def timed_get_msg(timeout=None):
            msg = await get_msg(timeout=timeout)
            if msg.get("msg_type") == "execute_reply":
                sent = msg["header"]["date"]
                now = datetime.datetime.now(datetime.timezone.utc)
                lateness.append(max(0.0, (now - sent).total_seconds()))
            return msg

        kc.shell_channel.get_msg = timed_get_msg
        return kc

    nbclient.NotebookClient.async_start_new_kernel_client = instrumented
    if provoke > 0:
        handle_output = output_widget.OutputWidget.output

        def lagging_output(self, *args, **kwargs):
            time.sleep(provoke)
            return handle_output(self, *args, **kwargs)

        output_widget.OutputWidget.output = lagging_output
    return lateness


def run_one(path: Path, client: str, cell_timeout: float, provoke: float) -> dict:
    import nbformat

    lateness = _instrument(provoke)
    started = time.monotonic()
    row: dict = {"notebook": _name(path), "client": client}
    if client == "grade":
        from ppo_lib.course.grade import grade_notebook

        result = grade_notebook(path, timeout=max(600.0, cell_timeout), cell_timeout=cell_timeout)
        row.update(status=result.status, score=f"{result.score}/{len(result.exercises)}",
                   timed_out_cells=[e for e in result.cell_errors if "CellTimeoutError" in e])
    elif client == "fixed":
        from ppo_lib.course.execution import run_notebook

        nb = nbformat.read(path, as_version=4)
        run = run_notebook(nb, str(path.parent), cell_timeout=cell_timeout, allow_errors=True,
                           interrupt_on_timeout=True)
        row.update(status=run.status, timed_out_cells=run.timed_out_cells)
    else:
        import nbclient

        nb = nbformat.read(path, as_version=4)
        slow = []
        starts = {}
        c = nbclient.NotebookClient(nb, timeout=int(cell_timeout), kernel_name="python3",
                                    allow_errors=True,
                                    resources={"metadata": {"path": str(path.parent)}})
        c.on_cell_execute = lambda cell, cell_index, **_: starts.__setitem__(cell_index,
                                                                             time.monotonic())
        c.on_cell_executed = lambda cell, cell_index, **_: slow.append(cell_index) \
            if time.monotonic() - starts[cell_index] >= cell_timeout - 0.5 else None
        status = "ok"
        try:
            c.execute()
        except Exception as exc:  # noqa: BLE001
            status = f"{type(exc).__name__}"
        row.update(status=status, timed_out_cells=slow)
    row["seconds"] = round(time.monotonic() - started, 1)
    row["replies"] = len(lateness)
    row["max_reply_delay"] = round(max(lateness, default=0.0), 3)
    return row


# ---------------------------------------------------------------------------------------
# the stress (parent process)


def launch(path: Path, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", str(path),
               "--client", args.client, "--cell-timeout", str(args.cell_timeout),
               "--provoke", str(args.provoke)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=args.hard_limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its kernel (same session)
        process.communicate()
        return {"notebook": _name(path), "client": args.client,
                "status": "hung", "seconds": round(time.monotonic() - started, 1),
                "replies": 0, "max_reply_delay": None, "timed_out_cells": []}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"notebook": _name(path), "client": args.client,
                "status": f"crashed (exit {process.returncode})",
                "seconds": round(time.monotonic() - started, 1), "replies": 0,
                "max_reply_delay": None, "timed_out_cells": []}
    return json.loads(lines[-1])


def stalled(row: dict, late: float) -> bool:
    return (row["status"] not in ("ok",) or bool(row.get("timed_out_cells"))
            or (row.get("max_reply_delay") or 0) > late)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", nargs="*", type=Path,
                        help="default: every lesson and solution that calls interact")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each notebook")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--client", choices=("fixed", "grade", "plain"), default="fixed")
    parser.add_argument("--provoke", type=float, default=0.0,
                        help="seconds of lag before each captured widget output (default 0)")
    parser.add_argument("--cell-timeout", type=float, default=120.0)
    parser.add_argument("--late", type=float, default=2.0,
                        help="a reply received this long after it was sent is a stall")
    parser.add_argument("--hard-limit", type=float, default=900.0,
                        help="seconds after which a run is killed and counted as hung")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one.resolve(), args.client, args.cell_timeout,
                                 args.provoke)), flush=True)
        return 0

    notebooks = [p.resolve() for p in args.notebooks] if args.notebooks else widget_notebooks()
    tasks = [p for _ in range(args.rounds) for p in notebooks]
    print(f"{len(tasks)} runs ({len(notebooks)} notebooks x {args.rounds}), {args.parallel} at "
          f"once, client {args.client}, provoke {args.provoke:g} s, cell limit "
          f"{args.cell_timeout:g} s, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
          flush=True)
    rows = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(launch, path, args) for path in tasks]
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            rows.append(row)
            mark = "STALL" if stalled(row, args.late) else "ok"
            timed_out = row.get("timed_out_cells")
            print(f"{len(rows):3d}/{len(tasks)} {mark:5s} {row['seconds']:6.1f} s  "
                  f"{row['notebook']:45s} status {row['status']}"
                  f"{'  score ' + row['score'] if 'score' in row else ''}"
                  f"  replies {row['replies']}, slowest reply {row['max_reply_delay']} s"
                  f"{'  timed out cells ' + str(timed_out) if timed_out else ''}",
                  flush=True)
    wall = time.monotonic() - started
    stalls = [r for r in rows if stalled(r, args.late)]
    print(f"\n{'notebook':45s} runs   min  median    max  (seconds)")
    for nb in sorted({r["notebook"] for r in rows}):
        secs = [r["seconds"] for r in rows if r["notebook"] == nb]
        print(f"{nb:45s} {len(secs):4d} {min(secs):5.1f} {statistics.median(secs):7.1f} "
              f"{max(secs):6.1f}")
    delays = [r["max_reply_delay"] for r in rows if r["max_reply_delay"] is not None]
    slowest = max(r["seconds"] for r in rows)
    print(f"\nruns {len(rows)}, wall {wall:.0f} s, slowest run {slowest:.1f} s, "
          f"slowest reply {max(delays, default=0):.3f} s after sent, stalls {len(stalls)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if stalls else 0


if __name__ == "__main__":
    sys.exit(main())
