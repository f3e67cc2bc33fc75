"""The core exercises: each classic mistake fails with the hint that names it, and the
conjugate gradient reference (ppo_lib.trpo) agrees with a direct solve."""

import pytest
import torch

from ppo_lib import grading
from ppo_lib.exercises import core

T = torch.tensor


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(grading, "RESULTS", {})
    monkeypatch.delenv(grading.NBGRADER_ENV, raising=False)


def failing_output(exercise_id, fn, capsys):
    assert not grading.check(exercise_id, fn)
    return capsys.readouterr().out


# (exercise id, mistake description, words the verdict must contain)
EXPECTED_HINTS = [
    ("discounted_returns", "ignores episode ends", "ignoring episode ends"),
    ("discounted_returns", "ignores last_values", "last_values ignored"),
    ("discounted_returns", "works for (T,) only", "(T, N) inputs"),
    ("gae", "masks the TD error but not the recursion", "mask both places"),
    ("gae", "bootstraps from V(s_t) instead of V(s_{t+1})", "NEXT state"),
    ("gae", "ignores last_values", "expected [0, 0, 0, 0]"),
    ("gae", "forgets to add the values back (returns = advantages)", "item 1 of the tuple"),
    ("kl_categorical", "reversed direction", "weight by p"),
    ("kl_categorical", "NaN for zero probabilities", "log of zero probs"),
    ("kl_categorical", "averages over actions", "sum over actions"),
    ("conjugate_gradient", "ignores iters (always 20)", "exactly `iters` iterations"),
    ("clipped_surrogate_loss", "max instead of min", "MINIMUM"),
    ("clipped_surrogate_loss", "clips the product", "A > 0, ratio above"),
    ("clipped_surrogate_loss", "returns the objective, not the loss", "sign is flipped"),
    ("clipped_surrogate_loss", "sum instead of mean", "not clip(r * A"),
    ("clipped_surrogate_loss", "detached (no gradient)", "no gradient"),
    ("value_loss", "with a 1/2 factor", "no 1/2 factor"),
    ("value_loss", "clips the loss, not the prediction", "clip the PREDICTION"),
    ("approx_kl", "naive estimator -mean(log r)", "naive"),
    ("clip_fraction", "counts only r > 1 + eps", "only one side"),
    ("explained_variance", "no NaN case (gives -inf)", "missing NaN case"),
    ("explained_variance", "mean squared error instead of variance", "VARIANCE"),
]


@pytest.mark.parametrize("exercise_id,description,needle", EXPECTED_HINTS,
                         ids=[f"{i}-{d}" for i, d, _ in EXPECTED_HINTS])
def test_mistake_gets_the_hint_naming_it(exercise_id, description, needle, capsys):
    mistakes = {m.description: m.answer for m in grading.EXERCISES[exercise_id].mistakes()}
    assert needle in failing_output(exercise_id, mistakes[description], capsys)


def test_conjugate_gradient_matches_a_direct_solve():
    from ppo_lib.trpo import conjugate_gradient
    a = core._spd(6, 0)
    b = torch.arange(1.0, 7.0, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)
    assert torch.allclose(core._conjugate_gradient(a.__matmul__, b, iters=6), x)


def test_conjugate_gradient_exercise_uses_trpo_reference():
    from ppo_lib.trpo import conjugate_gradient
    assert grading.check("conjugate_gradient", conjugate_gradient)


def test_clip_fraction_accepts_a_float_or_a_one_element_tensor():
    def as_tensor(ratio, clip_range):
        return ((ratio - 1).abs() > clip_range).float().mean()
    assert grading.check("clip_fraction", as_tensor)


def test_a_learner_solution_written_differently_passes():
    def gae(rewards, values, dones, last_values, gamma, gae_lambda):
        advantages = torch.zeros_like(rewards)
        last = 0
        for t in reversed(range(len(rewards))):
            next_value = last_values if t == len(rewards) - 1 else values[t + 1]
            delta = rewards[t] + gamma * next_value * (1 - dones[t]) - values[t]
            last = delta + gamma * gae_lambda * (1 - dones[t]) * last
            advantages[t] = last
        return advantages, advantages + values
    assert grading.check("gae", gae)

    def discounted_returns(rewards, dones, gamma, last_values=None):
        out = torch.zeros_like(rewards)
        g = torch.zeros_like(rewards[0]) if last_values is None else last_values
        for t in range(len(rewards) - 1, -1, -1):
            g = rewards[t] + gamma * (1 - dones[t]) * g
            out[t] = g
        return out
    assert grading.check("discounted_returns", discounted_returns)
