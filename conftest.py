"""How nbval starts the notebooks' kernels in `make test`: over Unix sockets, with their stderr kept.

nbval starts each notebook's kernel with jupyter_client's defaults: TCP on 127.0.0.1 at five
ports that jupyter_client picks (bind to port 0, read the port, close) and writes to the
connection file, and the kernel binds a second or so later, once Python has imported it.
Between the two, any process on the machine may take one of those ports for a connection of
its own; the kernel then fails to bind ("Address already in use"), exits, and nbval reports
"Kernel died before replying to kernel_info" for every cell of the notebook. That is a known
race (jupyter/jupyter_client#276 and #487, nteract/papermill#511), rare, but two xdist
workers starting kernels while the other notebooks train make it likelier. It failed a CI
run once here (all of solutions/06 at kernel start; the notebook passed alone right after).

Over the ``ipc`` transport the kernel's sockets are files in a directory made for that
kernel alone: no port to lose, so no race. Windows has no ZeroMQ ipc in every build, so
there the default (TCP) stays. And nbval sends a kernel's stderr to /dev/null, so a kernel
that dies at start said nothing; here it goes to a file, and a kernel that fails to start
raises with the file's last lines.

One more setting for the whole test run (this process, its xdist workers' and the kernels
and servers they start): SB3's ``learn`` makes an empty log folder in the system temp dir on
every call unless $SB3_LOGDIR names one, which left about a hundred ``/tmp/SB3-*`` folders
per ``make test``; they go to a folder removed at exit."""

import atexit
import os
import shutil
import tempfile

import nbval.kernel
from jupyter_client.manager import KernelManager

KERNEL_DIRS = tempfile.mkdtemp(prefix="nbval-kernels-")  # short: a socket path has <= 107 bytes
atexit.register(shutil.rmtree, KERNEL_DIRS, ignore_errors=True)
os.environ.setdefault("SB3_LOGDIR", os.path.join(KERNEL_DIRS, "sb3_logs"))
STDERR_LINES = 40


def start_new_kernel(startup_timeout=60, kernel_name="python", **kwargs):
    """nbval.kernel.start_new_kernel, with the kernel's sockets in a directory of its own and
    its stderr in a file there: (manager, client) of a kernel that replied to kernel_info."""
    if os.name == "nt":
        return original_start_new_kernel(startup_timeout, kernel_name, **kwargs)
    directory = tempfile.mkdtemp(dir=KERNEL_DIRS)
    manager = KernelManager(kernel_name=kernel_name,
                            kernel_spec_manager=nbval.kernel.NbvalKernelspecManager(),
                            transport="ipc", ip=os.path.join(directory, "socket"))
    devnull = kwargs.pop("stderr", None)  # nbval opens /dev/null for it and never closes it
    if devnull is not None:
        devnull.close()
    stderr_path = os.path.join(directory, "stderr")
    with open(stderr_path, "wb") as stderr:  # the kernel holds its own copy of the descriptor
        manager.start_kernel(stderr=stderr, **kwargs)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=startup_timeout)
    except RuntimeError as error:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        with open(stderr_path, errors="replace") as stderr:
            tail = "".join(stderr.readlines()[-STDERR_LINES:])
        raise RuntimeError(f"{error} (kernel {kernel_name!r}, its stderr, last "
                           f"{STDERR_LINES} lines:\n{tail or '(empty)'})") from error
    return manager, client


original_start_new_kernel = nbval.kernel.start_new_kernel
nbval.kernel.start_new_kernel = start_new_kernel  # RunningKernel looks it up when it starts one
