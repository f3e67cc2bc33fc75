"""ppo_lib.course: solutions -> lessons (stubs, nbgrader metadata, deterministic bytes),
--check, execute, show_source."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ppo_lib import course
from ppo_lib.course import lessons as lessons_module
import ppo_lib.returns

SOLUTION_CELL = '''def f(x, y):
    """Docstring stays."""
    ### BEGIN SOLUTION
    z = x + y
    return z
    ### END SOLUTION


class A:
    def g(self):
        ### BEGIN SOLUTION
        return 1
        ### END SOLUTION'''


def test_strip_solutions_keeps_the_indentation():
    assert course.strip_solutions(SOLUTION_CELL) == '''def f(x, y):
    """Docstring stays."""
    # YOUR CODE HERE
    raise NotImplementedError()


class A:
    def g(self):
        # YOUR CODE HERE
        raise NotImplementedError()'''


def test_markdown_answers():
    text = "Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n"
    assert course.strip_solutions(text, "markdown") == "Why?\n\nYOUR ANSWER HERE\n"


@pytest.mark.parametrize("bad", ["### BEGIN SOLUTION\nx", "x\n### END SOLUTION",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_an_error(bad):
    with pytest.raises(ValueError, match="SOLUTION"):
        course.strip_solutions(bad)


def test_remove_markers():
    assert course.remove_markers("a\n    ### BEGIN SOLUTION\n    b\n    ### END SOLUTION") == "a\n    b"


def solution_notebook():
    nb = new_notebook(cells=[
        new_markdown_cell("# 42 · Test"),
        new_code_cell("import torch", execution_count=1),
        new_code_cell(SOLUTION_CELL, execution_count=2,
                      outputs=[nbformat.v4.new_output("stream", name="stdout", text="hi\n")]),
        new_code_cell('check("gae", f)', execution_count=3),
        new_markdown_cell("Answer: ### BEGIN SOLUTION\n### BEGIN SOLUTION\nIt is.\n### END SOLUTION"),
        new_code_cell('check("gae", f)'),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    nb.cells[2].metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    return json.loads(nbformat.writes(nb))


def test_build_lesson_stubs_clears_outputs_and_sets_nbgrader_metadata():
    solution = solution_notebook()
    lesson = course.build_lesson(solution, "42_test")
    cells = lesson["cells"]
    assert "raise NotImplementedError()" in cells[2]["source"]
    assert "z = x + y" not in cells[2]["source"]
    assert cells[4]["source"].endswith("YOUR ANSWER HERE")
    on_disk = json.loads(course.dumps(lesson))["cells"][2]["source"]
    assert isinstance(on_disk, list) and on_disk[0] == "def f(x, y):\n"  # Jupyter's format
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert cells[2]["metadata"] == {"nbgrader": {
        "grade": False, "grade_id": "cell_42_test_02", "locked": False, "schema_version": 3,
        "solution": True, "task": False}}
    assert cells[3]["metadata"]["nbgrader"] == {
        "grade": True, "grade_id": "check_gae", "locked": True, "points": 1,
        "schema_version": 3, "solution": False, "task": False}
    assert cells[5]["metadata"]["nbgrader"]["grade_id"] == "check_gae_2"  # unique ids
    assert cells[4]["metadata"]["nbgrader"] == {  # a manually graded markdown answer
        "grade": True, "grade_id": "answer_42_test_04", "locked": False, "points": 1,
        "schema_version": 3, "solution": True, "task": False}
    assert "nbgrader" not in cells[1]["metadata"]
    assert "widgets" not in lesson["metadata"]
    assert (lesson["nbformat"], lesson["nbformat_minor"]) == (4, 5)
    nbformat.validate(nbformat.reads(course.dumps(lesson), as_version=4))


def test_build_keeps_the_solutions_cell_ids_and_is_deterministic():
    solution = solution_notebook()
    ids = [c["id"] for c in solution["cells"]]
    first = course.dumps(course.build_lesson(solution, "42_test"))
    second = course.dumps(course.build_lesson(json.loads(json.dumps(solution)), "42_test"))
    assert first == second
    assert [c["id"] for c in json.loads(first)["cells"]] == ids
    # a solution without ids gets ids derived from its name and cell index, stable too
    for cell in solution["cells"]:
        del cell["id"]
    a = course.build_lesson(solution, "42_test")
    b = course.build_lesson(solution, "42_test")
    assert [c["id"] for c in a["cells"]] == [c["id"] for c in b["cells"]]
    assert len({c["id"] for c in a["cells"]}) == len(a["cells"])


def test_build_and_check_on_folders(tmp_path, monkeypatch, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    solutions.mkdir()
    monkeypatch.setattr(lessons_module, "SOLUTIONS_DIR", solutions)
    monkeypatch.setattr(lessons_module, "LESSONS_DIR", lessons)
    (solutions / "42_test.ipynb").write_text(json.dumps(solution_notebook()))
    assert course.main(["build", "--check"]) == 1
    assert "out of date: " in capsys.readouterr().out
    assert course.main(["build"]) == 0
    sol = json.loads((solutions / "42_test.ipynb").read_text())  # metadata added in place
    assert sol["cells"][3]["metadata"]["nbgrader"]["grade_id"] == "check_gae"
    assert sol["cells"][2]["outputs"][0]["text"] == ["hi\n"]  # outputs kept
    written = (lessons / "42_test.ipynb").read_bytes()
    mtime = (lessons / "42_test.ipynb").stat().st_mtime_ns
    assert course.main(["build", "--check"]) == 0
    assert course.main(["build", "42_test.ipynb"]) == 0  # idempotent: same bytes, untouched
    assert (lessons / "42_test.ipynb").read_bytes() == written
    assert (lessons / "42_test.ipynb").stat().st_mtime_ns == mtime
    (lessons / "42_test.ipynb").write_text(written.decode().replace("YOUR CODE HERE", "edited"))
    assert course.main(["build", "--check"]) == 1
    assert course.main(["build", "nope.ipynb"]) == 2


def test_solutions_store_no_widget_state(tmp_path, monkeypatch, capsys):
    """nbgrader generate_assignment copies notebook metadata into the student release, so
    build --check flags a solution with stored widget state and build removes it (nothing
    else changes: outputs, widget views in outputs, the rest of the metadata stay)."""
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    solutions.mkdir()
    monkeypatch.setattr(lessons_module, "SOLUTIONS_DIR", solutions)
    monkeypatch.setattr(lessons_module, "LESSONS_DIR", lessons)
    nb = course.solution_metadata(solution_notebook(), "42_test")
    view = {"application/vnd.jupyter.widget-view+json":
            {"model_id": "abc", "version_major": 2, "version_minor": 0}}
    nb["cells"][1]["outputs"] = [nbformat.v4.new_output("display_data", data=view)]
    state = {"application/vnd.jupyter.widget-state+json": {
        "state": {"abc": {"model_module": "@jupyter-widgets/controls", "state": {"value": 3}}},
        "version_major": 2, "version_minor": 0}}
    clean = json.loads(course.dumps(nb))
    assert "widgets" not in clean["metadata"]
    (solutions / "42_test.ipynb").write_text(course.dumps(nb))
    assert course.main(["build"]) == 0
    assert course.main(["build", "--check"]) == 0
    capsys.readouterr()

    nb["metadata"]["widgets"] = state
    (solutions / "42_test.ipynb").write_text(course.dumps(nb))
    assert course.stale_lessons() == []  # the lesson never had it
    assert course.solutions_without_metadata() == [solutions / "42_test.ipynb"]
    assert course.main(["build", "--check"]) == 1
    out = capsys.readouterr().out
    assert "42_test.ipynb (stores widget state)" in out
    assert course.main(["build"]) == 0
    assert (solutions / "42_test.ipynb").read_text() == course.dumps(clean)
    assert course.main(["build", "--check"]) == 0


@pytest.mark.parametrize("path", sorted(course.SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_real_solutions_store_no_widget_state(path):
    assert "widgets" not in json.loads(path.read_text())["metadata"]


def test_real_lessons_are_up_to_date_for_lesson_00():
    assert course.stale_lessons(["00_welcome.ipynb"]) == []


def test_show_source_names_the_module_and_file_without_a_line_number(capsys):
    """Line numbers drift when code moves, and the header is stored in notebook outputs."""
    course.show_source(ppo_lib.returns.gae)
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first == "# ppo_lib.returns.gae  (ppo_lib/returns.py)"
    assert "def gae(" in out and "return advantages" in out


def test_show_source_rejects_builtins():
    with pytest.raises(TypeError, match="show_source"):
        course.show_source(len)


class _Hidden:
    def _step(self):
        return 1

    def step(self):
        return self._step()


def _private_function():
    return 2


class Shown:
    def __call__(self):
        return 3


@pytest.mark.parametrize("obj", [_Hidden._step, _private_function, _Hidden.step],
                         ids=["private method", "private function", "method of a private class"])
def test_show_source_refuses_private_code(obj):
    with pytest.raises(ValueError, match="lessons show public code only"):
        course.show_source(obj)


def test_show_source_shows_dunder_methods(capsys):
    course.show_source(Shown.__call__)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("# ") and first.split()[1].endswith("Shown.__call__")


@pytest.mark.notebooks
def test_execute_stores_outputs_and_metadata(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# t"), new_code_cell("print(6 * 7)"),
                             new_code_cell('x = 1\nif False:\n    check("gae", x)'),
                             new_code_cell("import ipywidgets\nipywidgets.IntSlider(value=3)"),
                             # an interact's Output widget: nbclient's hook needs the state
                             # while it runs (store_widget_state=False raised a KeyError)
                             new_code_cell("w = ipywidgets.interact(lambda k: print('k =', k), "
                                           "k=ipywidgets.IntSlider(value=4))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "42_t.ipynb"
    nbformat.write(nb, path)
    course.execute(path, timeout=120)
    done = json.loads(path.read_text())
    assert "".join(done["cells"][1]["outputs"][0]["text"]) == "42\n"
    assert [c.get("execution_count") for c in done["cells"][1:]] == [1, 2, 3, 4]
    assert done["cells"][2]["metadata"]["nbgrader"]["grade"] is True
    # the slider's view is an output, its state is not stored (nbclient would by default)
    assert "application/vnd.jupyter.widget-view+json" in done["cells"][3]["outputs"][0]["data"]
    assert "widgets" not in done["metadata"]
    assert path.read_text() == course.dumps(done)
