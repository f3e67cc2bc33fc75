"""ppo_lib.grading: check never raises, reports clearly, and leaves the kernel as it was."""

import json
import signal
import threading
import time

import pytest
import torch

from ppo_lib import grading
from ppo_lib.grading import Case, Exercise, Mistake, check, compare, summary, use

T = torch.tensor


def double(x):
    return 2 * x


@pytest.fixture
def toy(monkeypatch):
    """A throwaway exercise 'toy_double' (reference: 2 x), fast time limit."""
    exercise = Exercise(
        id="toy_double", lesson="99", title="double a tensor",
        cases=lambda: [Case("small", args=(T([1.0, 2.0]),), hint="multiply by two"),
                       Case("matrix", args=(torch.ones(2, 3),))],
        reference=double, mistakes=lambda: [Mistake("adds two", lambda x: x + 2)], timeout=0.5)
    monkeypatch.setitem(grading.EXERCISES, "toy_double", exercise)
    monkeypatch.setattr(grading, "RESULTS", {})
    monkeypatch.delenv(grading.NBGRADER_ENV, raising=False)
    monkeypatch.delenv(grading.RESULTS_ENV, raising=False)
    return exercise


def test_reference_passes_and_mistake_fails(toy, capsys):
    assert check("toy_double", double)
    assert capsys.readouterr().out.strip() == "✓ toy_double: passed"
    assert not check("toy_double", lambda x: x + 2)
    out = capsys.readouterr().out
    assert out.startswith("✗ toy_double: case 'small': expected [2, 4], got [3, 4]")
    assert "hint: multiply by two" in out


def test_stub_is_not_done_yet(toy, capsys):
    def stub(x):
        raise NotImplementedError()
    assert not check("toy_double", stub)
    assert "✗ toy_double: not done yet" in capsys.readouterr().out
    assert grading.RESULTS["toy_double"].status == "not done yet"


def test_exception_is_reported_with_type_message_and_line(toy, capsys):
    def broken(x):
        y = x * 2
        raise ValueError("gamma must be positive")
    assert not check("toy_double", broken)
    out = capsys.readouterr().out
    assert "raised ValueError: gamma must be positive" in out
    assert 'raise ValueError("gamma must be positive")' in out  # the learner's line


def test_endless_loop_is_stopped_and_timer_restored(toy, capsys):
    calls = []
    previous = signal.signal(signal.SIGALRM, lambda *a: calls.append(1))
    try:
        def hang(x):
            while True:
                try:
                    pass
                except Exception:  # must not swallow the time limit
                    pass
        start = time.monotonic()
        assert not check("toy_double", hang)
        assert time.monotonic() - start < 3
        assert "runs too long" in capsys.readouterr().out
        assert signal.getsignal(signal.SIGALRM) is not None
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        handler = signal.getsignal(signal.SIGALRM)
        assert handler is not grading.CheckTimeout and callable(handler)
        handler(signal.SIGALRM, None)
        assert calls == [1]  # the previous handler is back
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_outer_timer_survives_a_check(toy):
    previous = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 50.0)
        assert check("toy_double", double)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 40 < left <= 50
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_time_limit_outside_the_main_thread(toy):
    result = {}

    def hang(x):
        while True:
            time.sleep(0.01)

    worker = threading.Thread(target=lambda: result.update(ok=check("toy_double", hang)))
    worker.start()
    worker.join(5)
    assert not worker.is_alive() and not result["ok"]


def test_inputs_are_protected_and_mutation_reported(toy, capsys):
    def in_place(x):
        x.mul_(2)
        return x
    assert not check("toy_double", in_place)
    assert "changed its inputs in place" in capsys.readouterr().out
    assert torch.equal(toy.cases()[0].args[0], T([1.0, 2.0]))


def test_grad_mode_random_state_and_dtype_restored(toy):
    def messy(x):
        torch.set_grad_enabled(False)
        torch.manual_seed(123)
        torch.set_default_dtype(torch.float64)
        return 2 * x
    torch.manual_seed(0)
    state = torch.get_rng_state()
    check("toy_double", messy)
    assert torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_default_dtype() == torch.float32


def test_wrong_type_shape_and_missing_return(toy, capsys):
    assert not check("toy_double", lambda x: (2 * x).tolist())
    assert "expected a torch.Tensor of shape (2,), got list" in capsys.readouterr().out
    assert not check("toy_double", lambda x: (2 * x).sum())
    assert "expected shape (2,), got shape ()" in capsys.readouterr().out
    assert not check("toy_double", lambda x: None)
    assert "did you forget `return`" in capsys.readouterr().out
    assert not check("toy_double", 42)
    assert "expected a function" in capsys.readouterr().out


def test_unknown_id_never_raises(capsys):
    assert not check("no_such_exercise", double)
    assert "no exercise has this id" in capsys.readouterr().out


def test_nbgrader_execution_makes_failures_raise(toy, monkeypatch):
    monkeypatch.setenv(grading.NBGRADER_ENV, "1")
    assert check("toy_double", double)
    with pytest.raises(AssertionError, match="toy_double"):
        check("toy_double", lambda x: x)


def test_verdicts_recorded_for_the_grader(toy, monkeypatch, tmp_path):
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv(grading.RESULTS_ENV, str(path))
    check("toy_double", double)
    check("toy_double", lambda x: x)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["passed"], r["status"]) for r in rows] == [
        ("toy_double", True, "passed"), ("toy_double", False, "failed")]


def test_use_falls_back_to_the_reference(toy, capsys):
    def wrong(x):
        return x
    assert use("toy_double", wrong) is double
    assert "using ppo_lib's reference" in capsys.readouterr().out
    assert check("toy_double", double)
    assert use("toy_double", double) is double


def test_summary_table(toy, capsys):
    check("toy_double", double)
    rows = summary("99")
    out = capsys.readouterr().out
    assert "lesson 99: 1/1 exercises passed" in out and "✓ toy_double" in out
    assert [v.exercise_id for v in rows] == ["toy_double"]


def test_verdict_html_contains_the_text():
    verdict = grading.Verdict("gae", False, "not done yet: replace it", "")
    assert "✗ gae: not done yet" in repr(verdict)
    assert "✗ gae: not done yet" in verdict._repr_html_()


def test_compare_messages():
    assert compare(T([1.0]), T([1.0])) is None
    assert "shape" in compare(torch.ones(2, 1), torch.ones(2))
    assert "sign is flipped" in compare(T(-2.0), T(2.0))
    assert "tuple of 2" in compare(T(1.0), (T(1.0), T(2.0)))
    assert compare(float("nan"), float("nan")) is None
    assert "expected nan" in compare(float("-inf"), float("nan"))
    assert compare(T(0.25), 0.25) is None  # a one-element tensor is accepted as a number
    big = compare(torch.zeros(20), torch.arange(20.0))
    assert "19 of 20 values differ" in big


def test_register_rejects_duplicates_and_bad_kind(toy):
    with pytest.raises(ValueError, match="registered twice"):
        grading.register(toy)
    with pytest.raises(ValueError, match="kind"):
        grading.register(Exercise("x_kind", "99", "x", cases=lambda: [], kind="other"))


def test_compare_types():
    import numpy as np
    assert compare(np.bool_(True), True) is None
    assert compare(T(True), True) is None
    assert "True or False" in compare(1, True)
    assert "text" in compare("0.5", 0.5)
    assert "floating-point" in compare(T([1, 2]), T([1.0, 2.0]))
    assert compare({"a": T(1.0)}, {"a": T(1.0)}) is None
    assert "key 'a'" in compare({"a": T(2.0)}, {"a": T(1.0)})
