"""Lesson 05's ppo_loss (ppo_lib/course/exercises/lesson05_ppo_loss.py): other right answers
pass, and the cases are the shapes the trainer uses (tests/test_exercises_all.py proves for every exercise that the reference passes and
every registered mistake is rejected with its own hint)."""

import pytest
import torch
import torch.nn.functional as F

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson05_ppo_loss
from ppo_lib.losses import clipped_surrogate_loss, ppo_loss, value_loss

EXERCISE = grading.EXERCISES["ppo_loss"]


def test_the_exercise_belongs_to_lesson_05():
    assert EXERCISE.lesson == "05"


def test_unfinished_stub_fails_with_message(capsys):
    def stub(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
             ent_coef=0.0, old_values=None, clip_range_vf=None):
        raise NotImplementedError()
    assert not grading.check("ppo_loss", stub)
    assert "not done yet" in capsys.readouterr().out


def test_hint_names_the_entropy_sign(capsys):
    wrong = next(m.answer for m in EXERCISE.mistakes() if "wrong sign" in m.description)
    assert not grading.check("ppo_loss", wrong)
    assert "bonus" in capsys.readouterr().out


def solution_05(ratio, advantages, values, returns, entropy, clip_range, vf_coef=0.5,
                ent_coef=0.0, old_values=None, clip_range_vf=None):
    """The body of solutions/05_ppo_cartpole.ipynb."""
    surrogate = torch.min(ratio * advantages,
                          torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages)
    if clip_range_vf is not None:
        values = old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    value_loss = ((returns - values) ** 2).mean()
    return -surrogate.mean() + vf_coef * value_loss - ent_coef * entropy.mean()


def with_where(r, adv, v, ret, h, eps, c1=0.5, c2=0.0, v_old=None, eps_vf=None):
    """Renamed parameters, torch.where for the clip, F.mse_loss for the critic."""
    clipped = torch.where(r > 1 + eps, 1 + eps, torch.where(r < 1 - eps, 1 - eps, r))
    policy = -torch.minimum(r * adv, clipped * adv).mean()
    if eps_vf is not None:
        v = v_old + (v - v_old).clamp(-eps_vf, eps_vf)
    return policy + c1 * F.mse_loss(v, ret) - c2 * h.mean()


def as_maximum_of_losses(ratio, advantages, values, returns, entropy, clip_range,
                         vf_coef=0.5, ent_coef=0.0, old_values=None, clip_range_vf=None):
    """max of the negated terms (CleanRL's form), flattened first."""
    r, a = ratio.reshape(-1), advantages.reshape(-1)
    pg = torch.max(-a * r, -a * torch.clamp(r, 1 - clip_range, 1 + clip_range)).mean()
    v = values.flatten()
    if clip_range_vf is not None:
        v = old_values.flatten() + torch.clamp(v - old_values.flatten(), -clip_range_vf,
                                               clip_range_vf)
    vl = (v - returns.flatten()).pow(2).sum() / v.numel()
    return pg - ent_coef * entropy.flatten().mean() + vf_coef * vl


def from_library_parts(ratio, advantages, values, returns, entropy, clip_range,
                       vf_coef=0.5, ent_coef=0.0, old_values=None, clip_range_vf=None):
    return (clipped_surrogate_loss(ratio, advantages, clip_range)
            + vf_coef * value_loss(values, returns, old_values, clip_range_vf)
            - ent_coef * entropy.mean())


@pytest.mark.parametrize("answer", [solution_05, with_where, as_maximum_of_losses,
                                    from_library_parts], ids=lambda f: f.__name__)
def test_right_answers_pass(answer, capsys):
    assert grading.check("ppo_loss", answer), capsys.readouterr().out


def test_cases_use_the_shapes_and_tensors_the_trainer_passes():
    cases = EXERCISE.cases()
    shapes = {tuple(c.kwargs["ratio"].shape) for c in cases}
    assert (1,) in shapes and any(len(s) == 2 for s in shapes)
    graph = [c for c in cases if c.kwargs["values"].requires_grad]
    assert graph and all(not c.kwargs[k].is_leaf for c in graph
                         for k in ("ratio", "values", "entropy"))


def test_cases_separate_the_three_terms():
    # each coefficient changes the reference's value on the graded batch, so a term left
    # out cannot pass by accident
    b = lesson05_ppo_loss._batch(0)
    base = ppo_loss(**b, clip_range=0.2, vf_coef=0.0, ent_coef=0.0)
    assert ppo_loss(**b, clip_range=0.2, vf_coef=0.5, ent_coef=0.0) != base
    assert ppo_loss(**b, clip_range=0.2, vf_coef=0.0, ent_coef=0.5) != base
    assert ppo_loss(**b, clip_range=0.1, vf_coef=0.0, ent_coef=0.0) != base
