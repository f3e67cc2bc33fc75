"""Execute notebooks headless without stalling (used by ``ppo_lib.course.grade`` and
``python -m ppo_lib.course execute``).

Why not plain nbclient: a cell that displays an ``interact`` widget could stall there
until its time limit, with an idle kernel and an idle client (about 1 run in 3 was seen on
lesson 03; with a 45 s limit the cell waited exactly 45 s, then the reply was found and
execution went on). The cause is a lost wake-up in the client, not a lost message:

1. The ``interact`` output area is an ipywidgets ``Output`` widget. nbclient mimics a
   front end for it (``nbclient.output_widget.OutputWidget``): each output captured in it
   is synced back to the kernel with a ``comm_msg`` sent on the *shell* channel, while the
   client is awaiting that very channel for the cell's ``execute_reply``.
2. jupyter_client's ``Session.send`` sends on a ``zmq.asyncio`` socket through a blocking
   shadow of it (``zmq.Socket.shadow(socket.underlying)``). A ZeroMQ socket's file
   descriptor is edge-triggered: any operation on the socket, a send included, processes
   its pending commands and resets the descriptor. When the ``execute_reply`` has reached
   the socket just before that send, the send swallows the edge, asyncio never sees the
   descriptor become readable again, and the pending ``poll`` waits until its timeout
   (pyzmq then polls once more and finds the reply: hence "waited exactly its timeout,
   then went on"). With no timeout it waits forever. ``benchmarks/stress_headless.py``
   shows it on the real notebooks (``--client plain --provoke 0.05``: every ``interact``
   cell waits its whole limit); ``tests/test_execution.py`` shows it in isolation with
   pyzmq alone.

The fix, two independent layers:

* The Output widget mimic sends its ``comm_msg`` through the asyncio socket itself, whose
  send path re-checks the socket's events and wakes a pending receive.
* Every wait on the shell and IOPub channels is cut into slices of at most
  ``POLL_SLICE`` seconds; each slice ends with a real ``zmq_poll``, so a wake-up lost for
  any other reason costs at most one slice, never the cell's whole time limit.

Also: kernels talk over IPC sockets in a private temporary folder on POSIX (no TCP ports
picked by one process and bound by another, which races when several kernels start at
once), kernels are killed rather than asked to shut down, each cell gets its own time limit
(capped by what remains of an optional whole-notebook budget), a timed-out cell can be
interrupted so that later cells still run, and SIGINT/SIGTERM stop the run, kill the
kernel and return what ran so far.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

POLL_SLICE = 0.5          # seconds: the longest a lost wake-up can delay a message
IOPUB_TIMEOUT = 10        # seconds to wait for a cell's idle status after its reply


@dataclass
class Execution:
    """What ``run_notebook`` did. ``status``: "ok" (every cell ran), "timeout" (the
    notebook's budget ran out, or a cell's limit without ``interrupt_on_timeout``),
    "error" (a cell raised without ``allow_errors``; the kernel died; no kernel),
    "interrupted" (SIGINT/SIGTERM; ``signal`` says which)."""

    status: str = "ok"
    error: str = ""
    seconds: float = 0.0
    cells_run: int = 0
    timed_out_cells: list[int] = field(default_factory=list)
    signal: int | None = None
    final_reply: dict | None = None     # execute_reply content of ``final_code``
    final_output: str = ""              # what ``final_code`` printed (stdout, stderr)
    exception: BaseException | None = None


def _client_classes():
    """The nbclient subclasses (built lazily: importing nbclient costs ~0.3 s)."""
    import nbclient
    from nbclient.output_widget import OutputWidget
    from nbclient.jsonutil import json_clean

    class AsyncSendOutputWidget(OutputWidget):
        """nbclient's Output widget mimic, sending its comm messages through the asyncio
        socket (``Session.send`` would use a blocking shadow of it: see the module doc)."""

        def _publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            data = {} if data is None else data
            metadata = {} if metadata is None else metadata
            content = json_clean(dict(data=data, comm_id=self.comm_id, **keys))
            kc = self.kernel_client
            msg = kc.session.msg(msg_type, content=content, parent=self.parent_header,
                                 metadata=metadata)
            frames = kc.session.serialize(msg) + list(buffers or [])
            future = kc.shell_channel.socket.send_multipart(frames)
            # zmq.asyncio sends at once when it can; keep the future observed anyway
            if hasattr(future, "add_done_callback"):
                future.add_done_callback(_log_send_error)

    class HeadlessClient(nbclient.NotebookClient):
        """NotebookClient with the fixes above and a per-cell time limit capped by an
        optional whole-notebook deadline (``time.monotonic()`` value)."""

        def __init__(self, nb, *, cell_timeout: float | None, deadline: float | None = None,
                     **kw: Any):
            super().__init__(nb, **kw)
            self.cell_timeout = cell_timeout
            self.deadline = deadline
            self.timed_out_cells: list[int] = []
            self.widget_registry = {
                "@jupyter-widgets/output": {"OutputModel": AsyncSendOutputWidget}}

        def _get_timeout(self, cell) -> int | None:
            limits = [t for t in (self.cell_timeout,) if t and t > 0]
            if self.deadline is not None:
                limits.append(self.deadline - time.monotonic())
            if not limits:
                return None
            return max(1, math.ceil(min(limits)))

        async def _async_handle_timeout(self, timeout, cell=None):
            if cell is not None:
                self.timed_out_cells.append(
                    next((i for i, c in enumerate(self.nb.cells) if c is cell), -1))
            return await super()._async_handle_timeout(timeout, cell)

        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            _slice_polls(kc.shell_channel)
            _slice_polls(kc.iopub_channel)
            return kc

    return HeadlessClient


def _log_send_error(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        import logging
        logging.getLogger(__name__).warning("comm message not sent: %s", future.exception())


def _slice_polls(channel, slice_seconds: float = POLL_SLICE) -> None:
    """Make ``channel.get_msg(timeout)`` wait in slices of at most ``slice_seconds``."""
    get_msg = channel.get_msg

    async def sliced_get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = slice_seconds if deadline is None else \
                max(0.0, min(slice_seconds, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=step)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = sliced_get_msg


def _kernel_manager(kernel_name: str, tmp: str):
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel_name)
    # IPC sockets in a private folder: no TCP port to race for (a socket path must stay
    # under ~100 bytes; with a very long TMPDIR, TCP it is)
    if os.name == "posix" and len(os.path.join(tmp, "k-99")) < 100:
        km.transport = "ipc"
        km.connection_file = os.path.join(tmp, "kernel.json")
        km.ip = os.path.join(tmp, "k")
    return km


async def _run_final(client, code: str, user_expressions: dict[str, str],
                     timeout: float) -> tuple[dict | None, str]:
    """Execute ``code`` (not a notebook cell) and return its reply content and output."""
    kc = client.kc
    msg_id = kc.execute(code, store_history=False, user_expressions=user_expressions,
                        allow_stdin=False, stop_on_error=False)
    printed: list[str] = []

    async def drain_iopub():
        while True:
            msg = await kc.iopub_channel.get_msg(timeout=None)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed.append(msg["content"].get("text", ""))
            elif msg["msg_type"] == "error":
                printed.append("\n".join(msg["content"].get("traceback", [])))
            elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return

    drain = asyncio.ensure_future(drain_iopub())
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "".join(printed)
            try:
                msg = await kc.shell_channel.get_msg(timeout=remaining)
            except Empty:
                return None, "".join(printed)
            if msg["parent_header"].get("msg_id") == msg_id:
                try:
                    await asyncio.wait_for(asyncio.shield(drain), 2)
                except asyncio.TimeoutError:
                    pass
                return msg["content"], "".join(printed)
    finally:
        drain.cancel()


def run_notebook(nb, cwd: str, *, cell_timeout: float | None = 600,
                 total_timeout: float | None = None, kernel_name: str = "python3",
                 allow_errors: bool = False, interrupt_on_timeout: bool = False,
                 final_code: str | None = None, final_expressions: dict[str, str] | None = None,
                 final_timeout: float = 60.0, handle_signals: bool = False,
                 startup_timeout: int = 120, record_timing: bool = True,
                 store_widget_state: bool = True, env: dict[str, str] | None = None,
                 ) -> Execution:
    """Execute the code cells of ``nb`` (an nbformat v4 NotebookNode, modified in place:
    outputs, execution counts, widget state) in a fresh kernel whose cwd is ``cwd``.

    cell_timeout:   seconds per cell (None: no limit); capped by what remains of
                    ``total_timeout`` (seconds for all cells together).
    allow_errors:   a cell that raises does not stop the run (its error is an output).
                    Otherwise the ``CellExecutionError`` is in ``Execution.exception``.
    interrupt_on_timeout: a cell past its limit is interrupted and the run goes on (an
                    error output says so); otherwise the run stops with status "timeout".
    final_code:     code run after the cells (even after a timeout) with its own
                    ``final_timeout``, not part of the notebook; ``final_expressions`` are
                    its ``user_expressions`` (evaluated in the kernel after it, returned
                    on the shell channel in ``Execution.final_reply``).
    handle_signals: SIGINT and SIGTERM stop the run (main thread only), kill the kernel
                    and return status "interrupted".
    env:            the kernel's environment (default: this process's).

    Never raises for a notebook that fails; the failure is in the result.
    """
    import nbclient.exceptions as nbexc

    started = time.monotonic()
    result = Execution()
    tmp = tempfile.mkdtemp(prefix="ppo-kernel-")
    deadline = None if total_timeout is None else started + total_timeout
    client = _client_classes()(
        nb, cell_timeout=cell_timeout, deadline=deadline, kernel_name=kernel_name,
        allow_errors=allow_errors, interrupt_on_timeout=interrupt_on_timeout,
        error_on_timeout={"ename": "CellTimeoutError", "evalue":
                          "the cell ran past its time limit and was interrupted",
                          "traceback": []} if interrupt_on_timeout else None,
        shutdown_kernel="immediate", iopub_timeout=IOPUB_TIMEOUT,
        startup_timeout=startup_timeout, record_timing=record_timing,
        store_widget_state=store_widget_state,
        resources={"metadata": {"path": str(cwd)}})
    client.km = _kernel_manager(kernel_name, tmp)
    client.owns_km = True

    async def body() -> None:
        await client.async_start_new_kernel(
            cwd=str(cwd), **({"env": dict(env)} if env is not None else {}))
        await client.async_start_new_kernel_client()
        info = await client.async_wait_for_reply(client.kc.kernel_info())
        if info and "language_info" in info["content"]:
            nb.metadata["language_info"] = info["content"]["language_info"]
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if result.signal is not None:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    result.status = "timeout"
                    result.error = f"stopped after {total_timeout:g} s (time limit)"
                    break
                await client.async_execute_cell(
                    cell, index, execution_count=client.code_cells_executed + 1)
                result.cells_run += 1
        except nbexc.CellTimeoutError as exc:
            result.status, result.error, result.exception = "timeout", _first_line(exc), exc
        except nbexc.DeadKernelError as exc:
            if result.signal is not None:  # nbclient reports a cancelled cell so
                return
            result.status, result.error = "error", f"the kernel died ({exc})"
            result.exception = exc
            return
        except nbexc.CellExecutionError as exc:
            result.status, result.error, result.exception = "error", _first_line(exc), exc
        client.set_widgets_metadata()
        if deadline is not None and result.status == "ok" and client.timed_out_cells \
                and time.monotonic() >= deadline:
            result.status = "timeout"
            result.error = f"stopped after {total_timeout:g} s (time limit)"
        if final_code is not None and result.signal is None:
            reply, printed = await _run_final(client, final_code, final_expressions or {},
                                              final_timeout)
            result.final_reply, result.final_output = reply, printed

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        installed = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            def on_signal(signum: int) -> None:
                if result.signal is None:
                    result.signal = signum
                    task.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, on_signal, signum)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            await body()
        except asyncio.CancelledError:
            if result.signal is None:
                raise
        except Exception as exc:  # e.g. no such kernel, the kernel did not start
            result.status, result.error, result.exception = \
                "error", f"{type(exc).__name__}: {exc}", exc
        finally:
            if result.signal is not None:  # however the cancel surfaced
                result.status, result.exception = "interrupted", None
                result.error = f"stopped by {signal.Signals(result.signal).name}"
            try:
                await _kill(client)  # a second signal meanwhile is ignored
            finally:
                for signum in installed:
                    loop.remove_signal_handler(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        asyncio.run(main())
    finally:
        for signum, handler in previous.items():  # the loop's removal resets them
            if handler is not None:
                signal.signal(signum, handler)
        shutil.rmtree(tmp, ignore_errors=True)
    result.timed_out_cells = list(client.timed_out_cells)
    result.seconds = round(time.monotonic() - started, 1)
    return result


async def _kill(client) -> None:
    """Kill the kernel and close the channels (also after a cancel or a dead kernel)."""
    km, kc = client.km, client.kc
    try:
        if kc is not None:
            kc.stop_channels()
    except Exception:
        pass
    try:
        if km is not None and km.has_kernel:
            await km.shutdown_kernel(now=True)  # interrupt, SIGKILL, remove its files
    except Exception:
        try:
            await km._kill_kernel()
        except Exception:
            pass
    client.kc = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
