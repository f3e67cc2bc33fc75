"""Lesson 07 exercises: diagnosing runs from their metrics, target_kl early stopping and
PPO-penalty's adaptive KL coefficient."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from ...kl import adaptive_kl_coefficient
from ..grading import Case, Exercise, Mistake, register
from .cases import Known, graded_case, mistakes_of

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
         "far does each update move the policy? And at the entropy: a policy that collapsed "
         "after too-large updates cannot move any more, so its approx_kl then reads about 0",
}


def _label(text: Any) -> Any:
    """A label as the learner may type it: case and extra spaces do not matter."""
    return " ".join(text.lower().split()) if isinstance(text, str) else text


def _run(key: Any) -> Any:
    return key.strip().upper() if isinstance(key, str) else key


def _is_mapping_of_runs(answer: Any) -> str | None:
    if answer is None:
        return "your diagnose_runs returned None: did you forget `return`?"
    if not isinstance(answer, dict):
        return ("expected a dict like {'A': '...', 'B': '...', 'C': '...'}, got "
                f"{type(answer).__name__}")
    runs = [_run(key) for key in answer]
    if sorted(map(str, runs)) != sorted(DIAGNOSE_RUNS_ANSWER):
        return f"expected the keys {sorted(DIAGNOSE_RUNS_ANSWER)}, got {sorted(map(str, answer))}"
    for run, label in answer.items():
        if _label(label) not in PROBLEMS:
            return f"run {run}: {label!r} is not one of {PROBLEMS}"
    return None


def _run_is(run: str, answer: dict) -> str | None:
    label = {_run(key): _label(value) for key, value in answer.items()}[run]
    if label != DIAGNOSE_RUNS_ANSWER[run]:
        return f"run {run} is not '{label}'"
    return None


def _diagnose_runs_cases() -> list[Case]:
    cases = [Case("a dict from run name to one of PROBLEMS", verify=_is_mapping_of_runs,
                  hint=f"return {{'A': ..., 'B': ..., 'C': ...}} with labels from {PROBLEMS}")]
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
        Mistake("not answered yet", _answer(None), hint="forget `return`"),
        Mistake("a label outside the list", _answer({**right, "A": "too slow"}),
                hint="is not one of"),
        Mistake("a run left out", _answer({"A": right["A"], "B": right["B"]}),
                hint="expected the keys"),
        Mistake("a list of labels instead of a dict", _answer(list(right.values())),
                hint="expected a dict"),
        Mistake("timid and too-high learning rate swapped",
                _answer({**right, "A": right["C"], "C": right["A"]}),
                hint="approx_kl above 0.001"),
        Mistake("the broken critic called healthy", _answer({**right, "B": "healthy"}),
                hint="explained_variance"),
        Mistake("the broken critic taken for a too-high learning rate",
                _answer({**right, "B": "learning rate too high"}), hint="explained_variance"),
        Mistake("the collapsed run C taken for a timid one (its approx_kl reads 0)",
                _answer({**right, "C": "updates too timid"}), hint="above 0.05?"),
        Mistake("everything blamed on the learning rate",
                _answer({run: "learning rate too high" for run in right}),
                hint="approx_kl above 0.001"),
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
             hint="approx_kl is well below target_kl: keep updating. approx_kl arrives as a "
                  "Python float here (a 0-d tensor elsewhere): compare it as a number"),
        Case("large KL: stop", args=(0.08, 0.02), expected=True,
             hint="approx_kl = 0.08 is 4 x target_kl: stop the update"),
        Case("between target_kl and 1.5 * target_kl: go on", args=(0.025, 0.02),
             expected=False,
             hint="the threshold is 1.5 * target_kl, not target_kl itself (SB3's rule)"),
        Case("just above 1.5 * target_kl: stop", args=(0.0301, 0.02), expected=True,
             hint="0.0301 > 1.5 * 0.02 = 0.03: stop (the factor is 1.5, times target_kl)"),
        Case("exactly 1.5 * target_kl: go on", args=(1.5 * 0.02, 0.02), expected=False,
             hint="stop only when approx_kl is strictly greater than 1.5 * target_kl"),
        Case("target_kl = None: never stop", args=(0.5, None), expected=False,
             hint="target_kl=None switches early stopping off: return False"),
        Case("another target_kl", args=(0.016, 0.01), expected=True,
             hint="use the target_kl argument: 0.016 > 1.5 * 0.01"),
        Case("approx_kl as a 0-d tensor", args=(torch.tensor(0.08), 0.02),
             expected=True, hint="approx_kl may arrive as a 0-d tensor; compare it as a number"),
        Case("a 0-d tensor below the threshold", args=(torch.tensor(0.02), 0.02),
             expected=False, hint="approx_kl may arrive as a 0-d tensor; compare it as a number"),
    ]


def _should_stop_early_mistakes() -> list[Mistake]:
    return [
        Mistake("threshold at target_kl", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl > target_kl, hint="not target_kl itself"),
        Mistake(">= instead of >", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl >= 1.5 * target_kl,
                hint="strictly greater"),
        Mistake("None not handled", lambda approx_kl, target_kl: approx_kl > 1.5 * target_kl,
                hint="None switches early stopping off"),
        Mistake("None taken as 'always stop'", lambda approx_kl, target_kl:
                target_kl is None or approx_kl > 1.5 * target_kl,
                hint="None switches early stopping off"),
        Mistake("comparison reversed", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl < 1.5 * target_kl, hint="keep updating"),
        Mistake("never stops", lambda approx_kl, target_kl: False, hint="stop the update"),
        Mistake("factor 2 instead of 1.5", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl > 2 * target_kl,
                hint="the factor is 1.5"),
        Mistake("target_kl fixed at 0.02", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl > 1.5 * 0.02,
                hint="use the target_kl argument"),
        Mistake("approx_kl.item() on a Python float", lambda approx_kl, target_kl:
                target_kl is not None and approx_kl.item() > 1.5 * target_kl,
                hint="Python float"),
    ]


register(Exercise(
    id="should_stop_early", lesson="07", title="target_kl early stopping (1.5 x target_kl)",
    cases=_should_stop_early_cases, reference=should_stop_early,
    mistakes=_should_stop_early_mistakes))


# ---------------------------------------------------------------------------------------
# adaptive_kl_coefficient (kind "function"): PPO-penalty's beta update (PPO paper, sec. 4),
# graded against ppo_lib.kl.adaptive_kl_coefficient.

def _rule(beta, kl, target_kl, low=1 / 1.5, high=1.5, down=0.5, up=2.0):
    kl = float(kl)
    if kl < target_kl * low:
        return beta * down
    if kl > target_kl * high:
        return beta * up
    return beta


ADAPTIVE_KL_KNOWN = [
    Known("branches swapped", lambda beta, kl, target_kl: _rule(beta, kl, target_kl, down=2.0,
                                                                up=0.5),
          "branches are swapped",
          "the branches are swapped: a small KL means the penalty holds the policy back too "
          "much, so beta is halved"),
    Known("1.5 as the factor", lambda beta, kl, target_kl: _rule(beta, kl, target_kl,
                                                                 down=1 / 1.5, up=1.5),
          "factor 1.5", "you scale beta by the factor 1.5: 1.5 sets the bands, beta is "
          "doubled or halved"),
    Known("compared with target_kl itself", lambda beta, kl, target_kl:
          _rule(beta, kl, target_kl, low=1.0, high=1.0),
          "compare with the bands", "you compare with target_kl itself: compare with the bands "
          "target_kl / 1.5 and target_kl * 1.5"),
    Known("<= and >= at the bounds", lambda beta, kl, target_kl:
          (beta / 2 if float(kl) <= target_kl / 1.5 else
           beta * 2 if float(kl) >= target_kl * 1.5 else beta),
          "strictly", "you change beta on the bounds: only strictly below target_kl / 1.5 or "
          "strictly above target_kl * 1.5 does it change"),
    Known("target_kl fixed at 0.01", lambda beta, kl, target_kl: _rule(beta, kl, 0.01),
          "target_kl argument", "you use a fixed target of 0.01: use the target_kl argument"),
    Known("beta reset to 1", lambda beta, kl, target_kl: _rule(1.0, kl, target_kl),
          "beta argument", "you start from 1, not from the beta argument: the rule scales the "
          "current beta"),
    Known("moves beta toward target_kl", lambda beta, kl, target_kl:
          beta + (target_kl - float(kl)),
          "wrong direction", "you move beta by target_kl - kl: beta is a penalty weight, "
          "doubled or halved, and it grows when the KL is too large (the wrong direction "
          "otherwise)"),
    Known("beta clamped to a range", lambda beta, kl, target_kl:
          min(max(_rule(beta, kl, target_kl), 1e-3), 10.0),
          "no bounds", "you clamp beta: the paper's rule has no bounds, beta is doubled or "
          "halved from any value"),
]


def _a_python_number(got: Any) -> str | None:
    if isinstance(got, torch.Tensor):
        return ("you return a tensor: return a Python float (the trainer keeps beta between "
                "updates and logs it), e.g. float(...) or .item()")
    if not isinstance(got, (float, int)) or isinstance(got, bool):
        return f"expected a Python float, got {type(got).__name__}"
    return None


def _adaptive_kl_cases() -> list[Case]:
    ref, known = adaptive_kl_coefficient, ADAPTIVE_KL_KNOWN
    # 3/256 = 0.01171875: its / 1.5 and * 1.5 are exact floats (0.0078125, 0.017578125), so
    # "kl < target_kl / 1.5" and "1.5 * kl < target_kl" agree on the bounds
    edge = 3 / 256
    return [
        graded_case("KL well below the band: halve", ref, (1.0, 0.001, 0.01), known=known,
                    hint="d = 0.001 < d_targ / 1.5: the policy barely moved, the penalty is "
                         "too strong: beta <- beta / 2"),
        graded_case("KL well above the band: double", ref, (1.0, 0.05, 0.01), known=known,
                    hint="d = 0.05 > d_targ * 1.5: the policy moved too far: beta <- beta * 2"),
        graded_case("KL on target: keep", ref, (1.0, 0.01, 0.01), known=known,
                    hint="d = d_targ is inside [d_targ / 1.5, d_targ * 1.5]: beta stays"),
        graded_case("KL just below target, inside the band: keep", ref, (0.5, 0.008, 0.01),
                    known=known, hint="0.008 is below d_targ but above d_targ / 1.5: compare "
                                      "with the bands, not with d_targ; beta stays"),
        graded_case("KL just above target, inside the band: keep", ref, (0.5, 0.013, 0.01),
                    known=known, hint="0.013 is above d_targ but below d_targ * 1.5: compare "
                                      "with the bands, not with d_targ; beta stays"),
        graded_case("exactly d_targ / 1.5: keep", ref, (2.0, edge / 1.5, edge), known=known,
                    hint="the rule is strict: beta is halved only when d < d_targ / 1.5"),
        graded_case("exactly d_targ * 1.5: keep", ref, (2.0, edge * 1.5, edge), known=known,
                    hint="the rule is strict: beta is doubled only when d > d_targ * 1.5"),
        graded_case("another beta, KL too large", ref, (0.3, 0.1, 0.02), known=known,
                    hint="scale the beta argument: 0.3 * 2"),
        graded_case("another target_kl, inside its band", ref, (1.0, 0.04, 0.05), known=known,
                    hint="use the target_kl argument: 0.04 is inside [0.05 / 1.5, 0.05 * 1.5]"),
        graded_case("another beta, KL too small", ref, (0.25, 0.0001, 0.02), known=known,
                    hint="scale the beta argument: 0.25 / 2"),
        graded_case("a large beta, KL too large: still doubles", ref, (50.0, 0.1, 0.01),
                    known=known, hint="beta has no upper bound: 50 * 2"),
        graded_case("a tiny beta, KL too small: still halves", ref, (1e-4, 1e-6, 0.01),
                    known=known, hint="beta has no lower bound: 1e-4 / 2"),
        graded_case("kl as a 0-d tensor", ref, (1.0, torch.tensor(0.05), 0.01), known=known,
                    hint="kl may arrive as a 0-d tensor (approx_kl): compare it as a number",
                    then=_a_python_number),
        graded_case("a Python float back", ref, (1.0, 0.001, 0.01), known=known,
                    hint="return a Python float, not a tensor", then=_a_python_number),
    ]


def _adaptive_kl_mistakes() -> list[Mistake]:
    return mistakes_of(ADAPTIVE_KL_KNOWN) + [
        Mistake("a tensor returned", lambda beta, kl, target_kl: torch.where(
            torch.as_tensor(kl) < target_kl / 1.5, torch.tensor(beta / 2),
            torch.where(torch.as_tensor(kl) > target_kl * 1.5, torch.tensor(beta * 2),
                        torch.tensor(float(beta)))), hint="return a Python float"),
    ]


register(Exercise(
    id="adaptive_kl_coefficient", lesson="07",
    title="PPO-penalty: adapt the KL coefficient beta (PPO paper, section 4)",
    cases=_adaptive_kl_cases, reference=adaptive_kl_coefficient,
    mistakes=_adaptive_kl_mistakes))
