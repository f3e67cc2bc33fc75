"""ppo_lib.course.grading: check never raises, reports clearly, and leaves the kernel as it was."""

import json
import signal
import threading
import time

import pytest
import torch

from ppo_lib.course import grading, running, time_limit
from ppo_lib.course.grading import Case, Exercise, Mistake, check, compare, summary, use

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


def test_numpy_and_pandas_inputs_changed_in_place_are_reported(capsys):
    """Lesson 10's inputs are numpy arrays and DataFrames: `x.sort()` or `inplace=True` on
    the caller's data must fail with its own hint, and the case inputs stay as they were."""
    import numpy as np

    def iqm_sorting_in_place(scores):
        x = scores.reshape(-1) if isinstance(scores, np.ndarray) else np.asarray(scores).ravel()
        x.sort()
        k = len(x) // 4
        return float(x[k:len(x) - k].mean())
    assert not check("interquartile_mean", iqm_sorting_in_place)
    out = capsys.readouterr().out
    assert "changed its inputs in place" in out and "np.sort(x)" in out

    def reading_sorting_in_place(table, base="base"):
        table.sort_values("variant", inplace=True)
        rows = table.set_index("variant")
        return sorted(name for name, high in rows["ci_high"].items()
                      if high < rows.loc[base, "ci_low"])
    assert not check("clearly_worse", reading_sorting_in_place)
    out = capsys.readouterr().out
    assert "changed its inputs in place" in out and "sort_values" in out


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


# ---------------------------------------------------------------------------------------
# the time limit holds whatever the learner's function does (main thread and other threads)

LIMIT = 0.5    # the toy exercise's timeout
SLACK = 3.0    # "within its limit plus a few seconds", on a busy 2-core machine


def _tight(x):
    while True:
        pass


def _swallows(x):
    while True:
        try:
            while True:
                pass
        except BaseException:  # swallows CheckTimeout, KeyboardInterrupt, everything
            pass


def _swallows_every_line(x):
    while True:
        try:
            pass
        except BaseException:
            pass


def _resets_alarm(x):
    try:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
    except ValueError:  # not on the main thread
        pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    while True:
        pass


def _resets_alarm_and_swallows(x):
    while True:
        try:
            try:
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
            except ValueError:
                pass
            signal.setitimer(signal.ITIMER_REAL, 0)
            while True:
                pass
        except BaseException:
            pass


def _swallowing_helper():
    try:
        for _ in range(10 ** 12):
            pass
    except BaseException:
        pass


def _swallows_in_a_helper_and_untraces(x):
    import sys
    while True:
        try:
            sys.settrace(None)
            _swallowing_helper()
        except BaseException:
            try:
                while True:
                    sys.settrace(None)
            except BaseException:
                pass


def _keeps_what_it_catches(x):
    kept = []
    while True:
        try:
            while True:
                pass
        except BaseException as exc:
            kept.append(exc)


def _continue_in_finally(x):
    while True:
        try:
            while True:
                pass
        finally:
            continue  # drops the exception


def _suppresses(x):
    import contextlib
    while True:
        with contextlib.suppress(BaseException):
            while True:
                pass


def _recurses_in_its_handlers(x, depth=0):
    try:
        while True:
            if depth < 50:
                _recurses_in_its_handlers(x, depth + 1)
    except BaseException:  # also RecursionError
        _recurses_in_its_handlers(x)


def _swallows_in_a_generator(x):
    def forever():
        while True:
            try:
                yield 1
            except BaseException:
                pass
    for _ in forever():
        try:
            pass
        except BaseException:
            pass


def _loops_in_del(x):
    class Stubborn:
        def __del__(self):  # CPython ignores exceptions raised in __del__
            while True:
                try:
                    pass
                except BaseException:
                    pass
    while True:
        try:
            Stubborn()
        except BaseException:
            pass


def _sleeps_and_swallows(x):
    while True:
        try:
            time.sleep(100)
        except BaseException:
            pass


def _matmul_loop(x):
    """Each product runs in C for a few ms; the limit acts between two of them. (A single
    call into C that runs for minutes, e.g. one enormous product, cannot be interrupted:
    the check ends when it returns.)"""
    a = torch.randn(400, 400)
    while True:
        a = torch.tanh(a @ a)


HANGS = [_tight, _swallows, _swallows_every_line, _resets_alarm, _resets_alarm_and_swallows,
         _swallows_in_a_helper_and_untraces, _keeps_what_it_catches, _continue_in_finally,
         _suppresses, _recurses_in_its_handlers, _swallows_in_a_generator, _loops_in_del,
         _matmul_loop]


def _check_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("ppo-check")]


@pytest.mark.parametrize("hang", HANGS + [_sleeps_and_swallows], ids=lambda f: f.__name__)
def test_time_limit_holds_on_the_main_thread(toy, capsys, hang):
    import sys
    calls = []
    previous = signal.signal(signal.SIGALRM, lambda *a: calls.append(1))
    trace = sys.gettrace()
    try:
        start = time.monotonic()
        result = check("toy_double", hang)
        elapsed = time.monotonic() - start
        assert not result and elapsed < LIMIT + SLACK, elapsed
        assert "runs too long" in capsys.readouterr().out
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        signal.getsignal(signal.SIGALRM)(signal.SIGALRM, None)
        assert calls == [1]  # our handler is back
        assert sys.gettrace() is trace
        assert _check_threads() == []
        assert check("toy_double", double)  # the kernel still works
    finally:
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("hang", HANGS, ids=lambda f: f.__name__)
def test_time_limit_holds_outside_the_main_thread(toy, hang):
    result = {}

    def run():
        start = time.monotonic()
        result["ok"] = bool(check("toy_double", hang))
        result["elapsed"] = time.monotonic() - start

    worker = threading.Thread(target=run, name="test-worker")
    worker.start()
    worker.join(LIMIT + SLACK + 5)
    assert not worker.is_alive()
    assert result["ok"] is False and result["elapsed"] < LIMIT + SLACK, result
    assert _check_threads() == []


def test_a_blocking_call_off_the_main_thread_ends_the_check_when_it_returns(toy):
    """What the limit cannot do: stop one call that blocks in C outside the main thread
    (the alarm that cuts time.sleep short works on the main thread only; likewise one long
    torch operation, on any thread, is never interrupted). The check waits for it to return,
    then fails as too long, and leaves no thread behind."""
    result = {}

    def run():
        start = time.monotonic()
        result["ok"] = bool(check("toy_double", lambda x: time.sleep(1.5)))
        result["elapsed"] = time.monotonic() - start

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(1.5 + SLACK + 5)
    assert not worker.is_alive() and result["ok"] is False
    assert "runs too long" in grading.RESULTS["toy_double"].message
    assert 1.5 <= result["elapsed"] < 1.5 + SLACK
    assert _check_threads() == []


def test_nothing_is_printed_to_stderr(toy, capsys):
    for hang in (_loops_in_del, _recurses_in_its_handlers, _swallows):
        assert not check("toy_double", hang)
    assert capsys.readouterr().err == ""


def test_call_with_time_limit_leaves_nothing_behind():
    import sys
    hook, trace = sys.unraisablehook, sys.gettrace()
    with pytest.raises(grading.CheckTimeout):
        grading.call_with_time_limit(_swallows, (None,), {}, 0.2)
    assert grading.call_with_time_limit(double, (3,), {}, 1.0) == 6
    assert sys.unraisablehook is hook and sys.gettrace() is trace
    assert _check_threads() == [] and time_limit.active_limits() == []


def test_answer_that_hangs_while_being_compared(toy, capsys, monkeypatch):
    monkeypatch.setattr(running, "JUDGE_SECONDS", 0.5)

    class Endless:
        def __repr__(self):
            while True:
                pass

    start = time.monotonic()
    assert not check("toy_double", lambda x: Endless())
    assert time.monotonic() - start < LIMIT + 0.5 + SLACK
    assert "checking your answer took more than 0.5 s" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# any exception, including BaseExceptions, is a verdict


def _raises(exc):
    def fn(x):
        raise exc
    return fn


@pytest.mark.parametrize("exc, words", [
    (SystemExit(3), "raised SystemExit (3)"),
    (KeyboardInterrupt(), "raised KeyboardInterrupt"),
    (GeneratorExit(), "raised GeneratorExit"),
    (type("Custom", (BaseException,), {})("boom"), "raised Custom: boom"),
])
def test_base_exceptions_are_verdicts(toy, capsys, exc, words):
    assert not check("toy_double", _raises(exc))
    out = capsys.readouterr().out
    assert out.startswith("✗ toy_double: case 'small': your function " + words.split(" ", 1)[0])
    assert words in out and "raise exc" in out  # the learner's line


def test_sys_exit_is_a_verdict(toy, capsys):
    import sys

    def quits(x):
        sys.exit()
    assert not check("toy_double", quits)
    out = capsys.readouterr().out
    assert "raised SystemExit" in out and "return the result instead" in out


def test_exception_whose_message_fails(toy, capsys):
    class Odd(Exception):
        def __str__(self):
            raise SystemExit("no")
    assert not check("toy_double", _raises(Odd()))
    assert "raised Odd: (a Odd that cannot be shown)" in capsys.readouterr().out


def test_ctrl_c_during_a_check_is_a_verdict(toy, capsys):
    handler = signal.getsignal(signal.SIGINT)

    def waits_for_ctrl_c(x):
        signal.raise_signal(signal.SIGINT)  # as if the learner pressed Ctrl-C (stop button)
        while True:
            time.sleep(0.01)
    result = check("toy_double", waits_for_ctrl_c)
    assert not result and result.verdict.message == "interrupted (Ctrl-C)"
    assert capsys.readouterr().out.strip() == "✗ toy_double: interrupted (Ctrl-C)"
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_stops_a_function_that_swallows_it(toy, capsys):
    toy.timeout = 30

    def stubborn(x):
        while True:
            try:
                signal.raise_signal(signal.SIGINT)
                while True:
                    pass
            except BaseException:
                pass
    start = time.monotonic()
    result = check("toy_double", stubborn)
    assert time.monotonic() - start < SLACK  # long before its 30 s limit
    assert not result and result.verdict.message == "interrupted (Ctrl-C)"
    assert _check_threads() == []


def test_use_never_raises(toy, capsys):
    import sys
    for bad in (_raises(SystemExit(1)), _raises(KeyboardInterrupt()), _swallows,
                lambda x: sys.exit(0)):
        grading.RESULTS.clear()
        assert use("toy_double", bad) is double
        assert "using ppo_lib's reference" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# what the learner's function changes in the kernel is put back


def _np():
    import numpy as np
    return np


def _set_default_device_meta():
    torch.set_default_device("meta")


MESSES = {  # name: (what the learner's function does, what is compared before and after)
    "torch threads": (lambda: torch.set_num_threads(torch.get_num_threads() + 1),
                      torch.get_num_threads),
    "anomaly detection": (lambda: torch.set_anomaly_enabled(True, True),
                          lambda: (torch.is_anomaly_enabled(),
                                   torch.is_anomaly_check_nan_enabled())),
    "deterministic algorithms": (
        lambda: torch.use_deterministic_algorithms(True, warn_only=True),
        lambda: (torch.are_deterministic_algorithms_enabled(),
                 torch.is_deterministic_algorithms_warn_only_enabled())),
    "numpy errors": (lambda: _np().seterr(all="raise"), lambda: _np().geterr()),
    "numpy print options": (lambda: _np().set_printoptions(precision=2),
                            lambda: _np().get_printoptions()),
    "numpy RNG": (lambda: _np().random.seed(5), lambda: _np().random.get_state()[1].tolist()),
    "python RNG": (lambda: __import__("random").seed(5),
                   lambda: __import__("random").getstate()),
    "torch RNG": (lambda: torch.manual_seed(5), lambda: torch.get_rng_state().tolist()),
    "grad mode": (lambda: torch.set_grad_enabled(False), torch.is_grad_enabled),
    "default dtype": (lambda: torch.set_default_dtype(torch.float64), torch.get_default_dtype),
    "default device": (_set_default_device_meta, lambda: torch.empty(1).device.type),
    "torch function mode": (lambda: torch.device("meta").__enter__(),
                            lambda: torch.zeros(1).device.type),
    "float32 matmul precision": (lambda: torch.set_float32_matmul_precision("medium"),
                                 torch.get_float32_matmul_precision),
    "torch print options": (lambda: torch.set_printoptions(precision=1),
                            lambda: repr(torch.tensor([1.23456]))),
    "recursion limit": (lambda: __import__("sys").setrecursionlimit(12345),
                        lambda: __import__("sys").getrecursionlimit()),
    "print": (lambda: setattr(__import__("builtins"), "print", lambda *a, **k: None),
              lambda: __import__("builtins").print),
    "a global print": (lambda: globals().__setitem__("print", lambda *a, **k: None),
                       lambda: globals().get("print")),
    "sys.stdout": (lambda: setattr(__import__("sys"), "stdout", __import__("io").StringIO()),
                   lambda: __import__("sys").stdout),
    "sys.displayhook": (lambda: setattr(__import__("sys"), "displayhook", print),
                        lambda: __import__("sys").displayhook),
    "trace function": (lambda: __import__("sys").settrace(lambda *a: None),
                       lambda: __import__("sys").gettrace()),
    "profile function": (lambda: __import__("sys").setprofile(lambda *a: None),
                         lambda: __import__("sys").getprofile()),
    "SIGINT handler": (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                       lambda: signal.getsignal(signal.SIGINT)),
    "SIGALRM handler and timer": (
        lambda: (signal.signal(signal.SIGALRM, signal.SIG_IGN),
                 signal.setitimer(signal.ITIMER_REAL, 100)),
        lambda: (signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL))),
    "blocked signals": (lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}),
                        lambda: signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "environment": (lambda: __import__("os").environ.__setitem__("PPO_TEST_MESS", "1"),
                    lambda: dict(__import__("os").environ)),
    "working directory": (lambda: __import__("os").chdir("/"),
                          lambda: __import__("os").getcwd()),
    "warning filters": (lambda: __import__("warnings").simplefilter("error"),
                        lambda: list(__import__("warnings").filters)),
    "garbage collector": (lambda: __import__("gc").disable(), lambda: __import__("gc").isenabled()),
}


@pytest.mark.parametrize("name", list(MESSES))
def test_what_the_function_changes_is_put_back(toy, name):
    toy.timeout = 30  # the first use_deterministic_algorithms takes seconds (imports)
    mess, probe = MESSES[name]
    before = probe()

    def messy(x):
        mess()
        return 2 * x
    assert check("toy_double", messy)  # put back before judging, too
    assert probe() == before


def test_restored_even_when_the_function_fails(toy):
    threads = torch.get_num_threads()

    def messy_and_stuck(x):
        torch.set_num_threads(threads + 1)
        torch.set_anomaly_enabled(True)
        _swallows(x)
    assert not check("toy_double", messy_and_stuck)
    assert torch.get_num_threads() == threads and not torch.is_anomaly_enabled()


# ---------------------------------------------------------------------------------------
# a check cell shows the verdict line only, no Out value (nbgrader warns about those)


def test_a_check_cell_has_no_output_value(toy, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    assert grading.CheckResult(grading.Verdict("x", True, "passed"))._ipython_display_() is None
    shell = InteractiveShell.instance()
    try:
        for fn in (double, lambda x: x):
            result = check("toy_double", fn)
            assert shell.display_formatter.format(result) == ({}, {})
        written = []
        monkeypatch.setattr(shell.displayhook, "write_format_data",
                            lambda data, md=None: written.append(data))
        shell.user_ns.update(check=check, double=double)
        for cell in ('check("toy_double", double)', 'check("toy_double", lambda x: x)'):
            outcome = shell.run_cell(cell)
            assert outcome.success and isinstance(outcome.result, grading.CheckResult)
        assert written == []
    finally:
        InteractiveShell.clear_instance()
