"""Lesson 02's exercises: natural_gradient_step (here) and the core ids it grades
(tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import pytest
import torch

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson02  # noqa: F401  (registers natural_gradient_step)
from ppo_lib.course.exercises.lesson02 import natural_gradient_step
from ppo_lib.trpo import conjugate_gradient

EXERCISE = grading.EXERCISES["natural_gradient_step"]


def test_the_exercise_belongs_to_lesson_02():
    assert EXERCISE.lesson == "02"


def test_reference_meets_the_quadratic_kl_with_equality():
    torch.manual_seed(0)
    m = torch.randn(4, 4, dtype=torch.float64)
    fisher = m @ m.T + torch.eye(4, dtype=torch.float64)
    g = torch.randn(4, dtype=torch.float64)
    step = natural_gradient_step(g, fisher, 0.03)
    assert (0.5 * step @ fisher @ step).item() == pytest.approx(0.03)
    # ... and agrees with what trpo_step computes with conjugate gradient (F known via F v).
    x = conjugate_gradient(fisher.__matmul__, g, iters=20, tol=0.0)
    torch.testing.assert_close(torch.sqrt(2 * 0.03 / (x @ fisher @ x)) * x, step)


def test_a_step_via_an_explicit_inverse_passes():
    def mine(g, fisher, delta):
        x = torch.linalg.inv(fisher) @ g
        return (2 * delta / (g @ x)) ** 0.5 * x
    assert grading.check("natural_gradient_step", mine)


def test_lesson_02_grades_three_exercises():
    grading.load_exercises()
    ids = {e.id for e in grading.EXERCISES.values() if e.lesson == "02"}
    assert {"kl_categorical", "conjugate_gradient", "natural_gradient_step"} <= ids


@pytest.mark.parametrize("description, words", [
    ("plain gradient direction g", "F^-1 g"), ("no square root", "square root")])
def test_hints_name_the_mistake(capsys, description, words):
    wrong = next(m.answer for m in EXERCISE.mistakes() if m.description == description)
    assert not grading.check("natural_gradient_step", wrong)
    assert words in capsys.readouterr().out


def test_more_right_answers_pass():
    def via_x_f_x(g, fisher, delta):   # x^T F x = g^T F^-1 g
        x = torch.linalg.solve(fisher, g)
        return x * torch.sqrt(2 * delta / (x @ fisher @ x))

    def via_cholesky(g, fisher, delta):
        chol = torch.linalg.cholesky(fisher)
        x = torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)
        return (2 * delta / g.dot(x)).sqrt() * x

    def via_conjugate_gradient(g, fisher, delta):
        x = conjugate_gradient(fisher.__matmul__, g, iters=20)
        return torch.sqrt(2 * delta / (g @ x)) * x

    for fn in (via_x_f_x, via_cholesky, via_conjugate_gradient):
        assert grading.check("natural_gradient_step", fn)
