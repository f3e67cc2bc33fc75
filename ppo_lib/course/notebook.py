"""Whether the code runs in a Jupyter kernel (then verdicts, tables and source are shown
as rich output)."""


def in_notebook() -> bool:
    """True in a Jupyter kernel (an IPython shell with a kernel), False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")
