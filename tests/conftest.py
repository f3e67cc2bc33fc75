"""Shared test setup: torch on one thread (tiny MLPs run faster so, and xdist workers
share the cores), and a few small fixtures."""

import gymnasium as gym
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def cartpole_spaces():
    env = gym.make("CartPole-v1")
    return env.observation_space, env.action_space


@pytest.fixture
def pendulum_spaces():
    env = gym.make("Pendulum-v1")
    return env.observation_space, env.action_space


@pytest.fixture
def solution_namespace():
    """``solution_namespace(notebook)``: see ``notebook_namespace``."""
    return notebook_namespace


def notebook_namespace(notebook: str) -> dict:
    """What a solution notebook defines: its setup cell (without IPython magics) and its
    exercise cells (those with ``### BEGIN SOLUTION``), executed in one namespace, so tests
    grade the answers the notebooks really hold."""
    import json
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "solutions" / notebook
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        if index == 0 or "### BEGIN SOLUTION" in source:
            source = "\n".join(line for line in source.splitlines()
                               if not line.lstrip().startswith(("%", "!")))
            exec(compile(source, path.name, "exec"), namespace)  # noqa: S102 (our notebooks)
    return namespace
