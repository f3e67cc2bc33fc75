"""Lessons from solutions: ``solutions/NN_topic.ipynb`` is the single source of lesson NN.
``build`` writes ``lessons/NN_topic.ipynb`` from it: every ``### BEGIN SOLUTION`` ...
``### END SOLUTION`` block becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError()``
(in markdown cells: ``YOUR ANSWER HERE``), outputs and execution counts are cleared, and
nbgrader's cell metadata (schema version 3) marks solution cells and the ``check("id", fn)``
test cells. The build is deterministic (same bytes every time) and idempotent. ``execute``
stores a solution's outputs."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # ppo_lib/
ROOT = PACKAGE_DIR.parent
SOLUTIONS_DIR = ROOT / "solutions"
LESSONS_DIR = ROOT / "lessons"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = "YOUR ANSWER HERE"
NBGRADER_SCHEMA_VERSION = 3
# Notebook-level widget state ("application/vnd.jupyter.widget-state+json") that Jupyter and
# nbclient store after running widgets; neither solutions nor lessons keep it.
WIDGET_STATE_KEY = "widgets"
# A graded test cell is a code cell that calls check("exercise_id", ...).
CHECK_CALL = re.compile(r"""(?:^|[^\w.])(?:grading\.)?check\(\s*["']([\w.-]+)["']""", re.M)


def _lines(source: str | list[str]) -> list[str]:
    text = "".join(source) if isinstance(source, list) else source
    return text.split("\n")


def strip_solutions(source: str, cell_type: str = "code") -> str:
    """Replace every BEGIN/END SOLUTION block of ``source`` with the stub, at the block's
    indentation (nbgrader's convention). Raises ValueError on unbalanced markers."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(_lines(source), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if cell_type == "code":
                out.extend(indent + stub for stub in CODE_STUB)
            else:
                out.append(indent + MARKDOWN_STUB)
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def remove_markers(source: str) -> str:
    """The solution's text without the marker lines (what runs in the solution)."""
    return "\n".join(line for line in _lines(source)
                     if not line.strip().startswith((BEGIN, END)))


def _has_solution(source: str) -> bool:
    return any(line.strip().startswith(BEGIN) for line in _lines(source))


def graded_ids(source: str) -> list[str]:
    """Exercise ids of the ``check("id", fn)`` calls in a cell's source (code only: a call
    in a comment or a string, ``# check("gae", gae)``, is not an exercise)."""
    return [exercise_id for exercise_id, _ in check_calls(source)]


def check_calls(source: str | list[str]) -> list[tuple[str, str | None]]:
    """``(exercise_id, answer_name)`` of each ``check("id", answer)`` or
    ``grading.check(...)`` call in a cell's source, read with Python's tokenizer so that
    comments and strings do not count; ``answer_name`` is the answer when it is a plain name,
    else None. IPython syntax (``%magic``, ``!cmd``) does not stop the scan."""
    import ast
    import io
    import tokenize

    text = "".join(source) if isinstance(source, list) else source
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER}
    toks: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in skip:
                toks.append(tok)
    except (tokenize.TokenError, SyntaxError):  # unfinished code: keep what was read
        pass

    def is_op(i: int, op: str) -> bool:
        return 0 <= i < len(toks) and toks[i].type == tokenize.OP and toks[i].string == op

    calls = []
    for i, tok in enumerate(toks):
        if tok.type != tokenize.NAME or tok.string != "check" or not is_op(i + 1, "(") \
                or i + 2 >= len(toks) or toks[i + 2].type != tokenize.STRING:
            continue
        if i > 0 and toks[i - 1].type == tokenize.NAME and toks[i - 1].string == "def":
            continue
        if is_op(i - 1, "."):  # only grading.check, not obj.check or x.grading.check
            if not (i >= 2 and toks[i - 2].string == "grading" and not is_op(i - 3, ".")):
                continue
        try:
            exercise_id = ast.literal_eval(toks[i + 2].string)
        except (ValueError, SyntaxError):  # an f-string or bytes: not a fixed id
            continue
        if not isinstance(exercise_id, str) or not re.fullmatch(r"[\w.-]+", exercise_id):
            continue
        name = None
        if is_op(i + 3, ",") and i + 4 < len(toks) and toks[i + 4].type == tokenize.NAME \
                and (is_op(i + 5, ")") or is_op(i + 5, ",")):
            name = toks[i + 4].string
        calls.append((exercise_id, name))
    return calls


def _cell_id(notebook_stem: str, index: int, cell: dict) -> str:
    """A stable nbformat 4.5 cell id: the solution's own id if valid, else derived."""
    cell_id = cell.get("id")
    if isinstance(cell_id, str) and re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cell_id):
        return cell_id
    digest = hashlib.sha1(f"{notebook_stem}:{index}".encode()).hexdigest()
    return digest[:12]


def _nbgrader_metadata(stem: str, index: int, cell: dict) -> dict | None:
    """nbgrader (schema v3) metadata for a solution or autograded test cell, else None."""
    source = "".join(cell.get("source", ""))
    if cell["cell_type"] == "code" and graded_ids(source):
        ids = graded_ids(source)
        return {"grade": True, "grade_id": _grade_id(f"check_{'_'.join(ids)}"), "locked": True,
                "points": len(ids), "schema_version": NBGRADER_SCHEMA_VERSION,
                "solution": False, "task": False}
    if _has_solution(source) and cell["cell_type"] == "markdown":
        # nbgrader's "manually graded answer": markdown solutions must be graded cells
        return {"grade": True, "grade_id": _grade_id(f"answer_{stem}_{index:02d}"),
                "locked": False, "points": 1, "schema_version": NBGRADER_SCHEMA_VERSION,
                "solution": True, "task": False}
    if _has_solution(source):
        return {"grade": False, "grade_id": _grade_id(f"cell_{stem}_{index:02d}"),
                "locked": False, "schema_version": NBGRADER_SCHEMA_VERSION, "solution": True,
                "task": False}
    return None


def _grade_id(text: str) -> str:
    """nbgrader grade ids allow letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _with_unique_grade_ids(cells: list[dict]) -> None:
    seen: dict[str, int] = {}
    for cell in cells:
        meta = cell["metadata"].get("nbgrader")
        if not meta:
            continue
        base = meta["grade_id"]
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            meta["grade_id"] = f"{base}_{seen[base]}"


def _clean_metadata(metadata: dict) -> dict:
    """Cell metadata without execution timings and collapsed/scroll state."""
    return {k: v for k, v in metadata.items() if k not in ("execution", "collapsed",
                                                            "scrolled", "ExecuteTime")}


def solution_metadata(nb: dict, stem: str) -> dict:
    """``nb`` with nbgrader metadata and stable ids set on its cells (solutions keep them),
    and without stored widget state: ``metadata.widgets`` (hundreds of KB of slider models)
    would otherwise be copied by ``nbgrader generate_assignment`` into the student release."""
    nb = copy.deepcopy(nb)
    nb["nbformat"], nb["nbformat_minor"] = 4, max(5, nb.get("nbformat_minor", 5))  # cell ids
    nb.setdefault("metadata", {}).pop(WIDGET_STATE_KEY, None)
    for index, cell in enumerate(nb["cells"]):
        cell["id"] = _cell_id(stem, index, cell)
        meta = cell.setdefault("metadata", {})
        meta.pop("nbgrader", None)
        grader = _nbgrader_metadata(stem, index, cell)
        if grader:
            meta["nbgrader"] = grader
    _with_unique_grade_ids(nb["cells"])
    return nb


def build_lesson(solution: dict, stem: str) -> dict:
    """The lesson notebook (a dict in nbformat 4.5) built from a solution notebook."""
    nb = solution_metadata(solution, stem)
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        if _has_solution(source):
            source = strip_solutions(source, cell["cell_type"])
        cell["source"] = source
        cell["metadata"] = _clean_metadata(cell.get("metadata", {}))
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        if not cell.get("attachments"):
            cell.pop("attachments", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, 5
    metadata = nb.setdefault("metadata", {})
    metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                              "name": "python3"}
    metadata.pop(WIDGET_STATE_KEY, None)  # solution_metadata removed it already
    return nb


def dumps(nb: dict) -> str:
    """Deterministic text in Jupyter's own format (sorted keys, one-space indent, sources
    split into lines, final newline), so saving in JupyterLab changes nothing."""
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb), version=4) + "\n"


def read_notebook(path: Path) -> dict:
    """A notebook file as a plain dict (JSON)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def solution_paths(names: list[str] | None = None) -> list[Path]:
    """Solution notebooks: the given ones (paths or bare names), else all of solutions/."""
    if not names:
        return sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
    paths = []
    for name in names:
        path = Path(name)
        if not path.exists():
            path = SOLUTIONS_DIR / Path(name).name
        if not path.exists():
            raise FileNotFoundError(f"no solution notebook {name!r} (looked in {SOLUTIONS_DIR})")
        paths.append(path.resolve())
    return paths


def lesson_path(solution_path: Path) -> Path:
    return LESSONS_DIR / solution_path.name


def expected_lesson_text(solution_path: Path) -> str:
    """What ``build`` writes for this solution (the drift test compares with it)."""
    return dumps(build_lesson(read_notebook(solution_path), solution_path.stem))


def stale_lessons(names: list[str] | None = None) -> list[Path]:
    """Lessons that are missing or differ from what ``build`` makes of their solution."""
    stale = []
    for solution in solution_paths(names):
        lesson = lesson_path(solution)
        if not lesson.exists() or lesson.read_text(encoding="utf-8") != expected_lesson_text(solution):
            stale.append(lesson)
    return stale


def solutions_without_metadata(names: list[str] | None = None) -> list[Path]:
    """Solutions whose nbgrader metadata or cell ids are not what ``build`` gives them
    (nbgrader's ``generate_assignment`` needs that metadata on the solutions), or that
    store widget state (``generate_assignment`` would copy it into the release)."""
    return [path for path in solution_paths(names)
            if solution_metadata(read_notebook(path), path.stem) != read_notebook(path)]


def update_solution_metadata(path: Path) -> bool:
    """Give a solution its nbgrader metadata and stable cell ids and drop its stored widget
    state, in place (outputs kept). Returns True when the file changed."""
    nb = read_notebook(path)
    updated = solution_metadata(nb, path.stem)
    if updated == nb:
        return False
    path.write_text(dumps(updated), encoding="utf-8")
    return True


def build(names: list[str] | None = None, lessons_dir: Path | None = None) -> list[Path]:
    """Write the lessons of the given solutions (all by default); return the paths written.
    Solutions get their nbgrader metadata too and lose stored widget state (in place,
    outputs kept). A file already up to date is not rewritten (its mtime stays)."""
    out_dir = Path(lessons_dir) if lessons_dir else LESSONS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for solution in solution_paths(names):
        update_solution_metadata(solution)
        text = expected_lesson_text(solution)
        target = out_dir / solution.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------
# execute: store a solution's outputs


def execute(path: str | Path, timeout: float = 600, kernel_name: str = "python3") -> None:
    """Execute a notebook in place (``ppo_lib.course.execution``: nbclient without its widget
    stall): fresh kernel, cwd = its folder, ``timeout`` seconds per cell. A cell that
    raises or runs past its limit raises here (nbclient's exception) and nothing is written.

    Solutions also get their nbgrader metadata and stable cell ids, so that the stored
    file is what ``build`` reads."""
    import nbformat

    from .execution import run_notebook

    path = Path(path).resolve()
    nb = nbformat.reads(json.dumps(solution_metadata(read_notebook(path), path.stem)), as_version=4)
    run = run_notebook(nb, str(path.parent), cell_timeout=timeout, kernel_name=kernel_name,
                       # nbclient's Output-widget hook needs the state while it runs
                       # (with False it fails with a KeyError); solutions keep none of it:
                       store_widget_state=True,
                       handle_signals=True)
    if run.status == "interrupted":
        raise KeyboardInterrupt(run.error)
    if run.exception is not None:
        raise run.exception
    if run.status != "ok":
        raise RuntimeError(f"{path.name}: {run.error}")
    data = json.loads(nbformat.writes(nb))
    data.get("metadata", {}).pop(WIDGET_STATE_KEY, None)
    for cell in data["cells"]:
        cell["metadata"] = _clean_metadata(cell.get("metadata", {}))
    path.write_text(dumps(data), encoding="utf-8")
