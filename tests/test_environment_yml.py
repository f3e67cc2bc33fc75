"""environment.yml (conda users) lists the same packages as pyproject.toml (pip users)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# pyproject extras that conda spells as separate packages
EXTRAS = {("gymnasium", "classic-control"): ["pygame-ce"],
          ("gymnasium", "mujoco"): ["mujoco", "imageio"]}


def split(requirement):
    """'gymnasium[classic-control,mujoco]>=1.0' -> ('gymnasium', ['classic-control', 'mujoco'], '>=1.0')"""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?\s*(.*?)\s*", requirement)
    assert m, f"cannot parse requirement {requirement!r}"
    extras = [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]
    return m.group(1).lower(), extras, m.group(3).replace(" ", "")


def load():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for item in dep["pip"]:
                if not item.startswith("-"):
                    name, _, spec = split(item)
                    pip[name] = spec
        else:
            name, _, spec = split(dep.replace("=", "==", 1) if re.search(r"[^<>=!]=[^=]", dep) else dep)
            conda[name] = spec
    return project, env, conda, pip


def test_environment_yml_parses_and_names_the_env():
    _, env, _, _ = load()
    assert env["name"] == "ppo-course"


def test_python_version_matches_requires_python():
    project, _, conda, _ = load()
    assert conda["python"] == "==3.11"
    assert project["requires-python"] == ">=3.11,<3.12"


def test_torch_pinned_exactly_and_only_through_pip():
    project, _, conda, pip = load()
    assert "torch==2.13.0" in project["dependencies"]
    assert pip.get("torch") == "==2.13.0"
    assert "torch" not in conda and "pytorch" not in conda, "conda could pull another torch build"


def test_every_pyproject_dependency_is_in_environment_yml():
    project, env, conda, pip = load()
    both = {**conda, **pip}
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    for requirement in requirements:
        name, extras, spec = split(requirement)
        assert name in both, f"{name} (pyproject.toml) is missing from environment.yml"
        assert both[name] == spec, f"{name}: pyproject says {spec!r}, environment.yml {both[name]!r}"
        for extra in extras:
            for package in EXTRAS.get((name, extra), []):
                assert package in both, f"{name}[{extra}] needs {package} in environment.yml"
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert '-e ".[test]"' in pip_lines or "-e .[test]" in pip_lines


def test_nothing_extra_in_environment_yml():
    project, _, conda, pip = load()
    declared = {split(r)[0] for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    declared |= {p for packages in EXTRAS.values() for p in packages} | {"python", "pip"}
    extra = sorted((set(conda) | set(pip)) - declared)
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"
