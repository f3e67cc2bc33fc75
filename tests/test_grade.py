"""python -m ppo_lib.grade: solutions score full marks, fresh lessons zero, a lesson with
one exercise done scores exactly that one, failures are reported, never crash; missing
notebooks among several, refused time limits, SIGINT/SIGTERM with a partial report, and
verdicts that the notebook's own code cannot forge."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ppo_lib import course
from ppo_lib.course.grade import grade_notebook, main, notebook_exercise_ids

pytestmark = pytest.mark.notebooks

SETUP = "import torch\nfrom ppo_lib.course.grading import check, summary"
DISCOUNTED = '''def discounted_returns(rewards, dones, gamma, last_values=None):
    ### BEGIN SOLUTION
    out = torch.zeros_like(rewards)
    g = torch.zeros_like(rewards[0]) if last_values is None else last_values
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * (1 - dones[t]) * g
        out[t] = g
    return out
    ### END SOLUTION'''
APPROX_KL = '''def approx_kl(log_ratio):
    ### BEGIN SOLUTION
    return ((log_ratio.exp() - 1) - log_ratio).mean()
    ### END SOLUTION'''


def write(path, *cells):
    nb = new_notebook(cells=[new_markdown_cell("# synthetic")] + [new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_solution_00_scores_full_marks(capsys):
    assert main([str(course.SOLUTIONS_DIR / "00_welcome.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "✓ discounted_returns" in out and "score 1/1" in out


def test_fresh_lesson_00_scores_zero_not_done_yet(capsys):
    assert main([str(course.LESSONS_DIR / "00_welcome.ipynb"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (nb,) = report["notebooks"]
    assert (report["score"], report["total"], nb["status"]) == (0, 1, "ok")
    assert nb["exercises"][0]["status"] == "not done yet"


def test_exactly_the_filled_exercise_scores(tmp_path):
    solution = write(tmp_path / "solution.ipynb", SETUP, DISCOUNTED,
                     'check("discounted_returns", discounted_returns)', APPROX_KL,
                     'check("approx_kl", approx_kl)', 'summary("00")')
    lesson = course.build_lesson(json.loads(solution.read_text()), "solution")
    lesson["cells"][2]["source"] = course.remove_markers(DISCOUNTED)  # the learner did this one
    path = tmp_path / "lesson.ipynb"
    path.write_text(course.dumps(lesson))
    result = grade_notebook(path, timeout=120)
    assert result.status == "ok"
    assert [(e.id, e.passed, e.status) for e in result.exercises] == [
        ("discounted_returns", True, "passed"), ("approx_kl", False, "not done yet")]


def test_errors_are_reported_and_later_exercises_still_graded(tmp_path, capsys):
    approx_kl = course.remove_markers(APPROX_KL)
    broken = write(tmp_path / "broken.ipynb", SETUP, "1 / 0", approx_kl,
                   'check("approx_kl", approx_kl)', 'check("gae", None)')
    assert main([str(broken), "--json"]) == 1
    (b,) = json.loads(capsys.readouterr().out)["notebooks"]
    assert b["status"] == "ok" and "ZeroDivisionError" in b["cell_errors"][0]
    assert [(e["id"], e["status"]) for e in b["exercises"]] == [("approx_kl", "passed"),
                                                                ("gae", "failed")]


def test_time_limit_is_reported_not_raised(tmp_path, capsys):
    slow = write(tmp_path / "slow.ipynb", "import time\ntime.sleep(120)",
                 'from ppo_lib.course.grading import check\ncheck("approx_kl", None)')
    assert main([str(slow), "--timeout", "4"]) == 1
    out = capsys.readouterr().out
    assert "[TIMEOUT: stopped after 4 s" in out and "✗ approx_kl" in out and "score 0/1" in out


def test_missing_notebook_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_exercise_ids_found_in_check_cells():
    nb = {"cells": [{"cell_type": "code", "source": 'check("gae", gae)\ngrading.check("kl_categorical", f)'},
                    {"cell_type": "markdown", "source": 'check("not_code", f)'},
                    {"cell_type": "code", "source": ['check(\n  "gae", gae)']}]}
    assert notebook_exercise_ids(nb) == ["gae", "kl_categorical"]


# --- several notebooks, bad arguments, signals ----------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
APPROX_KL_DONE = course.remove_markers(APPROX_KL)


def test_missing_notebook_among_several_still_grades_the_others(tmp_path, capsys):
    good = write(tmp_path / "good.ipynb", SETUP, APPROX_KL_DONE, 'check("approx_kl", approx_kl)')
    missing = tmp_path / "nope.ipynb"
    assert main([str(missing), str(good)]) == 2
    captured = capsys.readouterr()
    assert "no such notebook" in captured.err
    assert "[MISSING: no such notebook" in captured.out and "✓ approx_kl" in captured.out
    assert "total: 1/1 exercises passed in 2 notebook(s)" in captured.out

    assert main([str(good), str(missing), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [(n["path"], n["status"]) for n in report["notebooks"]] == [
        (str(good), "ok"), (str(missing), "missing")]
    assert (report["score"], report["total"], report["passed"]) == (1, 1, False)


@pytest.mark.parametrize("option, value", [("--timeout", "nan"), ("--timeout", "inf"),
                                           ("--timeout", "-inf"), ("--timeout", "0"),
                                           ("--cell-timeout", "nan"), ("--cell-timeout", "inf")])
def test_non_finite_or_non_positive_time_limits_are_refused(option, value, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "any.ipynb"), f"{option}={value}"])  # "-inf" is no option
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and value in err and "finite" in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_cleanly_with_the_report_so_far_and_kills_the_kernel(tmp_path, signum):
    quick = write(tmp_path / "quick.ipynb", SETUP, APPROX_KL_DONE, 'check("approx_kl", approx_kl)')
    pid_file = tmp_path / "kernel.pid"
    slow = write(tmp_path / "slow.ipynb",
                 f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
                 "time.sleep(300)", 'from ppo_lib.course.grading import check\ncheck("approx_kl", None)')
    grader = subprocess.Popen([sys.executable, "-m", "ppo_lib.grade", str(quick), str(slow),
                               str(quick)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert grader.poll() is None, grader.communicate()
            time.sleep(0.2)
        kernel_pid = int(pid_file.read_text())
        time.sleep(1.0)  # the slow cell is running
        grader.send_signal(signum)
        out, err = grader.communicate(timeout=60)
    finally:
        if grader.poll() is None:
            grader.kill()
    assert grader.returncode == 128 + signum, (out, err)
    name = signal.Signals(signum).name
    assert f"stopped by {name} after 2 of 3 notebook(s)" in out
    assert out.count("quick.ipynb") == 1 and "score 1/1" in out       # graded before
    assert "slow.ipynb" in out and f"[INTERRUPTED: stopped by {name}]" in out
    assert "Traceback" not in err
    for _ in range(50):  # the kernel was killed
        try:
            os.kill(kernel_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"kernel {kernel_pid} still runs after the grader stopped")


# --- what counts as an exercise, and where verdicts come from -------------------------------

def test_commented_check_is_not_an_exercise(tmp_path):
    nb = write(tmp_path / "commented.ipynb", SETUP, APPROX_KL_DONE,
               '# check("gae", gae)\ncheck("approx_kl", approx_kl)  # check("value_loss", f)',
               's = \'check("kl_categorical", f)\'')
    assert notebook_exercise_ids(nbformat.read(nb, as_version=4)) == ["approx_kl"]
    result = grade_notebook(nb, timeout=120)
    assert [(e.id, e.passed) for e in result.exercises] == [("approx_kl", True)]


FORGERIES = '''import json, os
from ppo_lib.course import grading
grading.load_exercises()
# 1. lines in the results file the grader used to read (and in any file named like it)
for path in (os.environ.get(grading.RESULTS_ENV), {forged_file!r}):
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({{"id": "approx_kl", "passed": True, "status": "passed",
                                "message": "passed", "hint": ""}}) + "\\n")
# 2. a forged report
grading.report(grading.Verdict("approx_kl", True, "passed"))
# 3. the grading module patched to pass anything, 4. a printed verdict
grading.check = lambda exercise_id, fn: grading.CheckResult(
    grading.Verdict(exercise_id, True, "passed"))
grading.compare = lambda *args, **kwargs: None
from ppo_lib.course import running
running.compare = lambda *args, **kwargs: None
grading.EXERCISES["approx_kl"].cases = lambda: ()
print("✓ approx_kl: passed")'''


def test_forged_verdicts_do_not_count(tmp_path, monkeypatch):
    results_file = tmp_path / "results.jsonl"
    monkeypatch.setenv("PPO_GRADE_RESULTS", str(results_file))
    forged_file = tmp_path / "forged.jsonl"
    nb = write(tmp_path / "forger.ipynb", SETUP, FORGERIES.format(forged_file=str(forged_file)),
               APPROX_KL.split("### BEGIN")[0] + "raise NotImplementedError()",
               'check("approx_kl", approx_kl)')
    result = grade_notebook(nb, timeout=120)
    assert result.status == "ok" and not result.cell_errors, result
    assert [(e.id, e.passed, e.status) for e in result.exercises] == [
        ("approx_kl", False, "not done yet")]
    assert forged_file.read_text().count("approx_kl") == 1   # the forgeries did run
    assert not results_file.exists()  # the kernel was given no results file


def test_wrong_answer_with_a_patched_grading_module_still_fails(tmp_path):
    nb = write(tmp_path / "wrong.ipynb", SETUP,
               FORGERIES.format(forged_file=str(tmp_path / "f.jsonl")),
               "def approx_kl(log_ratio):\n    return (-log_ratio).mean()",
               'check("approx_kl", approx_kl)')
    (e,) = grade_notebook(nb, timeout=120).exercises
    assert (e.id, e.passed, e.status) == ("approx_kl", False, "failed")


def test_the_library_function_is_not_an_answer(tmp_path):
    nb = write(tmp_path / "copy.ipynb", SETUP,
               "import ppo_lib.kl\napprox_kl = ppo_lib.kl.approx_kl",
               'check("approx_kl", approx_kl)')
    (e,) = grade_notebook(nb, timeout=120).exercises
    assert (e.passed, e.status) == (False, "failed") and "ppo_lib's own function" in e.message


def test_a_deleted_check_cell_still_counts_for_a_course_lesson(tmp_path):
    lesson = json.loads((course.LESSONS_DIR / "00_welcome.ipynb").read_text())
    lesson["cells"] = [c for c in lesson["cells"]
                       if not course.graded_ids("".join(c.get("source", "")))]
    path = tmp_path / "00_welcome.ipynb"
    path.write_text(json.dumps(lesson))
    result = grade_notebook(path, timeout=300)
    assert [(e.id, e.passed, e.status) for e in result.exercises] == [
        ("discounted_returns", False, "not done yet")]


def test_a_cell_past_its_limit_is_interrupted_and_later_exercises_are_graded(tmp_path, capsys):
    nb = write(tmp_path / "stuck.ipynb", SETUP, "import time\ntime.sleep(120)", APPROX_KL_DONE,
               'check("approx_kl", approx_kl)')
    started = time.monotonic()
    assert main([str(nb), "--cell-timeout", "30", "--timeout", "200"]) == 0
    assert time.monotonic() - started < 100
    out = capsys.readouterr().out
    assert "✓ approx_kl" in out and "cell 2: CellTimeoutError" in out
