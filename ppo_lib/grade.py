"""Grade learner notebooks headless: ``python -m ppo_lib.grade lessons/*.ipynb``.

Each notebook runs from scratch in a fresh kernel (nbclient), with its own folder as the
working directory and a time limit. Cells that raise do not stop the run (later exercises
are still graded, as nbgrader does); the errors are reported. Every ``check`` in the kernel
appends its verdict to a JSON-lines file named by ``PPO_GRADE_RESULTS`` (see
``ppo_lib.grading``); the last verdict of each exercise counts. The exercises of a notebook
are those its ``check("id", ...)`` cells grade; one that never ran (the notebook stopped
before it) counts as failed.

Prints a score table per notebook and exercise (``--json``: one JSON document). Exit code
0 only when every exercise of every notebook passed, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .course import graded_ids
from .grading import NBGRADER_ENV, NOT_DONE, RESULTS_ENV

DEFAULT_TIMEOUT = 600.0


@dataclass
class ExerciseResult:
    id: str
    passed: bool
    status: str        # "passed", "not done yet", "failed", "not run"
    message: str
    hint: str = ""


@dataclass
class NotebookResult:
    path: str
    status: str        # "ok", "timeout", "error" (could not run), "missing"
    seconds: float
    exercises: list[ExerciseResult] = field(default_factory=list)
    error: str = ""            # why the notebook could not run to its end
    cell_errors: list[str] = field(default_factory=list)  # cells that raised

    @property
    def score(self) -> int:
        return sum(e.passed for e in self.exercises)

    @property
    def passed(self) -> bool:
        return self.status == "ok" and all(e.passed for e in self.exercises)


def notebook_exercise_ids(nb: dict) -> list[str]:
    """The exercise ids graded by the notebook's check cells, in order, once each."""
    ids: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            for exercise_id in graded_ids("".join(src) if isinstance(src, list) else src):
                if exercise_id not in ids:
                    ids.append(exercise_id)
    return ids


def _read_verdicts(path: Path) -> dict[str, dict]:
    verdicts: dict[str, dict] = {}
    if not path.exists():
        return verdicts
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed kernel
        if isinstance(row, dict) and "id" in row:
            verdicts[row["id"]] = row  # the last verdict counts
    return verdicts


def _cell_errors(nb) -> list[str]:
    errors = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                errors.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return errors


def grade_notebook(path: str | Path, timeout: float = DEFAULT_TIMEOUT,
                   kernel_name: str = "python3") -> NotebookResult:
    """Execute one notebook and collect its exercises' verdicts. Never raises for a
    notebook that fails: the failure is in the result."""
    import nbclient
    import nbformat

    path = Path(path)
    started = time.monotonic()
    if not path.is_file():
        return NotebookResult(str(path), "missing", 0.0, error=f"no such notebook: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook
        return NotebookResult(str(path), "error", 0.0,
                              error=f"cannot read the notebook ({type(exc).__name__}: {exc})")
    ids = notebook_exercise_ids(nb)

    status, error = "ok", ""
    with tempfile.TemporaryDirectory(prefix="ppo-grade-") as tmp:
        results_file = Path(tmp) / "verdicts.jsonl"
        saved = {k: os.environ.get(k) for k in (RESULTS_ENV, NBGRADER_ENV)}
        os.environ[RESULTS_ENV] = str(results_file)
        os.environ.pop(NBGRADER_ENV, None)  # verdicts, not exceptions
        deadline = time.monotonic() + timeout

        def time_left(cell) -> int:  # the notebook's time limit, spent cell by cell
            return max(1, int(deadline - time.monotonic() + 0.999))

        client = nbclient.NotebookClient(
            nb, timeout_func=time_left, kernel_name=kernel_name, allow_errors=True,
            resources={"metadata": {"path": str(path.parent.resolve())}})
        try:
            client.execute()
        except nbclient.exceptions.CellTimeoutError:
            status, error = "timeout", f"stopped after {timeout:g} s (time limit)"
        except nbclient.exceptions.DeadKernelError as exc:
            status, error = "error", f"the kernel died ({exc})"
        except Exception as exc:  # e.g. no such kernel
            status, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        verdicts = _read_verdicts(results_file)

    exercises = []
    for exercise_id in ids or list(verdicts):
        row = verdicts.get(exercise_id)
        if row is None:
            exercises.append(ExerciseResult(exercise_id, False, "not run",
                                            "its check cell did not run"))
        else:
            exercises.append(ExerciseResult(
                exercise_id, bool(row.get("passed")),
                row.get("status") or ("passed" if row.get("passed") else "failed"),
                row.get("message", ""), row.get("hint", "")))
    return NotebookResult(str(path), status, round(time.monotonic() - started, 1),
                          exercises, error, _cell_errors(nb))


def format_table(results: list[NotebookResult]) -> str:
    lines = []
    width = max([24] + [len(e.id) for r in results for e in r.exercises])
    for r in results:
        head = f"{r.path}  ({r.seconds:.1f} s)"
        if r.status != "ok":
            head += f"  [{r.status.upper()}: {r.error}]"
        lines.append(head)
        if r.cell_errors:
            lines.append(f"  {len(r.cell_errors)} cell(s) raised an error; first: "
                         f"{r.cell_errors[0]}")
        for e in r.exercises:
            mark = "✓" if e.passed else "✗"
            message = "passed" if e.passed else e.message.splitlines()[0] if e.message else e.status
            if not e.passed and e.status == NOT_DONE:
                message = NOT_DONE
            lines.append(f"  {mark} {e.id:{width}s} {message}")
        if not r.exercises:
            lines.append("  (no graded exercises)")
        lines.append(f"  score {r.score}/{len(r.exercises)}")
    total = sum(len(r.exercises) for r in results)
    lines.append(f"total: {sum(r.score for r in results)}/{total} exercises passed "
                 f"in {len(results)} notebook(s)")
    return "\n".join(lines)


def to_json(results: list[NotebookResult]) -> dict:
    return {
        "notebooks": [dict(asdict(r), score=r.score, total=len(r.exercises), passed=r.passed)
                      for r in results],
        "score": sum(r.score for r in results),
        "total": sum(len(r.exercises) for r in results),
        "passed": all(r.passed for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppo_lib.grade", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="notebooks to grade, e.g. lessons/*.ipynb")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per notebook (default {DEFAULT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")

    missing = [n for n in args.notebooks if not Path(n).is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = []
    for name in args.notebooks:
        if not args.json:
            print(f"grading {name} ...", file=sys.stderr, flush=True)
        results.append(grade_notebook(name, timeout=args.timeout))
    if args.json:
        print(json.dumps(to_json(results), indent=2, ensure_ascii=False))
    else:
        print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
