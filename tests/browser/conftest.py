"""JupyterLab in a real browser: one server and one headless Chromium for the whole session.

The server runs from this venv (``sys.executable -m jupyter lab``) on 127.0.0.1 with a random
port and token, every Jupyter/IPython directory in a temporary folder, and a temporary COPY
of lessons/ as its root (tests never touch the repository's lessons). It is a direct child
process in its own process group, stopped by its own PID at the end, also when a test
fails. Chromium is Debian's /usr/bin/chromium driven by Playwright's Python package.

Without /usr/bin/chromium the browser tests are skipped with one line; with CI set they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import ran_in_browser

REPO = Path(__file__).resolve().parents[2]
LESSONS = REPO / "lessons"
SOLUTIONS = REPO / "solutions"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("PPO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MISSING_CHROMIUM = (f"browser tests need Chromium at {CHROMIUM}: "
                    "enable them with `apt-get install chromium`")

# One server and one browser per session: under pytest-xdist all browser tests go to one
# worker (run with --dist loadgroup), in the lesson order set below.
BROWSER_GROUP = "browser"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test here `browser` and group them on one xdist worker; order them lesson
    by lesson (run all, then slider, then exercise) so that each lesson's kernel is started
    once and shut down before the next lesson starts."""
    here = Path(__file__).parent
    mine = [item for item in items if Path(str(item.fspath)).parent == here]
    if not mine:
        return
    for item in mine:
        item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.xdist_group(BROWSER_GROUP))

    def key(item):
        callspec = getattr(item, "callspec", None)
        lesson = callspec.params.get("lesson", "") if callspec else ""
        return (lesson, getattr(item.function, "browser_order", 0))

    positions = [i for i, item in enumerate(items) if item in set(mine)]
    for pos, item in zip(positions, sorted(mine, key=key)):
        items[pos] = item


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A running JupyterLab: base URL, token, root folder, and a tiny REST client."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base}{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise urllib.error.HTTPError(exc.url, exc.code, f"{exc.msg} ({method} {path}): "
                                         f"{detail}", exc.headers, None) from None
        return json.loads(text) if text else None

    def url(self, path: str) -> str:
        return f"{self.base}{path}?token={self.token}&reset"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def delete_all_kernels(self) -> None:
        for kernel in self.api("GET", "/api/kernels"):
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except urllib.error.HTTPError:
                pass


def _write_lab_config(config_dir: Path) -> None:
    """No news toast, and every cell rendered (no windowing) so prompts and outputs of
    off-screen cells can be read from the DOM."""
    (config_dir / "labconfig").mkdir(parents=True, exist_ok=True)
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    settings = config_dir / "lab" / "user-settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
     ).write_text(json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _die_with_parent() -> None:
    """In the server's child process (Linux): get SIGTERM when pytest dies, e.g. when an
    xdist worker is killed without running fixture teardown. The server then shuts down its
    kernels itself."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (it was started as a group leader: pgid == pid)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {MISSING_CHROMIUM}", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def lab(chromium_path, tmp_path_factory) -> LabServer:
    """JupyterLab serving a temporary copy of lessons/."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "lessons"
    shutil.copytree(LESSONS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    digests = {p.stem: ran_in_browser.digest(p) for p in root.glob("*.ipynb")}  # as copied
    dirs = {name: tmp / name.lower() for name in
            ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR",
             "IPYTHONDIR", "MPLCONFIGDIR")}
    for path in dirs.values():
        path.mkdir()
    _write_lab_config(dirs["JUPYTER_CONFIG_DIR"])
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()},
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "jupyterlab.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    server = LabServer(root, port, token, proc, log)
    server.lesson_digests = digests
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n"
                                   f"{server.log_tail()}")
            try:
                server.api("GET", "/api/status", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer /api/status within 60 s:"
                                       f"\n{server.log_tail()}") from None
                time.sleep(0.25)
        yield server
    finally:
        try:
            if proc.poll() is None:
                server.delete_all_kernels()
        except Exception:  # noqa: BLE001 - the server is killed next anyway
            pass
        _stop(proc)


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
