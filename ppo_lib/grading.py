"""The public path of the exercise checks (API.md): ``from ppo_lib.grading import check``.

The code lives in ``ppo_lib/course/grading.py``, with the rest of the course tooling.
"""

from .course.grading import (EXERCISES, NBGRADER_ENV, NOT_DONE, RESULTS, RESULTS_ENV, Case,
                             CheckResult, CheckTimeout, Exercise, Mistake, Summary, Verdict,
                             call_with_time_limit, check, compare, load_exercises,
                             positional_arguments, register, report, summary, use)

__all__ = ["EXERCISES", "NBGRADER_ENV", "NOT_DONE", "RESULTS", "RESULTS_ENV", "Case",
           "CheckResult", "CheckTimeout", "Exercise", "Mistake", "Summary", "Verdict",
           "call_with_time_limit", "check", "compare", "load_exercises",
           "positional_arguments", "register", "report", "summary", "use"]
