"""python -m ppo_lib.grade: solutions score full marks, fresh lessons zero, a lesson with
one exercise done scores exactly that one, failures are reported, never crash."""

import json
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ppo_lib import course
from ppo_lib.grade import grade_notebook, main, notebook_exercise_ids

pytestmark = pytest.mark.notebooks

SETUP = "import torch\nfrom ppo_lib.grading import check, summary"
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
                 'from ppo_lib.grading import check\ncheck("approx_kl", None)')
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
