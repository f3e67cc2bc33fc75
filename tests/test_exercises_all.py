"""Every registered exercise (core and lessons): the reference passes, every classic
mistake is rejected, and check handles stubs, errors and endless loops."""

import time

import pytest
import torch

from ppo_lib.course import grading

grading.load_exercises()
ALL = sorted(grading.EXERCISES)
FUNCTIONS = [i for i in ALL if grading.EXERCISES[i].kind == "function"]
MISTAKES = [(i, m) for i in ALL for m in grading.EXERCISES[i].mistakes()]


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(grading, "RESULTS", {})
    monkeypatch.delenv(grading.NBGRADER_ENV, raising=False)
    monkeypatch.delenv(grading.RESULTS_ENV, raising=False)


def test_core_exercises_are_registered():
    core = {"discounted_returns", "gae", "kl_categorical", "conjugate_gradient",
            "clipped_surrogate_loss", "value_loss", "approx_kl", "clip_fraction",
            "explained_variance"}
    assert core <= set(ALL)


@pytest.mark.parametrize("exercise_id", ALL)
def test_exercise_is_well_formed(exercise_id):
    ex = grading.EXERCISES[exercise_id]
    assert ex.id == exercise_id and len(ex.lesson) == 2 and ex.lesson.isdigit()
    cases = list(ex.cases())
    assert cases, "an exercise needs cases"
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    assert list(ex.mistakes()), "an exercise needs at least one Mistake the tests reject"


@pytest.mark.parametrize("exercise_id", ALL)
def test_reference_passes(exercise_id, capsys):
    assert grading.check(exercise_id, grading.EXERCISES[exercise_id].reference), \
        capsys.readouterr().out


@pytest.mark.parametrize("exercise_id,mistake", MISTAKES,
                         ids=[f"{i}-{m.description}" for i, m in MISTAKES])
def test_mistake_rejected(exercise_id, mistake, capsys):
    assert not grading.check(exercise_id, mistake.answer), mistake.description
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {exercise_id}: ")
    # rejected by a case, not because the exercise itself is broken
    assert "internal error" not in out and "the check itself failed" not in out


@pytest.mark.parametrize("exercise_id,mistake", MISTAKES,
                         ids=[f"{i}-{m.description}" for i, m in MISTAKES])
def test_mistake_gets_its_own_hint(exercise_id, mistake, capsys):
    """The first failing case's hint names the mistake actually made."""
    assert mistake.hint, f"Mistake {mistake.description!r} of {exercise_id} states no hint"
    result = grading.check(exercise_id, mistake.answer)
    shown = capsys.readouterr().out
    assert not result
    assert mistake.hint.lower() in (result.verdict.message + " " + result.verdict.hint).lower(), \
        f"{mistake.description!r} was shown: {shown!r}; expected a hint containing {mistake.hint!r}"


@pytest.mark.parametrize("exercise_id", FUNCTIONS)
def test_stub_is_not_done_yet(exercise_id, capsys):
    def stub(*args, **kwargs):
        # YOUR CODE HERE
        raise NotImplementedError()
    assert not grading.check(exercise_id, stub)
    assert f"✗ {exercise_id}: not done yet" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", FUNCTIONS)
def test_value_error_is_reported(exercise_id, capsys):
    def broken(*args, **kwargs):
        raise ValueError("learner bug 42")
    assert not grading.check(exercise_id, broken)
    assert "ValueError: learner bug 42" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", FUNCTIONS)
def test_endless_loop_fails_within_the_time_limit(exercise_id, monkeypatch, capsys):
    monkeypatch.setattr(grading.EXERCISES[exercise_id], "timeout", 0.2)

    def hang(*args, **kwargs):
        while True:
            pass
    start = time.monotonic()
    assert not grading.check(exercise_id, hang)
    assert time.monotonic() - start < 5
    assert "runs too long" in capsys.readouterr().out


def test_value_exercises_not_answered_yet(capsys):
    for exercise_id in ALL:
        if grading.EXERCISES[exercise_id].kind == "value":
            assert not grading.check(exercise_id, None)
            assert f"✗ {exercise_id}: not done yet" in capsys.readouterr().out


def _graph_exercise(monkeypatch):
    """A throwaway exercise whose input is a non-leaf tensor that requires grad (as a
    critic's output is): those reach the learner as they are, for gradient checks."""
    def cases():
        w = torch.tensor(2.0, requires_grad=True)
        return [grading.Case("critic output", args=(w * torch.tensor([1.0, -2.0, 3.0]),))]

    def reference(values):
        return (values ** 2).mean()
    exercise = grading.Exercise(id="toy_graph", lesson="99", title="mean square",
                                cases=cases, reference=reference)
    monkeypatch.setitem(grading.EXERCISES, "toy_graph", exercise)


def test_in_place_change_of_a_graph_input_is_caught(monkeypatch, capsys):
    _graph_exercise(monkeypatch)

    def squares_in_place(values):
        return values.mul_(values).mean()       # right number, caller's tensor changed
    assert grading.check("toy_graph", lambda values: (values ** 2).mean())
    result = grading.check("toy_graph", squares_in_place)
    assert not result and "changed its inputs in place" in result.verdict.message


def test_requires_grad_false_on_a_leaf_input_is_named(monkeypatch, capsys):
    def cases():
        return [grading.Case("a parameter", args=(torch.tensor([1.0, -2.0], requires_grad=True),))]
    exercise = grading.Exercise(id="toy_leaf", lesson="99", title="mean square", cases=cases,
                                reference=lambda values: (values ** 2).mean())
    monkeypatch.setitem(grading.EXERCISES, "toy_leaf", exercise)

    def no_grad_please(values):
        values.requires_grad_(False)
        return (values ** 2).mean()
    result = grading.check("toy_leaf", no_grad_please)
    assert not result and "requires_grad_(False)" in result.verdict.hint


def _graded_answers():
    """(notebook, exercise id, the name its check cell passes) for every check cell of
    every solution notebook."""
    import ast
    import json
    import pathlib
    rows = []
    for path in sorted((pathlib.Path(__file__).resolve().parents[1] / "solutions").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:  # IPython magics: not a check cell
                continue
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "check" and len(node.args) == 2
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[1], ast.Name)):
                    rows.append((path.name, node.args[0].value, node.args[1].id))
    return rows


ANSWERS = _graded_answers()


def test_every_exercise_is_checked_in_a_solution():
    assert {exercise_id for _, exercise_id, _ in ANSWERS} == set(ALL)


@pytest.mark.parametrize("notebook,exercise_id,name", ANSWERS,
                         ids=[f"{n[:2]}-{i}" for n, i, _ in ANSWERS])
def test_solution_notebook_answer_passes(notebook, exercise_id, name, solution_namespace,
                                         capsys):
    """The answer a solution notebook holds (its real cell, not a copy) passes its check."""
    result = grading.check(exercise_id, solution_namespace(notebook)[name])
    assert result, capsys.readouterr().out
