"""Each lesson runs once as a lesson in `make test`: in JupyterLab by the browser tests, or
under nbval-lax for those the browser tests did not run (tests/browser/ran_in_browser.py)."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ran_in_browser",
                                              REPO / "tests" / "browser" / "ran_in_browser.py")
ran_in_browser = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ran_in_browser)


def lessons_copy(tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    for path in sorted((REPO / "lessons").glob("[0-9][0-9]_*.ipynb"))[:3]:
        shutil.copy(path, lessons)
    return lessons, sorted(lessons.glob("*.ipynb"))


def test_without_a_record_every_lesson_is_left(tmp_path):
    lessons, paths = lessons_copy(tmp_path)
    assert ran_in_browser.left(lessons, tmp_path / "none.txt") == (paths, [])


def test_a_lesson_recorded_as_it_is_now_is_not_run_again(tmp_path):
    lessons, (first, second, third) = lessons_copy(tmp_path)
    record = tmp_path / "record.txt"
    ran_in_browser.record(first.stem, ran_in_browser.digest(first), record)
    ran_in_browser.record(third.stem, ran_in_browser.digest(third), record)
    assert ran_in_browser.left(lessons, record) == ([second], [first, third])


def test_a_lesson_changed_since_it_ran_is_run_again(tmp_path):
    lessons, (first, second, third) = lessons_copy(tmp_path)
    record = tmp_path / "record.txt"
    for path in (first, second, third):
        ran_in_browser.record(path.stem, ran_in_browser.digest(path), record)
    assert ran_in_browser.left(lessons, record) == ([], [first, second, third])
    second.write_bytes(second.read_bytes().replace(b'"cells"', b'"cells" ', 1))
    assert ran_in_browser.left(lessons, record) == ([second], [first, third])


def test_make_test_empties_the_record_first_and_runs_what_is_left_under_nbval_lax():
    steps = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    record = str(ran_in_browser.RECORD.relative_to(REPO))
    assert steps.index(f"rm -f {record}") < steps.index("pytest tests")
    assert steps.index("pytest tests") < steps.index("tests/browser/ran_in_browser.py")
    assert "--nbval-lax $left" in steps
