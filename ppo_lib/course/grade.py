"""Grade learner notebooks headless: ``python -m ppo_lib.grade lessons/*.ipynb``.

Each notebook runs from scratch in a fresh kernel (``ppo_lib.course.execution``: nbclient without
its widget stall), with its own folder as the working directory. Time limits: ``--timeout``
seconds for the whole notebook and ``--cell-timeout`` seconds per cell (each cell gets the
smaller of that and what remains); a cell past its limit is interrupted and the next cells
still run, so one slow cell does not cost the later exercises. Cells that raise do not stop
the run either (as nbgrader); their errors are reported.

Where the verdicts come from. The learner's ``check`` cells show verdicts for the learner;
the grader does not read them (nor any file the notebook could write). After the notebook
has run, the grader sends one more piece of code of its own (not a cell of the notebook)
to the same kernel. It loads a *fresh copy* of ``ppo_lib`` from its files under a
package name containing a per-run random nonce (so a learner's patch of ``ppo_lib.course.grading``,
of its registered exercises or of the reference functions in ``sys.modules`` is not used),
checks, for every exercise of the notebook, the answer the notebook defines under the name
its check cell passes (else the exercise id), and hands the verdicts back as a
``user_expression`` of that execute request: in the *shell* reply, not in any printed
output, tagged with the nonce. A line a cell printed, a call to ``grading.report``, a
patched ``check`` or a line appended to ``PPO_GRADE_RESULTS`` does not count. An answer
that is ppo_lib's own function (``gae = ppo_lib.returns.gae``) fails: the answer must be
defined in the notebook.

The exercises of a notebook are those its ``check("id", ...)`` cells call (code only: a
commented ``# check(...)`` does not count) plus, for a course lesson (a file named like a
solution in ``solutions/``), every exercise that solution checks, so deleting a check cell
does not remove an exercise. One that cannot be graded (the notebook stopped before its
function was defined) counts as "not run".

What a determined learner can still do. The grader checks what an answer computes, not
who wrote it: ``def gae(*args): return ppo_lib.returns.gae(*args)`` passes (so does a copy
of the library's source). And the grading runs in the learner's kernel, so code the
notebook left behind runs with it: it can patch what the fresh copy imports (torch, numpy,
builtins, ``importlib`` itself; e.g. make ``torch.isclose`` always true, or make the
loader return a doctored ``grading``), replace the kernel's ``user_expressions`` or
display-formatting machinery, or have the answer, when the grader calls it, walk the stack
to the nonce and the fresh module and rewrite the verdicts. Nothing in-process can stop
that; grading the answer's source in a separate, clean process would. The grader raises
the bar from "print or append a line" to "patch the interpreter".

Prints a score table per notebook and exercise (``--json``: one JSON document, always,
missing notebooks included). Exit code 0 only when every exercise of every notebook passed,
1 otherwise, 2 for bad arguments or a missing notebook (the others are still graded), and
128 + the signal number when stopped by SIGINT/SIGTERM: the kernel is killed and what was
graded so far is reported.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import lessons
from .grading import NBGRADER_ENV, NOT_DONE, RESULTS_ENV

DEFAULT_TIMEOUT = 600.0
DEFAULT_CELL_TIMEOUT = 300.0
NOT_RUN = "not run"
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # ppo_lib/


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
    status: str        # "ok", "timeout", "error" (could not run), "missing", "interrupted"
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


def _cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def notebook_exercise_ids(nb: dict) -> list[str]:
    """The exercise ids graded by the notebook's check cells, in order, once each."""
    return list(notebook_answers(nb))


def notebook_answers(nb: dict) -> dict[str, str]:
    """``{exercise_id: name}``: the name of the answer each check cell passes (the first
    check of an id counts; the id itself when the answer is not a plain name)."""
    answers: dict[str, str] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            for exercise_id, name in lessons.check_calls(_cell_source(cell)):
                answers.setdefault(exercise_id, name or exercise_id)
    return answers


def expected_answers(nb: dict, path: Path) -> dict[str, str]:
    """The notebook's exercises, plus those of the course solution it is a lesson of."""
    answers = notebook_answers(nb)
    solution = lessons.SOLUTIONS_DIR / path.name
    try:
        if solution.is_file() and solution.resolve() != path.resolve():
            reference = json.loads(solution.read_text(encoding="utf-8"))
            expected = {i: i for c in reference.get("cells", []) if c.get("cell_type") == "code"
                        for i in lessons.graded_ids(_cell_source(c))}
            answers = {i: answers.get(i, i) for i in expected} | answers
    except (OSError, ValueError):
        pass
    return answers


# The grader's own code, run in the notebook's kernel after the notebook (not a cell).
# Placeholders: NONCE (hex), ANSWERS (JSON list of [id, name]), PACKAGE (path literal).
_GRADING_CODE = r'''
def _ppo_grade_NONCE(answers, nonce, package_dir):
    import importlib
    import importlib.util
    import json
    import os
    import sys

    namespace = globals()  # the notebook's namespace
    name = "_ppo_lib_grader_" + nonce
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(package_dir, "__init__.py"), submodule_search_locations=[package_dir])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    grading = importlib.import_module(name + ".course.grading")
    os.environ.pop(grading.NBGRADER_ENV, None)
    os.environ.pop(grading.RESULTS_ENV, None)
    grading.load_exercises()
    root = os.path.realpath(package_dir) + os.sep

    def library_function(answer):
        code = getattr(answer, "__code__", None)
        if code is not None:
            return os.path.realpath(code.co_filename).startswith(root)
        module = getattr(answer, "__module__", None) or ""
        return module == "ppo_lib" or module.startswith(("ppo_lib.", "_ppo_lib_grader_"))

    import builtins

    constants = {"None": None, "True": True, "False": False}
    verdicts = []
    for exercise_id, answer_name in answers:
        if answer_name in constants:
            answer = constants[answer_name]
        elif answer_name in namespace:
            answer = namespace[answer_name]
        elif hasattr(builtins, answer_name):
            answer = getattr(builtins, answer_name)
        else:
            verdicts.append([exercise_id, False, "not run",
                             f"not graded: the notebook defines no {answer_name!r} "
                             f"(its cell did not run)", ""])
            continue
        exercise = grading.EXERCISES.get(exercise_id)
        if exercise is not None and exercise.kind == "function" and library_function(answer):
            verdicts.append([exercise_id, False, "failed",
                             f"{answer_name} is ppo_lib's own function, not one defined in "
                             f"the notebook", "write the function in its exercise cell"])
            continue
        try:
            verdict = grading.check(exercise_id, answer, show=False).verdict
            verdicts.append([exercise_id, bool(verdict.passed), verdict.status,
                             str(verdict.message), str(verdict.hint)])
        except BaseException as exc:  # noqa: BLE001  (the answer may raise anything)
            verdicts.append([exercise_id, False, "failed",
                             f"the check raised {type(exc).__name__}", ""])
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]
    return json.dumps({"nonce": nonce, "verdicts": verdicts})


_ppo_grade_result_NONCE = _ppo_grade_NONCE(ANSWERS, "NONCE", PACKAGE)
'''


def grading_code(answers: dict[str, str], nonce: str) -> tuple[str, str]:
    """The code the grader runs after the notebook, and the name of its result."""
    code = (_GRADING_CODE.replace("ANSWERS", repr([[i, n] for i, n in answers.items()]))
            .replace("PACKAGE", repr(str(PACKAGE_DIR))).replace("NONCE", nonce))
    return code, f"_ppo_grade_result_{nonce}"


def _parse_verdicts(reply: dict | None, nonce: str) -> tuple[dict[str, list], str]:
    """The verdicts in the grading code's reply, or ({}, why there are none)."""
    if reply is None:
        return {}, "the grader's check did not finish (the kernel did not answer in time)"
    if reply.get("status") != "ok":
        return {}, f"the grader's check failed ({reply.get('ename')}: {reply.get('evalue')})"
    expression = next(iter((reply.get("user_expressions") or {}).values()), {})
    try:
        text = expression["data"]["text/plain"]
        document = json.loads(ast.literal_eval(text))
    except (KeyError, TypeError, ValueError, SyntaxError):
        return {}, f"the grader's check returned no verdicts ({expression.get('evalue', '')})"
    if not isinstance(document, dict) or document.get("nonce") != nonce:
        return {}, "the grader's check returned verdicts from another run"
    return {row[0]: row for row in document.get("verdicts", []) if isinstance(row, list)}, ""


def _cell_errors(nb, timed_out: list[int]) -> list[str]:
    errors = [f"cell {i}: CellTimeoutError: past its time limit, interrupted" for i in timed_out]
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                errors.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    return errors


def grade_notebook(path: str | Path, timeout: float = DEFAULT_TIMEOUT,
                   kernel_name: str = "python3", cell_timeout: float = DEFAULT_CELL_TIMEOUT,
                   handle_signals: bool = False) -> NotebookResult:
    """Execute one notebook and grade its exercises. Never raises for a notebook that
    fails: the failure is in the result. With ``handle_signals`` (main thread), SIGINT and
    SIGTERM stop it with status "interrupted" (the kernel is killed)."""
    import nbformat

    from .execution import run_notebook

    path = Path(path)
    started = time.monotonic()
    if not path.is_file():
        return NotebookResult(str(path), "missing", 0.0, error=f"no such notebook: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook
        return NotebookResult(str(path), "error", 0.0,
                              error=f"cannot read the notebook ({type(exc).__name__}: {exc})")
    answers = expected_answers(nb, path)
    nonce = secrets.token_hex(16)
    code, result_name = grading_code(answers, nonce)
    # the kernel gets no grader settings: verdicts are exceptions under nbgrader, and no
    # results file exists for the learner's code to append to
    env = {k: v for k, v in os.environ.items() if k not in (NBGRADER_ENV, RESULTS_ENV)}
    run = run_notebook(
        nb, str(path.parent.resolve()), cell_timeout=min(cell_timeout, timeout),
        total_timeout=timeout, kernel_name=kernel_name, allow_errors=True,
        interrupt_on_timeout=True, final_code=code if answers else None,
        final_expressions={"verdicts": result_name},
        final_timeout=30 + 15 * len(answers), handle_signals=handle_signals, env=env)

    verdicts, why = (_parse_verdicts(run.final_reply, nonce) if answers else ({}, ""))
    if run.status == "interrupted":
        why = f"not graded: {run.error}"
    exercises = []
    for exercise_id in answers:
        row = verdicts.get(exercise_id)
        if row is None or len(row) < 5:
            exercises.append(ExerciseResult(exercise_id, False, NOT_RUN, why or "not graded"))
        else:
            _, passed, status, message, hint = row[:5]
            exercises.append(ExerciseResult(exercise_id, passed is True, str(status),
                                            str(message), str(hint)))
    return NotebookResult(str(path), run.status, round(time.monotonic() - started, 1),
                          exercises, run.error, _cell_errors(nb, run.timed_out_cells))


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


def to_json(results: list[NotebookResult], interrupted: str = "") -> dict:
    document = {
        "notebooks": [dict(asdict(r), score=r.score, total=len(r.exercises), passed=r.passed)
                      for r in results],
        "score": sum(r.score for r in results),
        "total": sum(len(r.exercises) for r in results),
        "passed": bool(results) and all(r.passed for r in results) and not interrupted,
    }
    if interrupted:
        document["interrupted"] = interrupted
    return document


def _seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive, finite number of seconds, got {text!r}")
    return value


class _Stopped(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppo_lib.grade", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="notebooks to grade, e.g. lessons/*.ipynb")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
                        help=f"seconds per notebook (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--cell-timeout", type=_seconds, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds per cell (default {DEFAULT_CELL_TIMEOUT:g}); a cell past "
                             f"it is interrupted and the next cells run")
    args = parser.parse_args(argv)

    results: list[NotebookResult] = []
    stopped: int | None = None
    in_main = threading.current_thread() is threading.main_thread()

    def on_signal(signum, frame):  # between notebooks; during one, run_notebook handles it
        raise _Stopped(signum)

    previous = {}
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        for name in args.notebooks:
            if not args.json:
                print(f"grading {name} ...", file=sys.stderr, flush=True)
            result = grade_notebook(name, timeout=args.timeout, cell_timeout=args.cell_timeout,
                                    handle_signals=in_main)
            results.append(result)
            if result.status == "missing":
                print(f"error: no such notebook: {name}", file=sys.stderr, flush=True)
            if result.status == "interrupted":
                stopped = signal.SIGTERM if "SIGTERM" in result.error else signal.SIGINT
                break
    except _Stopped as stop:
        stopped = stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    why = ""
    if stopped is not None:
        why = (f"stopped by {signal.Signals(stopped).name} after {len(results)} of "
               f"{len(args.notebooks)} notebook(s)")
        print(f"{why}: the report covers what was graded so far", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(to_json(results, why), indent=2, ensure_ascii=False), flush=True)
    else:
        print(format_table(results) + (f"\n{why}" if why else ""), flush=True)
    if stopped is not None:
        return 128 + int(stopped)
    if any(r.status == "missing" for r in results):
        return 2
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
