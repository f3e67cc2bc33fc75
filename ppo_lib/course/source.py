"""``show_source``: a lesson shows the library's code next to the exercise, so that what is
shown is what runs."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .notebook import in_notebook

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # ppo_lib/
ROOT = PACKAGE_DIR.parent


def source_path(obj: Any) -> str:
    """'ppo_lib/returns.py': the file that defines ``obj``, relative to the repository when
    possible. No line number: line numbers drift when code moves, and the header ends up in
    the notebooks' stored outputs."""
    target = inspect.unwrap(obj)
    try:
        path = Path(inspect.getsourcefile(target) or inspect.getfile(target)).resolve()
    except (TypeError, OSError):
        return "source location unknown"
    for base in (ROOT, PACKAGE_DIR.parent):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def private_part(dotted_name: str) -> str | None:
    """The first component of a dotted name that is private (one leading underscore, not a
    dunder such as ``__init__``), or None: ``private_part("ppo_lib.ppo.PPO._update")`` is
    ``"_update"``."""
    for part in dotted_name.split("."):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return part
    return None


def show_source(obj: Any) -> None:
    """Show the source code of a public function or class, and the module it lives in.

    In a notebook the code is syntax-highlighted (``IPython.display.Code``); elsewhere it
    is printed as plain text. The first line names the object and its file, relative to the
    repository (``# ppo_lib.returns.gae  (ppo_lib/returns.py)``), so a learner can open it:
    what is shown is what runs. Lessons show public code only: an object whose qualified
    name has a private component (``PPO._update``) is a ValueError.
    """
    try:
        source = inspect.getsource(inspect.unwrap(obj))
    except (TypeError, OSError) as exc:
        raise TypeError(f"show_source needs a function, class or module defined in a file, "
                        f"got {obj!r} ({exc})") from None
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    module = getattr(obj, "__module__", None)
    full_name = f"{module + '.' if module and module != name else ''}{name}"
    private = private_part(full_name)
    if private is not None:
        raise ValueError(f"show_source({full_name}): {private!r} is private; lessons show "
                         f"public code only (give it a public name, or show its public caller)")
    header = f"# {full_name}  ({source_path(obj)})"
    if in_notebook():
        from IPython.display import Code, display
        display(Code(header + "\n" + source, language="python"))
    else:
        print(header)
        print(source, end="" if source.endswith("\n") else "\n")
