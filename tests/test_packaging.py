"""`pip install .` (not editable) gives a working course: the wheel holds every module of
ppo_lib (subpackages such as ppo_lib.course.exercises included), and a check runs from it.

The wheel is built from a copy of the sources (the working tree is not written to) and
installed into a fresh venv that sees the project's dependencies (the main venv's
site-packages as a plain path entry) but neither the source tree nor the editable install
(its finder lives in a .pth file of the main venv, which a plain path entry does not run).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what the build reads; anything else in the tree must not matter
BUILD_INPUTS = ["pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE"]


def _source_modules() -> list[str]:
    """Dotted names of every module and package of ppo_lib in the source tree."""
    names = []
    for path in sorted((ROOT / "ppo_lib").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n"
                                    f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, its site-packages, a cwd outside
    the sources, an environment without PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "ppo_lib", src / "ppo_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # nothing to download: the build uses the venv's setuptools (>= 77, which torch 2.13
    # requires, builds wheels without the `wheel` package)
    env["PIP_NO_INDEX"] = "1"
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--disable-pip-version-check", "-w", str(wheels), str(src)], env=env, cwd=tmp)
    (wheel,) = wheels.glob("ppo_course-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=env, cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=env, cwd=tmp).stdout.strip())
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
          "--disable-pip-version-check", "--target", str(site), str(wheel)], env=env, cwd=tmp)
    # the dependencies (torch, numpy, ...) from the main venv, after the wheel's ppo_lib
    (site / "zz_main_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run_dir = tmp / "elsewhere"
    run_dir.mkdir()
    return python, site, run_dir, env


def test_wheel_holds_every_module_and_a_check_passes(installed):
    python, site, run_dir, env = installed
    script = textwrap.dedent(f"""
        import importlib, sys
        from pathlib import Path
        site = Path({str(site)!r})
        assert "ppo_lib" not in sys.modules
        for name in {_source_modules()!r}:
            module = importlib.import_module(name)
            assert site in Path(module.__file__).resolve().parents, (name, module.__file__)
        import ppo_lib.course.exercises
        from ppo_lib.course.grading import check
        from ppo_lib.returns import gae
        assert check("gae", gae), "the reference gae fails its own check"
        print("ok", ppo_lib.__file__)
    """)
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=run_dir, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"ok {site / 'ppo_lib' / '__init__.py'}"


def test_wheel_has_exactly_the_source_modules(installed):
    _, site, _, _ = installed
    installed_files = {p.relative_to(site).as_posix() for p in (site / "ppo_lib").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts}
    source_files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ppo_lib").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts}
    assert installed_files == source_files


def test_grade_command_runs_from_the_wheel(installed):
    python, _, run_dir, env = installed
    result = subprocess.run([str(python), "-m", "ppo_lib.grade", "--help"], capture_output=True,
                            text=True, timeout=300, cwd=run_dir, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage:" in result.stdout
