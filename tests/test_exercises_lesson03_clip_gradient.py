"""Lesson 03's clip_gradient (ppo_lib/course/exercises/lesson03_clip_gradient.py): what its
cases catch beyond what tests/test_exercises_all.py proves for every exercise."""

import pytest

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson03_clip_gradient

EXERCISE = grading.EXERCISES["clip_gradient"]


def test_the_exercise_belongs_to_lesson_03():
    assert EXERCISE.lesson == "03"


def test_notes_box_gets_the_hint_about_the_notes(capsys):
    box = next(m.answer for m in EXERCISE.mistakes() if "box" in m.description)
    assert not grading.check("clip_gradient", box)
    assert "notes" in capsys.readouterr().out


def test_reference_matches_the_library_loss():
    # the reference is the per-sample gradient of -n * clipped_surrogate_loss
    import torch
    from ppo_lib.losses import clipped_surrogate_loss
    g = torch.Generator().manual_seed(0)
    r = (torch.rand(50, generator=g) * 2).requires_grad_(True)
    a = torch.randn(50, generator=g)
    (grad,) = torch.autograd.grad(clipped_surrogate_loss(r, a, 0.2) * -50, r)
    assert torch.allclose(lesson03_clip_gradient.clip_gradient(r, a, 0.2), grad)


def test_more_right_answers_pass():
    import torch

    def solution_notebook(ratio, advantages, clip_range):   # solutions/03, cell 18
        flat = torch.where(advantages > 0, ratio > 1 + clip_range, ratio < 1 - clip_range)
        return torch.where(flat, torch.zeros_like(advantages), advantages)

    def by_autograd(ratio, advantages, clip_range):
        r = ratio.clone().requires_grad_(True)
        objective = torch.min(r * advantages, r.clamp(1 - clip_range, 1 + clip_range) * advantages)
        (grad,) = torch.autograd.grad(objective.sum(), r)
        return grad

    def with_masks(ratio, advantages, clip_range):
        keep = ((advantages > 0) & (ratio <= 1 + clip_range)) | \
               ((advantages < 0) & (ratio >= 1 - clip_range))
        return advantages * keep.float()

    for fn in (solution_notebook, by_autograd, with_masks):
        assert grading.check("clip_gradient", fn)


def test_log_bounds_are_rejected(capsys):
    import torch

    def log_bounds(ratio, advantages, clip_range):
        log_r = ratio.log()
        flat = torch.where(advantages > 0, log_r > clip_range, log_r < -clip_range)
        return torch.where(flat, torch.zeros_like(advantages), advantages)
    assert not grading.check("clip_gradient", log_bounds)
    assert "log r" in capsys.readouterr().out
