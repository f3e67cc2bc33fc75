"""``python -m ppo_lib.course build [--check]``: build lessons/ from solutions/."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
