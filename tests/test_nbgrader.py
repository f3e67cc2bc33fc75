"""A real nbgrader round trip on a course lesson: generate_assignment from the solution,
a submission with exactly one exercise solved, autograde, and the gradebook's score.

The solutions carry nbgrader's metadata (schema 3, written by ppo_lib.course): solution
cells, and check("id", fn) test cells worth one point per exercise. Under autograde
(NBGRADER_EXECUTION set) a failed check raises AssertionError, so an unsolved exercise
scores 0 and a solved one its points. Lesson 04 (gae, bootstrap_truncated, value_loss) runs
in about 15 s.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_lib import course

nbgrader_api = pytest.importorskip("nbgrader.api", reason="nbgrader is in the test extras: "
                                   "pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]
LESSON = "04_advantages_and_the_update"
SOLVED = "gae"  # the one exercise the submission solves
ASSIGNMENT, STUDENT = "ps1", "student1"


def _cells_by_grade_id(nb: dict) -> dict:
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"]
            if "nbgrader" in c.get("metadata", {})}


def _solution_cell_of(solution: dict, exercise: str) -> dict:
    """The solution cell that defines the exercise's function."""
    (cell,) = [c for c in solution["cells"] if c["cell_type"] == "code"
               and c["metadata"].get("nbgrader", {}).get("solution")
               and f"def {exercise}(" in "".join(c["source"])]
    return cell


def _nbgrader(args, course_dir, env):
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_dir, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (f"nbgrader {' '.join(args)} failed ({result.returncode}):\n"
                                    f"{result.stdout}\n{result.stderr}")
    return result


@pytest.mark.notebooks
@pytest.mark.timeout(400)
def test_generate_assignment_and_autograde_score_one_solved_exercise(tmp_path):
    solution_path = ROOT / "solutions" / f"{LESSON}.ipynb"
    solution = json.loads(solution_path.read_text(encoding="utf-8"))
    exercises = [i for c in solution["cells"] if c["cell_type"] == "code"
                 for i in course.graded_ids("".join(c["source"]))]
    assert SOLVED in exercises and len(exercises) >= 2, exercises

    course_dir = tmp_path / "course"
    source = course_dir / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    shutil.copy2(solution_path, source / solution_path.name)
    (course_dir / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course_dir)!r}\n"
        "c.CourseDirectory.course_id = 'ppo-course'\n"
        "c.Execute.timeout = 120\n")
    # nothing from the user's Jupyter config or kernels; the venv's python3 kernel runs it
    env = {k: v for k, v in os.environ.items() if k not in ("NBGRADER_EXECUTION",)}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        env[name] = str(tmp_path / name.lower())
    # nbgrader's Gradebook runs the `alembic` command from PATH: the venv's bin first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    _nbgrader(["generate_assignment", ASSIGNMENT, "--force"], course_dir, env)
    release_path = course_dir / "release" / ASSIGNMENT / solution_path.name
    release_text = release_path.read_text(encoding="utf-8")
    release = json.loads(release_text)
    # the student's copy: no widget state, no outputs, no solutions, the lesson's stubs
    assert "widgets" not in release["metadata"]
    assert "widget-state" not in release_text
    assert "### BEGIN SOLUTION" not in release_text
    assert all(not c.get("outputs") for c in release["cells"] if c["cell_type"] == "code")
    lesson = json.loads((ROOT / "lessons" / solution_path.name).read_text(encoding="utf-8"))
    assert ["".join(c["source"]) for c in release["cells"]] == \
           ["".join(c["source"]) for c in lesson["cells"]], "release and lesson differ"

    # the submission: the release with exactly one exercise solved
    solved_cell = _solution_cell_of(solution, SOLVED)
    submission = json.loads(release_text)
    target = _cells_by_grade_id(submission)[solved_cell["metadata"]["nbgrader"]["grade_id"]]
    assert "raise NotImplementedError()" in "".join(target["source"])
    target["source"] = course.remove_markers("".join(solved_cell["source"]))
    submitted = course_dir / "submitted" / STUDENT / ASSIGNMENT
    submitted.mkdir(parents=True)
    (submitted / solution_path.name).write_text(json.dumps(submission, indent=1),
                                                encoding="utf-8")

    _nbgrader(["autograde", ASSIGNMENT, "--force"], course_dir, env)

    with nbgrader_api.Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gradebook:
        result = gradebook.find_submission(ASSIGNMENT, STUDENT)
        score, max_score = result.score, result.max_score
        notebook = gradebook.find_submission_notebook(LESSON, ASSIGNMENT, STUDENT)
        per_cell = {g.name: g.score for g in notebook.grades}
    check_cells = {cell["metadata"]["nbgrader"]["grade_id"]: course.graded_ids("".join(cell["source"]))
                   for cell in solution["cells"]
                   if cell["metadata"].get("nbgrader", {}).get("grade")}
    expected = {grade_id: float(ids == [SOLVED]) for grade_id, ids in check_cells.items()}
    assert max_score == len(exercises)
    assert per_cell == expected, per_cell
    assert score == 1.0, f"score {score} of {max_score}: only {SOLVED} was solved"

    # the unsolved exercises failed through check's AssertionError ("not done yet")
    graded = json.loads((course_dir / "autograded" / STUDENT / ASSIGNMENT / solution_path.name)
                        .read_text(encoding="utf-8"))
    for grade_id, cell in _cells_by_grade_id(graded).items():
        if cell["metadata"]["nbgrader"].get("grade") and expected.get(grade_id) == 0.0:
            errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
            assert errors and errors[0]["ename"] == "AssertionError", (grade_id, cell["outputs"])
