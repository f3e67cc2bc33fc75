"""The public path of the headless grader (API.md): ``python -m ppo_lib.grade NOTEBOOK...``.

The code lives in ``ppo_lib/course/grade.py``, with the rest of the course tooling.
"""

import sys

from .course.grade import grade_notebook, main

__all__ = ["grade_notebook", "main"]

if __name__ == "__main__":
    sys.exit(main())
