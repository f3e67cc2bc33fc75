"""ppo_lib.losses: values and autograd gradients in all six regions of the clipped loss."""

import pytest
import torch

from ppo_lib.losses import (clipped_surrogate_loss, policy_gradient_loss, ppo_loss,
                            ppo_loss_terms, value_loss)

T = torch.tensor
EPS = 0.2

# (name, ratio, advantage, loss, d loss / d ratio) for one sample, eps = 0.2
REGIONS = [
    ("A>0, r below 1-eps: unclipped", 0.5, 2.0, -1.0, -2.0),
    ("A>0, r inside", 1.1, 2.0, -2.2, -2.0),
    ("A>0, r above 1+eps: clipped", 1.5, 2.0, -2.4, 0.0),
    ("A<0, r below 1-eps: clipped", 0.5, -1.0, 0.8, 0.0),
    ("A<0, r inside", 0.9, -1.0, 0.9, 1.0),
    ("A<0, r above 1+eps: unclipped", 1.5, -1.0, 1.5, 1.0),
]


@pytest.mark.parametrize("name,r,a,loss,grad", REGIONS, ids=[r[0] for r in REGIONS])
def test_clipped_loss_value_and_gradient_per_region(name, r, a, loss, grad):
    ratio = T([r], requires_grad=True)
    out = clipped_surrogate_loss(ratio, T([a]), EPS)
    assert out.shape == ()
    assert torch.allclose(out, T(loss))
    out.backward()
    assert torch.allclose(ratio.grad, T([grad]))


def test_clipped_loss_is_the_mean_over_samples():
    ratio = T([r for _, r, *_ in REGIONS], requires_grad=True)
    adv = T([a for _, _, a, *_ in REGIONS])
    out = clipped_surrogate_loss(ratio, adv, EPS)
    assert torch.allclose(out, T([l for *_, l, _ in REGIONS]).mean())
    out.backward()
    assert torch.allclose(ratio.grad, T([g for *_, g in REGIONS]) / len(REGIONS))


def test_clipped_loss_at_ratio_one_is_minus_mean_advantage():
    adv = T([1.0, -2.0, 4.0])
    assert torch.allclose(clipped_surrogate_loss(torch.ones(3), adv, EPS), -adv.mean())


def test_clipped_loss_checks_arguments():
    with pytest.raises(ValueError, match="clip_range"):
        clipped_surrogate_loss(torch.ones(2), torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="advantages"):
        clipped_surrogate_loss(torch.ones(2), torch.ones(3), 0.2)


def test_value_loss_is_mse_without_half():
    assert torch.allclose(value_loss(T([1.0, 2.0, 3.0, 0.0]), T([2.0, 2.0, 1.0, 1.0])), T(1.5))


def test_value_loss_clips_the_prediction_around_old_values():
    values, returns, old = T([5.0, -5.0]), T([4.0, -4.0]), T([4.5, -4.5])
    # clipped predictions: 4.6 and -4.6 -> errors 0.6, 0.6
    assert torch.allclose(value_loss(values, returns, old, 0.1), T(0.36))
    values = values.clone().requires_grad_()
    value_loss(values, returns, old, 0.1).backward()
    assert torch.equal(values.grad, torch.zeros(2))  # outside the clip range: no gradient


def test_value_loss_clip_needs_old_values():
    with pytest.raises(ValueError, match="old_values"):
        value_loss(torch.zeros(2), torch.zeros(2), None, 0.2)


def test_policy_gradient_loss_detaches_advantages():
    log_probs = T([-1.0, -2.0], requires_grad=True)
    adv = T([1.0, 3.0], requires_grad=True)
    out = policy_gradient_loss(log_probs, adv)
    assert torch.allclose(out, T(3.5))
    out.backward()
    assert torch.allclose(log_probs.grad, T([-0.5, -1.5])) and adv.grad is None


def test_ppo_loss_combines_the_terms():
    ratio, adv = T([1.0, 1.5]), T([1.0, 1.0])
    values, returns, entropy = T([0.0, 1.0]), T([1.0, 1.0]), T([0.5, 0.7])
    terms = ppo_loss_terms(ratio, adv, values, returns, entropy, 0.2, vf_coef=0.5, ent_coef=0.01)
    assert torch.allclose(terms.policy, T(-1.1))
    assert torch.allclose(terms.value, T(0.5))
    assert torch.allclose(terms.entropy, T(0.6))
    assert torch.allclose(terms.total, T(-1.1 + 0.25 - 0.006))
    assert torch.allclose(ppo_loss(ratio, adv, values, returns, entropy, 0.2, 0.5, 0.01),
                          terms.total)
