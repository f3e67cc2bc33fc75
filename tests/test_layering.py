"""The maths modules the lessons teach import only torch (STYLE.md, CONTRIBUTING.md): each,
imported alone in a fresh interpreter, leaves the env, plotting, widget and SB3 packages out
of sys.modules. (ppo_lib.trpo and ppo_lib.vpg still import gymnasium for their training
loops; the redesign of issue 12 moves those out and adds them here.)"""

import subprocess
import sys

import pytest

MATHS = ["returns", "losses", "kl", "distributions", "diagnostics"]
HEAVY = ["gymnasium", "matplotlib", "ipywidgets", "stable_baselines3", "IPython"]


@pytest.mark.parametrize("module", MATHS)
def test_maths_module_imports_only_torch(module):
    code = (f"import sys, ppo_lib.{module}\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"ppo_lib.{module} pulls in {out}"
