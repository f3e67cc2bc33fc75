"""Lesson 07 exercises: diagnosing runs from their metrics, and target_kl early stopping."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from ..grading import Case, Exercise, Mistake, register

# ---------------------------------------------------------------------------------------
# diagnose_runs: the learner's function diagnose_runs() returns a dict mapping each broken run
# of the lesson to its problem (a function, so that the unfinished lesson still runs).

PROBLEMS = ("learning rate too high", "updates too timid", "critic broken", "healthy")

# Runs "A", "B", "C" of lesson 07 (their configurations are in ppo_lib.sweeps.BROKEN_RUNS).
DIAGNOSE_RUNS_ANSWER = {
    "A": "updates too timid",
    "B": "critic broken",
    "C": "learning rate too high",
}

_RUN_HINTS = {
    "A": "look at train/approx_kl and train/clip_fraction: how far does each update move "
         "the policy (the notes want approx_kl above 0.001)?",
    "B": "look at train/explained_variance and train/value_loss: is the critic learning to "
         "predict the returns at all?",
    "C": "look at train/approx_kl (above 0.05?) and train/clip_fraction (above 0.5?): how "
         "far does each update move the policy?",
}


def _is_mapping_of_runs(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return f"expected a dict like {{'A': '...', 'B': '...', 'C': '...'}}, got {type(answer).__name__}"
    if set(answer) != set(DIAGNOSE_RUNS_ANSWER):
        return f"expected the keys {sorted(DIAGNOSE_RUNS_ANSWER)}, got {sorted(map(str, answer))}"
    for run, label in answer.items():
        if label not in PROBLEMS:
            return f"run {run}: {label!r} is not one of {PROBLEMS}"
    return None


def _run_is(run: str, answer: dict) -> str | None:
    if answer[run] != DIAGNOSE_RUNS_ANSWER[run]:
        return f"run {run} is not '{answer[run]}'"
    return None


def _diagnose_runs_cases() -> list[Case]:
    cases = [Case("a dict from run name to one of PROBLEMS", verify=_is_mapping_of_runs,
                  hint=f"answer = {{'A': ..., 'B': ..., 'C': ...}} with labels from {PROBLEMS}")]
    for run in sorted(DIAGNOSE_RUNS_ANSWER):
        cases.append(Case(f"run {run}", verify=partial(_run_is, run), hint=_RUN_HINTS[run]))
    return cases


def _returns(answer: Any) -> Any:
    return answer


def _answer(answer: Any):
    """A zero-argument function returning ``answer`` (a learner's diagnose_runs)."""
    return partial(_returns, answer)


def diagnose_runs() -> dict[str, str]:
    """The reference: run name -> problem, one of PROBLEMS."""
    return dict(DIAGNOSE_RUNS_ANSWER)


def _diagnose_runs_mistakes() -> list[Mistake]:
    right = DIAGNOSE_RUNS_ANSWER
    return [
        Mistake("not answered yet", _answer(None)),
        Mistake("a label outside the list", _answer({**right, "A": "too slow"})),
        Mistake("a run left out", _answer({"A": right["A"], "B": right["B"]})),
        Mistake("timid and too-high learning rate swapped",
                _answer({**right, "A": right["C"], "C": right["A"]})),
        Mistake("the broken critic called healthy", _answer({**right, "B": "healthy"})),
        Mistake("the broken critic taken for a too-high learning rate",
                _answer({**right, "B": "learning rate too high"})),
        Mistake("everything blamed on the learning rate",
                _answer({run: "learning rate too high" for run in right})),
    ]


register(Exercise(
    id="diagnose_runs", lesson="07", title="Diagnose three broken runs from their metrics",
    cases=_diagnose_runs_cases, reference=diagnose_runs, mistakes=_diagnose_runs_mistakes))


# ---------------------------------------------------------------------------------------
# should_stop_early (kind "function"): SB3's and ppo_lib's target_kl rule.

def should_stop_early(approx_kl: float, target_kl: float | None) -> bool:
    """True when an update should stop: approx_kl > 1.5 * target_kl (SB3's rule).

    target_kl = None switches early stopping off. The factor 1.5 gives the estimate some
    slack, since approx_kl is measured on one minibatch.
    """
    if target_kl is None:
        return False
    return bool(approx_kl > 1.5 * target_kl)


def _should_stop_early_cases() -> list[Case]:
    return [
        Case("small KL: go on", args=(0.005, 0.02), expected=False,
             hint="approx_kl is well below target_kl: keep updating"),
        Case("large KL: stop", args=(0.08, 0.02), expected=True,
             hint="approx_kl = 0.08 is 4 x target_kl: stop the update"),
        Case("between target_kl and 1.5 * target_kl: go on", args=(0.025, 0.02),
             expected=False,
             hint="the threshold is 1.5 * target_kl, not target_kl itself (SB3's rule)"),
        Case("just above 1.5 * target_kl: stop", args=(0.0301, 0.02), expected=True,
             hint="0.0301 > 1.5 * 0.02 = 0.03: stop"),
        Case("exactly 1.5 * target_kl: go on", args=(1.5 * 0.02, 0.02), expected=False,
             hint="stop only when approx_kl is strictly greater than 1.5 * target_kl"),
        Case("target_kl = None: never stop", args=(0.5, None), expected=False,
             hint="target_kl=None switches early stopping off: return False"),
        Case("approx_kl as a 0-d tensor", args=(torch.tensor(0.08), 0.02),
             expected=True, hint="approx_kl may arrive as a 0-d tensor; compare it as a number"),
    ]


def _should_stop_early_mistakes() -> list[Mistake]:
    return [
        Mistake("threshold at target_kl", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl > target_kl),
        Mistake(">= instead of >", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl >= 1.5 * target_kl),
        Mistake("None not handled", lambda approx_kl, target_kl: approx_kl > 1.5 * target_kl),
        Mistake("comparison reversed", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl < 1.5 * target_kl),
        Mistake("never stops", lambda approx_kl, target_kl: False),
    ]


register(Exercise(
    id="should_stop_early", lesson="07", title="target_kl early stopping (1.5 x target_kl)",
    cases=_should_stop_early_cases, reference=should_stop_early,
    mistakes=_should_stop_early_mistakes))
