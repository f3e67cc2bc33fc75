"""ppo_lib.kl: exact categorical KL and the k3 estimator."""

import math

import pytest
import torch

from ppo_lib.kl import approx_kl, categorical_mean_kl, kl_categorical

T = torch.tensor


def test_kl_of_a_distribution_with_itself_is_zero():
    p = torch.softmax(torch.randn(4, 5, generator=torch.Generator().manual_seed(0)), -1)
    assert torch.allclose(kl_categorical(p, p), torch.zeros(4), atol=1e-7)


def test_kl_known_value_and_direction():
    p, q = T([0.5, 0.5]), T([0.9, 0.1])
    assert math.isclose(kl_categorical(p, q).item(), 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5), rel_tol=1e-6)
    assert not math.isclose(kl_categorical(q, p).item(), kl_categorical(p, q).item(), rel_tol=1e-3)


def test_kl_zero_probability_terms_contribute_zero():
    assert math.isclose(kl_categorical(T([1.0, 0.0]), T([0.5, 0.5])).item(), math.log(2), rel_tol=1e-6)


def test_kl_gradients_are_finite_where_p_is_zero():
    logits_p = T([2.0, -1.0, 0.5], requires_grad=True)
    logits_q = T([0.0, 1.0, -0.5], requires_grad=True)
    p = torch.softmax(logits_p, -1) * T([1.0, 0.0, 1.0])  # an action p never takes
    p = p / p.sum()
    q = torch.softmax(logits_q, -1) * T([1.0, 0.0, 1.0])  # and q gives it 0 too
    kl_categorical(p, q).backward()
    assert torch.isfinite(logits_p.grad).all() and torch.isfinite(logits_q.grad).all()
    assert logits_q.grad.abs().sum() > 0


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(6, 4, generator=g), -1)
    q = torch.softmax(torch.randn(6, 4, generator=g), -1)
    want = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=p),
                                             torch.distributions.Categorical(probs=q))
    assert torch.allclose(kl_categorical(p, q), want, atol=1e-6)


def test_kl_rejects_mismatched_actions():
    with pytest.raises(ValueError, match="last axis"):
        kl_categorical(torch.ones(3) / 3, torch.ones(4) / 4)


def test_approx_kl_is_zero_for_the_same_policy_and_never_negative():
    assert approx_kl(torch.zeros(5)).item() == 0.0
    log_ratio = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    assert approx_kl(log_ratio).item() >= 0
    assert (((log_ratio.exp() - 1) - log_ratio) >= -1e-6).all()  # each term, up to rounding


def test_approx_kl_known_value():
    want = ((math.exp(0.5) - 1 - 0.5) + (math.exp(-0.5) - 1 + 0.5)) / 2
    assert math.isclose(approx_kl(T([0.5, -0.5])).item(), want, rel_tol=1e-6)


def test_approx_kl_estimates_the_exact_kl():
    # samples from the old policy p; log_ratio = log q(a) - log p(a); E_p[k3] = KL(p || q)
    g = torch.Generator().manual_seed(3)
    p, q = T([0.6, 0.3, 0.1]), T([0.4, 0.4, 0.2])
    actions = torch.multinomial(p, 200_000, replacement=True, generator=g)
    estimate = approx_kl(q.log()[actions] - p.log()[actions]).item()
    assert math.isclose(estimate, kl_categorical(p, q).item(), rel_tol=0.03)


def test_categorical_mean_kl_from_logits():
    old_logits = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    logits = torch.tensor([[1.0, 0.0], [1.0, -1.0]], requires_grad=True)
    want = kl_categorical(torch.softmax(old_logits, -1), torch.softmax(logits, -1)).mean()
    got = categorical_mean_kl(old_logits, logits)
    assert torch.equal(got, want)
    assert categorical_mean_kl(logits, logits).item() == 0.0
    got.backward()
    assert logits.grad[1].abs().max() < 1e-6   # a row where the policies agree: no pull
    assert logits.grad[0, 0] > 0               # KL grows as logit 0 moves further away


# --- PPO-penalty (lesson 07) -----------------------------------------------------------

from ppo_lib.kl import adaptive_kl_coefficient, kl_penalty_loss  # noqa: E402


@pytest.mark.parametrize("kl, beta_after", [
    (0.001, 0.5), (3 / 256 / 1.5 - 1e-9, 0.5),      # below d_targ / 1.5: halve
    (3 / 256 / 1.5, 1.0), (3 / 256, 1.0), (3 / 256 * 1.5, 1.0),   # the band, bounds included
    (3 / 256 * 1.5 + 1e-9, 2.0), (0.5, 2.0),         # above d_targ * 1.5: double
    (-4e-9, 0.5),                                    # float32 rounding of a KL of 0
])
def test_adaptive_kl_coefficient_follows_the_papers_rule(kl, beta_after):
    assert adaptive_kl_coefficient(1.0, kl, 3 / 256) == beta_after


def test_adaptive_kl_coefficient_takes_a_tensor_and_returns_a_float():
    out = adaptive_kl_coefficient(0.3, torch.tensor(0.05), 0.01)
    assert type(out) is float and out == 0.6


@pytest.mark.parametrize("args, match", [
    ((0.0, 0.01, 0.01), "beta"), ((-1.0, 0.01, 0.01), "beta"), ((float("inf"), 0.01, 0.01), "beta"),
    ((1.0, float("nan"), 0.01), "kl"), ((1.0, 0.01, 0.0), "target_kl"),
    ((1.0, 0.01, None), "target_kl"),
])
def test_adaptive_kl_coefficient_names_bad_arguments(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        adaptive_kl_coefficient(*args)


def test_kl_penalty_loss_is_minus_r_a_plus_beta_k3():
    log_ratio = T([0.1, -0.2, 0.05, 0.3])
    ratio, adv = log_ratio.exp(), T([1.0, -0.5, 2.0, -1.0])
    k3 = ((ratio - 1) - log_ratio).mean()
    assert torch.allclose(kl_penalty_loss(ratio, adv, log_ratio, 0.7),
                          -(ratio * adv).mean() + 0.7 * k3)
    # by hand, the first sample alone: -(e^0.1 * 1) + 0.7 * ((e^0.1 - 1) - 0.1)
    one = kl_penalty_loss(ratio[:1], adv[:1], log_ratio[:1], 0.7).item()
    assert math.isclose(one, -math.exp(0.1) + 0.7 * (math.exp(0.1) - 1 - 0.1), rel_tol=1e-6)


def test_kl_penalty_gradient_is_zero_kl_gradient_at_the_old_policy():
    log_ratio = torch.zeros(5, requires_grad=True)
    adv = T([1.0, -1.0, 0.5, 0.0, 2.0])
    kl_penalty_loss(log_ratio.exp(), adv, log_ratio, 3.0).backward()
    assert torch.allclose(log_ratio.grad, -adv / 5)  # beta's term adds nothing at r = 1


def test_kl_penalty_loss_names_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        kl_penalty_loss(torch.ones(3), torch.ones(4), torch.zeros(3), 1.0)
