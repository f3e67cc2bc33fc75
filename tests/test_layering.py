"""How ppo_lib is layered (issue 12, STYLE.md): checked on the source, by AST, and on fresh
interpreters.

(a) The maths modules the lessons teach import only torch: each, imported alone in a fresh
    interpreter, leaves the env, plotting, widget and SB3 packages out of sys.modules.
(b) Only ppo_lib.lab imports matplotlib, ipywidgets or stable_baselines3 (any import
    statement, function-level ones included).
(c) No module uses another module's underscore names: ``from .x import _y``, ``x._y`` on a
    name bound to a ppo_lib module, or a private module ``_x`` (dunder names are public).
(d) No module of ppo_lib is over MAX_LINES lines.
(e) Torch internals (private ``torch._...`` names, ``torch.ops.aten``, underscore names
    imported from torch modules) appear only in ppo_lib/fastpath.py, the one module that
    trades readability for speed and is pinned by its tests against the reference path.

Each failure names the file, the line and the offending name.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ppo_lib"
LAB = PACKAGE / "lab"
FASTPATH = PACKAGE / "fastpath.py"
MAX_LINES = 400

MATHS = ["returns", "losses", "kl", "distributions", "diagnostics", "trpo", "vpg", "rlhf"]
HEAVY = ["gymnasium", "matplotlib", "ipywidgets", "stable_baselines3", "IPython"]
LAB_ONLY = ("matplotlib", "ipywidgets", "stable_baselines3")


# --- reading the package ----------------------------------------------------------------

def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@functools.cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_private(name: str) -> bool:
    """``_x`` is private; ``__x__`` (dunder) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_parts(path: Path) -> list[str]:
    """The dotted package a module lives in, e.g. ['ppo_lib', 'course'] (an __init__.py is
    its own package)."""
    return list(path.relative_to(ROOT).with_suffix("").parts[:-1])


def absolute(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <node.module> import ...`` written in ``path``."""
    if node.level == 0:
        return node.module or ""
    base = package_parts(path)
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_ppo_lib_module(dotted: str) -> bool:
    if dotted != "ppo_lib" and not dotted.startswith("ppo_lib."):
        return False
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, absolute module, imported name or None) for every import in a module, at any
    depth, plus ``importlib.import_module("...")`` / ``__import__("...")`` with a constant."""
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            module = absolute(path, node)
            for alias in node.names:
                yield node.lineno, module, alias.name
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and dotted_name(node.func) in ("importlib.import_module", "import_module",
                                             "__import__")):
            yield node.lineno, node.args[0].value, None


def dotted_name(node: ast.AST) -> str | None:
    """'a.b.c' for the expression a.b.c, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def bound_names(path: Path, root: str) -> dict[str, str]:
    """Names a module binds by importing ``root`` or anything below it, each mapped to what
    it stands for: ``import torch.nn as nn`` -> {'nn': 'torch.nn'}, ``import ppo_lib.x`` ->
    {'ppo_lib': 'ppo_lib'}, ``from . import policies`` -> {'policies': 'ppo_lib.policies'}."""
    names: dict[str, str] = {}
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == root or alias.name.startswith(root + "."):
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        names[top] = top
        elif isinstance(node, ast.ImportFrom):
            module = absolute(path, node)
            if module == root or module.startswith(root + "."):
                for alias in node.names:
                    if alias.name != "*":
                        names[alias.asname or alias.name] = f"{module}.{alias.name}"
    return names


def attribute_chains(path: Path, names: dict[str, str]) -> Iterator[tuple[int, str]]:
    """(line, full dotted name) for every outermost attribute chain a.b.c whose base ``a``
    is one of ``names``, with ``a`` replaced by what it stands for."""
    inner: set[int] = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Attribute):
            inner.add(id(node.value))
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            dotted = dotted_name(node)
            if dotted is None:
                continue
            base, _, rest = dotted.partition(".")
            if base in names:
                yield node.lineno, f"{names[base]}.{rest}"


def getattr_constants(path: Path, names: dict[str, str]) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for ``getattr(x, "name")`` with ``x`` one of ``names``."""
    for node in ast.walk(tree(path)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "getattr" and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            base = dotted_name(node.args[0])
            if base is not None and base.split(".")[0] in names:
                head, _, rest = base.partition(".")
                full = ".".join(filter(None, [names[head], rest, node.args[1].value]))
                yield node.lineno, full


def ordered(problems: list[str]) -> list[str]:
    """By file, then line ("path:line: what" or "path: what"), without repeats."""
    def key(problem: str) -> tuple[str, int, str]:
        path, _, rest = problem.partition(":")
        line = rest.split(":")[0]
        return path, int(line) if line.isdigit() else 0, rest
    return sorted(set(problems), key=key)


def report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


# --- (a) the maths modules import only torch --------------------------------------------

@pytest.mark.parametrize("module", MATHS)
def test_maths_module_imports_only_torch(module):
    code = (f"import sys, ppo_lib.{module}\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "", (f"ppo_lib/{module}.py imported alone pulls in {out}; the maths "
                       f"modules import only torch (import the others inside the function "
                       f"that needs them)")


# --- (b) only the lab imports matplotlib, ipywidgets and SB3 ----------------------------

def lab_only_imports() -> list[str]:
    problems = []
    for path in modules():
        if LAB in path.parents:
            continue
        for line, module, _ in imports(path):
            if module.split(".")[0] in LAB_ONLY:
                problems.append(f"{rel(path)}:{line}: imports {module}")
    return ordered(problems)


def test_only_the_lab_imports_matplotlib_ipywidgets_and_sb3():
    problems = lab_only_imports()
    assert not problems, report(problems, "imports of " + ", ".join(LAB_ONLY)
                                + " outside ppo_lib/lab/")


# --- (c) no module uses another module's underscore names -------------------------------

def private_name_uses() -> list[str]:
    problems = []
    for path in modules():
        for line, module, name in imports(path):
            if not (module == "ppo_lib" or module.startswith("ppo_lib.")):
                continue
            private_parts = [part for part in module.split(".") if is_private(part)]
            if private_parts:
                problems.append(f"{rel(path)}:{line}: imports the private module {module}")
            elif name is not None and is_private(name):
                kind = "module" if is_ppo_lib_module(f"{module}.{name}") else "name"
                problems.append(f"{rel(path)}:{line}: imports the private {kind} {name} "
                                f"from {module}")
        names = {name: target for name, target in bound_names(path, "ppo_lib").items()
                 if is_ppo_lib_module(target)}
        uses = [*attribute_chains(path, names), *getattr_constants(path, names)]
        for line, dotted in uses:
            parts = dotted.split(".")
            for i in range(1, len(parts)):
                if not is_ppo_lib_module(".".join(parts[:i])):
                    break   # past the modules: attributes of a class or object
                if is_private(parts[i]):
                    problems.append(f"{rel(path)}:{line}: uses the private name "
                                    f"{'.'.join(parts[:i + 1])}")
                    break
    return ordered(problems)


def test_no_module_uses_another_modules_private_names():
    problems = private_name_uses()
    assert not problems, report(problems, "uses of other modules' underscore names "
                                "(make the name public, or move the code that needs it)")


# --- (d) module size ---------------------------------------------------------------------

def long_modules() -> list[str]:
    problems = []
    for path in modules():
        n_lines = len(path.read_text(encoding="utf-8").splitlines())
        if n_lines > MAX_LINES:
            problems.append(f"{rel(path)}: {n_lines} lines")
    return ordered(problems)


def test_no_module_is_over_the_line_limit():
    problems = long_modules()
    assert not problems, report(problems, f"modules over {MAX_LINES} lines")


# --- (e) torch internals only in fastpath.py --------------------------------------------

def torch_internal_uses(path: Path) -> list[str]:
    problems = []
    for line, module, name in imports(path):
        if not (module == "torch" or module.startswith("torch.")):
            continue
        parts = module.split(".") + ([name] if name and name != "*" else [])
        private = [part for part in parts if is_private(part)]
        if private or ".ops.aten" in f".{'.'.join(parts)}.":
            shown = f"{name} from {module}" if name else module
            problems.append(f"{rel(path)}:{line}: imports the torch internal {shown}")
    names = bound_names(path, "torch")
    for line, dotted in [*attribute_chains(path, names), *getattr_constants(path, names)]:
        parts = dotted.split(".")
        if any(is_private(part) for part in parts) or ".ops.aten." in f".{dotted}.":
            problems.append(f"{rel(path)}:{line}: uses the torch internal {dotted}")
    return ordered(problems)


# The grader puts back what a learner's function changed in the kernel; torch keeps its
# print options, device context and function-mode stack only in private state (torch 2.13
# has no public getter), so restoring them is the one other use of torch internals.
KERNEL_STATE = PACKAGE / "course" / "kernel_state.py"


def test_torch_internals_only_in_fastpath():
    problems = ordered([problem for path in modules() if path not in (FASTPATH, KERNEL_STATE)
                        for problem in torch_internal_uses(path)])
    assert not problems, report(problems, "uses of torch internals outside "
                                "ppo_lib/fastpath.py")


# --- the checkers themselves -------------------------------------------------------------

def check_source(tmp_path: Path, relative: str, source: str) -> Path:
    """Write ``source`` as a fake ppo_lib module under tmp_path and point the checkers
    at it (ROOT and PACKAGE are read at call time)."""
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(tmp_path).parents:
        if parent != Path("."):
            (tmp_path / parent / "__init__.py").touch()
    path.write_text(source)
    return path


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "ppo_lib")
    monkeypatch.setattr(sys.modules[__name__], "LAB", tmp_path / "ppo_lib" / "lab")
    monkeypatch.setattr(sys.modules[__name__], "FASTPATH", tmp_path / "ppo_lib" / "fastpath.py")
    tree.cache_clear()
    yield lambda relative, source: check_source(tmp_path, relative, source)
    tree.cache_clear()


def test_the_checkers_find_what_they_should(fake_package):
    fake_package("ppo_lib/policies.py", "_FUNCTIONAL = {}\nPUBLIC = 1\n")
    fake_package("ppo_lib/_helpers.py", "X = 1\n")
    fake_package("ppo_lib/lab/plotting.py", "import matplotlib.pyplot as plt\n")
    fake_package("ppo_lib/fastpath.py", "import torch\ntorch._foreach_add_([], 1)\n")
    bad = fake_package("ppo_lib/bad.py", "\n".join([
        "import torch",                                               # 1
        "from torch import nn",                                       # 2
        "from torch.nn.modules.module import _global_forward_hooks",  # 3
        "from . import policies",                                     # 4
        "from .policies import _FUNCTIONAL, PUBLIC",                  # 5
        "from ppo_lib import _helpers",                               # 6
        "import ppo_lib.policies",                                    # 7
        "def f():",                                                   # 8
        "    import stable_baselines3",                               # 9
        "    from matplotlib import pyplot",                          # 10
        "    torch._foreach_mul_([], 2.0)",                           # 11
        "    torch.ops.aten.addmm(1, 2, 3)",                          # 12
        "    nn.modules.module._global_backward_hooks",               # 13
        "    policies._FUNCTIONAL, policies.PUBLIC, policies.__name__",  # 14
        "    ppo_lib.policies._FUNCTIONAL",                           # 15
        "    getattr(torch, '_C')",                                   # 16
        "    torch.nn.functional.relu, torch.__version__",            # 17
        "    __import__('ipywidgets')",                               # 18
        "from ._helpers import X",                                    # 19
    ]) + "\n")
    assert lab_only_imports() == ["ppo_lib/bad.py:9: imports stable_baselines3",
                                  "ppo_lib/bad.py:10: imports matplotlib",
                                  "ppo_lib/bad.py:18: imports ipywidgets"]
    assert private_name_uses() == [
        "ppo_lib/bad.py:5: imports the private name _FUNCTIONAL from ppo_lib.policies",
        "ppo_lib/bad.py:6: imports the private module _helpers from ppo_lib",
        "ppo_lib/bad.py:14: uses the private name ppo_lib.policies._FUNCTIONAL",
        "ppo_lib/bad.py:15: uses the private name ppo_lib.policies._FUNCTIONAL",
        "ppo_lib/bad.py:19: imports the private module ppo_lib._helpers",
    ]
    assert torch_internal_uses(bad) == [
        "ppo_lib/bad.py:3: imports the torch internal _global_forward_hooks from "
        "torch.nn.modules.module",
        "ppo_lib/bad.py:11: uses the torch internal torch._foreach_mul_",
        "ppo_lib/bad.py:12: uses the torch internal torch.ops.aten.addmm",
        "ppo_lib/bad.py:13: uses the torch internal torch.nn.modules.module."
        "_global_backward_hooks",
        "ppo_lib/bad.py:16: uses the torch internal torch._C",
    ]
    assert long_modules() == []
    fake_package("ppo_lib/long.py", "x = 1\n" * (MAX_LINES + 1))
    assert long_modules() == [f"ppo_lib/long.py: {MAX_LINES + 1} lines"]
