"""The repository's conftest.py starts nbval's kernels over ipc (no TCP port to lose to another
process between jupyter_client picking it and the kernel binding it), and a kernel that dies at
start raises with its stderr instead of nbval's bare "Kernel died before replying"."""

import os

import nbval.kernel
import pytest

pytestmark = pytest.mark.skipif(os.name == "nt", reason="ZeroMQ ipc: POSIX only; TCP is kept")


def root_conftest():
    """The globals of the start_new_kernel that nbval now calls (both conftests are modules
    named "conftest"; the function keeps its own's)."""
    namespace = nbval.kernel.start_new_kernel.__globals__
    assert namespace["__file__"] == os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                                 "conftest.py"), namespace["__file__"]
    return namespace


def test_nbval_kernels_start_over_ipc_in_a_directory_of_their_own(tmp_path):
    conftest = root_conftest()
    manager, client = nbval.kernel.start_new_kernel(
        kernel_name=nbval.kernel.CURRENT_ENV_KERNEL_NAME, cwd=str(tmp_path),
        stderr=open(os.devnull, "w"))
    try:
        info = manager.get_connection_info()
        assert info["transport"] == "ipc"
        directory = os.path.dirname(info["ip"])
        assert os.path.dirname(directory) == conftest["KERNEL_DIRS"]
        assert len(info["ip"]) + len("-65535") < 107  # sun_path limit, with the port suffix
        client.execute("x = 6 * 7")
        reply = client.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "ok"
        assert os.path.exists(os.path.join(directory, "stderr"))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_kernel_that_cannot_bind_raises_with_its_stderr(tmp_path, monkeypatch):
    conftest = root_conftest()

    class Unbindable(conftest["KernelManager"]):
        def __init__(self, **kwargs):
            kwargs["ip"] = str(tmp_path / "no-such-dir" / "socket")
            super().__init__(**kwargs)

    monkeypatch.setitem(conftest, "KernelManager", Unbindable)
    with pytest.raises(RuntimeError) as raised:
        nbval.kernel.start_new_kernel(kernel_name=nbval.kernel.CURRENT_ENV_KERNEL_NAME,
                                      cwd=str(tmp_path), startup_timeout=60)
    message = str(raised.value)
    assert "its stderr" in message
    assert "ZMQError" in message or "No such file or directory" in message, message[-800:]
