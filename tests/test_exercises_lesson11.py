"""Lesson 11's exercises (ppo_lib/course/exercises/lesson11.py): right answers written other
ways pass, every classic mistake fails with a hint that names it, and the cases use the
shapes the lesson passes (tests/test_exercises_all.py proves the same for every exercise)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ppo_lib import rlhf
from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson11

IDS = ["bradley_terry_loss", "kl_penalized_rewards", "group_relative_advantages"]
MISTAKES = [(i, m) for i in IDS for m in grading.EXERCISES[i].mistakes()]


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(grading, "RESULTS", {})
    monkeypatch.delenv(grading.NBGRADER_ENV, raising=False)
    monkeypatch.delenv(grading.RESULTS_ENV, raising=False)


def test_the_exercises_belong_to_lesson_11():
    assert {grading.EXERCISES[i].lesson for i in IDS} == {"11"}


def test_references_are_the_library_functions():
    assert grading.EXERCISES["bradley_terry_loss"].reference is rlhf.bradley_terry_loss
    assert grading.EXERCISES["kl_penalized_rewards"].reference is rlhf.kl_penalized_rewards
    assert (grading.EXERCISES["group_relative_advantages"].reference
            is rlhf.group_relative_advantages)


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id, capsys):
    assert grading.check(exercise_id, grading.EXERCISES[exercise_id].reference), \
        capsys.readouterr().out


def stub(*args):
    # YOUR CODE HERE
    raise NotImplementedError()


@pytest.mark.parametrize("exercise_id", IDS)
def test_unfinished_stub_is_not_done_yet(exercise_id, capsys):
    assert not grading.check(exercise_id, stub)
    assert f"✗ {exercise_id}: not done yet" in capsys.readouterr().out


@pytest.mark.parametrize("exercise_id,mistake", MISTAKES,
                         ids=[f"{i}-{m.description}" for i, m in MISTAKES])
def test_mistake_fails_with_its_hint(exercise_id, mistake, capsys):
    result = grading.check(exercise_id, mistake.answer)
    assert not result, mistake.description
    shown = (result.verdict.message + " " + result.verdict.hint).lower()
    assert mistake.hint.lower() in shown, capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", IDS)
def test_cases_are_seeded_float32(exercise_id):
    first, again = grading.EXERCISES[exercise_id].cases(), grading.EXERCISES[exercise_id].cases()
    for a, b in zip(first, again):
        tensors = [t for t in a.args if isinstance(t, torch.Tensor)]
        assert tensors and all(t.dtype == torch.float32 for t in tensors), a.name
        assert all(torch.equal(t, u) for t, u in zip(tensors, b.args)), a.name


def _shapes(exercise_id, index=0):
    return [tuple(c.args[index].shape) for c in grading.EXERCISES[exercise_id].cases()]


# ---------------------------------------------------------------------------------------
# bradley_terry_loss


def solution_11(chosen_rewards, rejected_rewards):
    """The body the lesson's solution holds."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def with_softplus(chosen, rejected):
    return F.softplus(rejected - chosen).mean()


def with_bce_logits(chosen, rejected):
    margin = chosen - rejected
    return F.binary_cross_entropy_with_logits(margin, torch.ones_like(margin))


def with_a_loop_over_pairs(chosen, rejected):
    total = 0.0
    for c, r in zip(chosen, rejected):
        total = total - F.logsigmoid(c - r)
    return total / len(chosen)


def with_the_logsigmoid_identity(chosen, rejected):
    m = chosen - rejected
    return -(m - F.softplus(m)).mean()        # log sigmoid(m) = m - softplus(m)


def with_a_module(chosen, rejected):
    return -torch.nn.LogSigmoid()(chosen - rejected).sum() / chosen.numel()


@pytest.mark.parametrize("answer", [solution_11, with_softplus, with_bce_logits,
                                    with_a_loop_over_pairs, with_the_logsigmoid_identity,
                                    with_a_module], ids=lambda f: f.__name__)
def test_right_bradley_terry_losses_pass(answer, capsys):
    assert grading.check("bradley_terry_loss", answer), capsys.readouterr().out


def test_log_of_sigmoid_passes_small_margins_and_fails_the_large_ones(capsys):
    def log_of_sigmoid(chosen_rewards, rejected_rewards):
        return -torch.log(torch.sigmoid(chosen_rewards - rejected_rewards)).mean()
    result = grading.check("bradley_terry_loss", log_of_sigmoid)
    assert not result
    assert "case 'large margins" in result.verdict.message
    assert "logsigmoid" in result.verdict.hint and "softplus" in result.verdict.hint


def test_log_of_sigmoid_is_exact_at_minus_40_in_float32():
    """Why the large-margin case goes down to -120: in float32 log(sigmoid(m)) is exact at
    m = -40 and only overflows (exp(-m) = inf) below about -88."""
    assert torch.log(torch.sigmoid(torch.tensor(-40.0))).item() == pytest.approx(-40.0)
    assert torch.log(torch.sigmoid(torch.tensor(-120.0))).item() == -math.inf
    assert F.logsigmoid(torch.tensor(-120.0)).item() == pytest.approx(-120.0)


def test_bradley_terry_shapes_and_gradient_case():
    shapes = _shapes("bradley_terry_loss")
    assert (1,) in shapes and (64,) in shapes
    graph = [c for c in grading.EXERCISES["bradley_terry_loss"].cases()
             if c.args[0].requires_grad]
    assert graph and all(not t.is_leaf for c in graph for t in c.args)


# ---------------------------------------------------------------------------------------
# kl_penalized_rewards


def solution_11_rewards(scores, logprobs, ref_logprobs, kl_coef):
    rewards = -kl_coef * (logprobs - ref_logprobs)
    rewards[:, -1] += scores                  # in place, but into a new tensor
    return rewards


def with_cat(scores, logprobs, ref_logprobs, kl_coef):
    bonus = torch.cat([torch.zeros_like(logprobs[:, :-1]), scores[:, None]], dim=1)
    return bonus - kl_coef * (logprobs - ref_logprobs)


def in_place_on_a_clone(s, lp, ref, beta):
    rewards = lp.clone()
    rewards.sub_(ref).mul_(-beta)
    rewards[:, -1].add_(s)
    return rewards


def with_pad(scores, logprobs, ref_logprobs, kl_coef):
    last = F.pad(scores.unsqueeze(1), (logprobs.shape[1] - 1, 0))
    return last - kl_coef * (logprobs - ref_logprobs)


def with_loops(scores, logprobs, ref_logprobs, kl_coef):
    b, t = logprobs.shape
    rewards = torch.zeros(b, t)
    for i in range(b):
        for j in range(t):
            rewards[i, j] = -kl_coef * (logprobs[i, j] - ref_logprobs[i, j])
        rewards[i, t - 1] = rewards[i, t - 1] + scores[i]
    return rewards


def with_one_hot(scores, logprobs, ref_logprobs, kl_coef):
    last = F.one_hot(torch.full_like(scores, logprobs.shape[1] - 1, dtype=torch.long),
                     logprobs.shape[1])
    return -kl_coef * (logprobs - ref_logprobs) + scores.unsqueeze(-1) * last


@pytest.mark.parametrize("answer", [solution_11_rewards, with_cat, in_place_on_a_clone,
                                    with_pad, with_loops, with_one_hot],
                         ids=lambda f: f.__name__)
def test_right_kl_penalized_rewards_pass(answer, capsys):
    assert grading.check("kl_penalized_rewards", answer), capsys.readouterr().out


def test_writing_into_the_callers_logprobs_is_caught_and_the_cases_stay_intact(capsys):
    def writes_into_logprobs(scores, logprobs, ref_logprobs, kl_coef):
        logprobs.sub_(ref_logprobs).mul_(-kl_coef)
        logprobs[:, -1] += scores
        return logprobs                       # the right values, in the caller's tensor
    result = grading.check("kl_penalized_rewards", writes_into_logprobs)
    assert not result and "changed its inputs in place" in result.verdict.message
    assert grading.check("kl_penalized_rewards", rlhf.kl_penalized_rewards)


def test_kl_shapes():
    shapes = _shapes("kl_penalized_rewards", 1)
    assert any(s[0] == 1 and s[1] > 1 for s in shapes), "a batch of one (1, T)"
    assert any(s[1] == 1 for s in shapes), "one-token completions (T = 1)"
    assert any(s[0] > 1 and s[1] > 1 and s[0] != s[1] for s in shapes)
    assert any(s[0] == s[1] for s in shapes), "B == T, where rewards[-1] broadcasts"
    coefs = {c.args[3] for c in grading.EXERCISES["kl_penalized_rewards"].cases()}
    assert len(coefs) >= 3


def test_sequence_kl_on_the_last_token_equals_the_reference_only_when_t_is_1():
    wrong = lesson11.KL_KNOWN[0].answer
    s, lp, ref = lesson11._kl_inputs(0, 3, 1)
    assert torch.allclose(wrong(s, lp, ref, 0.1), rlhf.kl_penalized_rewards(s, lp, ref, 0.1))
    s, lp, ref = lesson11._kl_inputs(0, 3, 5)
    assert not torch.allclose(wrong(s, lp, ref, 0.1), rlhf.kl_penalized_rewards(s, lp, ref, 0.1))


# ---------------------------------------------------------------------------------------
# group_relative_advantages


def solution_11_advantages(rewards, eps=1e-4):
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def population_std(rewards, eps=1e-4):
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, unbiased=False,
                                                                    keepdim=True) + eps)


def with_correction_0_and_var(rewards, eps=1e-4):
    centered = rewards - rewards.mean(-1, keepdim=True)
    return centered / torch.sqrt(rewards.var(-1, correction=0, keepdim=True) + eps ** 2)


def with_sqrt_var_plus_eps_squared(rewards, eps=1e-4):
    var = ((rewards - rewards.mean(1, keepdim=True)) ** 2).sum(1, keepdim=True) / (
        rewards.shape[1] - 1)
    return (rewards - rewards.mean(1, keepdim=True)) / torch.sqrt(var + eps ** 2)


def with_clamp(rewards, eps=1e-4):
    std = rewards.std(dim=1, keepdim=True).clamp(min=eps)
    return (rewards - rewards.mean(dim=1, keepdim=True)) / std


def with_a_loop_over_groups(rewards, eps=1e-4):
    rows = [(group - group.mean()) / (group.std() + eps) for group in rewards]
    return torch.stack(rows)


def transposed(rewards, eps=1e-4):
    columns = rewards.T                       # (G, P): a group is a column here
    return ((columns - columns.mean(0)) / (columns.std(0) + eps)).T


def with_views(rewards, eps=1e-4):
    p, g = rewards.shape
    mean = rewards.mean(1).view(p, 1).expand(p, g)
    std = rewards.std(1).view(p, 1).repeat(1, g)
    return (rewards - mean) / (std + eps)


@pytest.mark.parametrize("answer", [solution_11_advantages, population_std,
                                    with_correction_0_and_var, with_sqrt_var_plus_eps_squared,
                                    with_clamp, with_a_loop_over_groups, transposed, with_views],
                         ids=lambda f: f.__name__)
def test_right_group_relative_advantages_pass(answer, capsys):
    assert grading.check("group_relative_advantages", answer), capsys.readouterr().out


def test_dividing_without_eps_fails_on_the_group_of_equal_rewards(capsys):
    def no_eps(rewards, eps=1e-4):
        return (rewards - rewards.mean(1, keepdim=True)) / rewards.std(1, keepdim=True)
    result = grading.check("group_relative_advantages", no_eps)
    assert not result and "all scored the same" in result.verdict.message
    assert "eps" in result.verdict.hint and "nan" in result.verdict.message


def test_grpo_shapes():
    shapes = _shapes("group_relative_advantages")
    assert {2, 4, 8} <= {g for _, g in shapes}
    assert any(p == 1 for p, _ in shapes), "a batch of one prompt (1, G)"
    assert any(p > 1 and p != g for p, g in shapes) and any(p == g for p, g in shapes)


def test_grpo_cases_tell_the_conventions_apart():
    """Every non-degenerate group has std >= 0.5 (so where eps sits changes the values by
    less than the tolerance), some case has a group of equal rewards, and on every case of
    several prompts the global standardisation differs from the group one."""
    constant_groups = 0
    for case in grading.EXERCISES["group_relative_advantages"].cases():
        rewards = case.args[0]
        std = rewards.std(1)
        constant_groups += int((std == 0).sum())
        assert bool(((std == 0) | (std >= 0.5)).all()), case.name
        if rewards.shape[0] > 1:
            whole = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
            assert not torch.allclose(whole, rlhf.group_relative_advantages(rewards),
                                      atol=1e-2), case.name
    assert constant_groups >= 2
