"""Lesson 03's own exercise: the reference passes, every registered mistake is rejected."""

import pytest

from ppo_lib import grading
from ppo_lib.exercises import lesson03  # noqa: F401  (registers clip_gradient)

EXERCISE = grading.EXERCISES["clip_gradient"]


def test_reference_passes():
    assert EXERCISE.lesson == "03"
    assert grading.check("clip_gradient", EXERCISE.reference)


@pytest.mark.parametrize("mistake", EXERCISE.mistakes(), ids=lambda m: m.description)
def test_mistake_rejected(mistake):
    assert not grading.check("clip_gradient", mistake.answer)


def test_unfinished_stub_fails_with_message(capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError()
    assert not grading.check("clip_gradient", stub)
    assert "not done yet" in capsys.readouterr().out


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
    assert torch.allclose(lesson03.clip_gradient(r, a, 0.2), grad)
