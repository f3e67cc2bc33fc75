"""Which lessons the browser tests ran top to bottom in this `make test`, so that each lesson
runs once as a lesson.

test_run_all_without_errors opens every lesson in JupyterLab, restarts its kernel, runs all
its cells with the exercises unfinished and fails on any error output, traceback or cell left
unrun: what `pytest --nbval-lax lessons` checks, in the learner's real front end. Each lesson
that passes it is recorded here with the SHA-256 of the lessons/ file it ran (the server's
copy is taken at its start). The Makefile empties the record before the tests and then runs
under nbval-lax the lessons it does not hold: all of them when the browser tests were skipped
(no Chromium) or deselected, or a lesson changed since it ran.

    python tests/browser/ran_in_browser.py   # the lessons/ paths still to run, one per line
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LESSONS = REPO / "lessons"
RECORD = REPO / "test-artifacts" / "browser" / "run_all_passed.txt"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record(lesson: str, sha256: str, path: Path = RECORD) -> None:
    """Note that ``lesson`` (a stem such as "05_ppo_cartpole"), as the file of that digest,
    ran top to bottom without an error in the browser."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(f"{lesson} {sha256}\n")


def left(lessons: Path = LESSONS, path: Path = RECORD) -> tuple[list[Path], list[Path]]:
    """(lessons still to run, lessons that ran in the browser as they are now), in order."""
    ran = set()
    if path.exists():
        ran = {tuple(line.split()) for line in path.read_text().splitlines() if line.strip()}
    todo, done = [], []
    for lesson in sorted(lessons.glob("[0-9][0-9]_*.ipynb")):
        (done if (lesson.stem, digest(lesson)) in ran else todo).append(lesson)
    return todo, done


def main() -> None:
    todo, done = left()
    if done:
        print(f"{len(done)} lesson(s) ran top to bottom in JupyterLab in the browser tests "
              f"above, exercises unfinished, without an error: {', '.join(p.stem for p in done)}"
              + ("" if todo else "; no lesson left for nbval-lax"), file=sys.stderr)
    for lesson in todo:
        print(lesson.relative_to(REPO))


if __name__ == "__main__":
    main()
