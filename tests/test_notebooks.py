"""Static checks of the course notebooks (fast; executing them is nbval's job).

- drift: every lesson equals ``python -m ppo_lib.course build`` of its solution;
- solutions were stored from one clean Run All (counts 1, 2, 3, ..., no error outputs);
- notebook conventions of CONTRIBUTING.md; every graded id is a registered exercise.

The notebooks themselves run under nbval in two more pytest invocations (see the Makefile):
    pytest --nbval solutions --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
    pytest --nbval-lax lessons --nbval-current-env
"""

import ast
import json
import re

import pytest

from ppo_lib import course
from ppo_lib.course import grading
from ppo_lib.course.source import private_part

SOLUTIONS = course.solution_paths()
IDS = [p.stem for p in SOLUTIONS]


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_solutions():
    assert SOLUTIONS, f"no solution notebooks in {course.SOLUTIONS_DIR}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_lesson_is_built_from_its_solution(solution):
    lesson = course.lesson_path(solution)
    assert lesson.exists(), f"{lesson.name} is missing: run `python -m ppo_lib.course build`"
    assert lesson.read_text(encoding="utf-8") == course.expected_lesson_text(solution), (
        f"lessons/{lesson.name} differs from the build of solutions/{solution.name}: edit the "
        "solution, never the lesson, then run `python -m ppo_lib.course build`")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_solution_carries_its_nbgrader_metadata(solution):
    assert solution not in course.solutions_without_metadata([str(solution)]), (
        f"solutions/{solution.name} lacks the nbgrader metadata the build gives it: run "
        "`python -m ppo_lib.course build`")


def test_no_lesson_without_a_solution():
    orphans = sorted(p.name for p in course.LESSONS_DIR.glob("*.ipynb")
                     if not (course.SOLUTIONS_DIR / p.name).exists())
    assert not orphans, f"lessons without a solution (the single source): {orphans}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_solution_outputs_come_from_one_clean_run(solution):
    nb = read(solution)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"execution counts {counts}: store outputs from a fresh Run All "
        f"(python -m ppo_lib.course execute solutions/{solution.name})")
    for cell in code:
        tags = cell.get("metadata", {}).get("tags", [])
        if "raises-exception" in tags or "NBVAL_RAISES_EXCEPTION" in source(cell):
            continue
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"a stored error output in cell {cell.get('id')}: {errors[0]['ename']}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_notebook_conventions(solution):
    nb = read(solution)
    lesson = solution.stem[:2]
    cells = nb["cells"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert cells[0]["cell_type"] == "markdown" and source(cells[0]).startswith("# "), \
        "the first cell is a markdown title"
    text = "\n".join(source(c) for c in cells if c["cell_type"] == "code")
    assert "%matplotlib inline" in text and "%matplotlib widget" not in text
    last_code = [c for c in cells if c["cell_type"] == "code"][-1]
    assert re.search(rf"""summary\(\s*["']{lesson}["']\s*\)""", source(last_code)), \
        f'the last code cell shows summary("{lesson}")'


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_graded_ids_are_registered(solution):
    grading.load_exercises()
    for cell in read(solution)["cells"]:
        if cell["cell_type"] == "code":
            for exercise_id in course.graded_ids(source(cell)):
                assert exercise_id in grading.EXERCISES, \
                    f"check({exercise_id!r}, ...) grades an id no module registers"


def shown_names(code):
    """The argument text of each ``show_source(...)`` call in a code cell (IPython lines
    such as ``%matplotlib inline`` skipped; comments and strings do not count)."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in code.splitlines())
    calls = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call)
             and (getattr(node.func, "id", None) == "show_source"
                  or getattr(node.func, "attr", None) == "show_source")]
    return [ast.unparse(arg) for call in calls for arg in call.args]


def test_shown_names_reads_the_calls():
    assert shown_names("from ppo_lib.course import show_source\n%time x = 1\n"
                       "show_source(ppo_lib.ppo.PPO._update)  # show_source(_x)\n"
                       "s = 'show_source(_y)'\ncourse.show_source(gae)") == \
        ["ppo_lib.ppo.PPO._update", "gae"]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=IDS)
def test_lessons_show_public_code_only(solution):
    """show_source refuses private code (ValueError); a lesson must not try to show it."""
    shown = [name for cell in read(solution)["cells"] if cell["cell_type"] == "code"
             for name in shown_names(source(cell))]
    private = [name for name in shown if private_part(name)]
    assert not private, (f"{solution.name} shows private code: {private} (lessons show "
                         "public code only: give it a public name)")
