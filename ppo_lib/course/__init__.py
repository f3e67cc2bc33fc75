"""Course tooling: one source for every lesson, and ``show_source`` for the notebooks.

- ``lessons``: build ``lessons/`` from ``solutions/`` (strip the solutions, set nbgrader's
  metadata), check that they are up to date, execute a solution to store its outputs;
- ``source``: ``show_source``, what the notebooks use to show the library's code;
- ``grading`` (public path ``ppo_lib.grading``) and the modules it is made of, with the
  exercises in ``exercises/``; ``grade`` (``python -m ppo_lib.grade``), the headless
  grader; ``execution``, running notebooks headless.

Command line (from the repository root)::

    python -m ppo_lib.course build [NOTEBOOK...]     # solutions -> lessons
    python -m ppo_lib.course build --check            # exit 1 if a lesson is out of date
    python -m ppo_lib.course execute solutions/NN.ipynb [--timeout S]  # store outputs
"""

from __future__ import annotations

import argparse
import os
import sys

from .lessons import (BEGIN, CHECK_CALL, CODE_STUB, END, LESSONS_DIR, MARKDOWN_STUB,
                      NBGRADER_SCHEMA_VERSION, PACKAGE_DIR, ROOT, SOLUTIONS_DIR,
                      WIDGET_STATE_KEY, build, build_lesson, check_calls, dumps, execute,
                      expected_lesson_text, graded_ids, lesson_path, read_notebook,
                      remove_markers, solution_metadata, solution_paths,
                      solutions_without_metadata, stale_lessons, strip_solutions,
                      update_solution_metadata)
from .notebook import in_notebook
from .source import show_source

__all__ = ["BEGIN", "CHECK_CALL", "CODE_STUB", "END", "LESSONS_DIR", "MARKDOWN_STUB",
           "NBGRADER_SCHEMA_VERSION", "PACKAGE_DIR", "ROOT", "SOLUTIONS_DIR",
           "WIDGET_STATE_KEY", "build", "build_lesson", "check_calls", "dumps", "execute",
           "expected_lesson_text", "graded_ids", "in_notebook", "lesson_path", "main",
           "read_notebook", "remove_markers", "show_source", "solution_metadata",
           "solution_paths", "solutions_without_metadata", "stale_lessons",
           "strip_solutions", "update_solution_metadata"]


# ---------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ppo_lib.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p_build = commands.add_parser("build", help="write lessons/ from solutions/")
    p_build.add_argument("notebooks", nargs="*", help="solution notebooks (default: all)")
    p_build.add_argument("--check", action="store_true",
                         help="write nothing; exit 1 listing the lessons (or solutions' metadata, "
                              "or solutions storing widget state) that differ from the build")
    p_exec = commands.add_parser("execute", help="execute solution notebooks in place")
    p_exec.add_argument("notebooks", nargs="+")
    p_exec.add_argument("--timeout", type=float, default=600,
                        help="seconds per cell (default 600)")
    args = parser.parse_args(argv)

    try:
        if args.command == "build" and args.check:
            stale = stale_lessons(args.notebooks) + solutions_without_metadata(args.notebooks)
            for path in stale:
                why = (" (stores widget state)" if path.exists() and WIDGET_STATE_KEY in
                       read_notebook(path).get("metadata", {}) else "")
                print(f"out of date: {os.path.relpath(path)}{why} "
                      f"(run: python -m ppo_lib.course build)")
            if not stale:
                print("lessons are up to date")
            return 1 if stale else 0
        if args.command == "build":
            for path in build(args.notebooks):
                print(f"wrote {os.path.relpath(path)}")
            return 0
        for name in args.notebooks:
            print(f"executing {name} ...", flush=True)
            execute(name, timeout=args.timeout)
        return 0
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
