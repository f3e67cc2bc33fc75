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
