"""ppo_lib.fused: the hand-written gradient of the categorical PPO loss equals autograd's
on the reference (categorical_log_prob_entropy + ppo_loss_terms)."""

import pytest
import torch

from ppo_lib.distributions import categorical_log_prob_entropy
from ppo_lib.fused import categorical_ppo_loss
from ppo_lib.kl import approx_kl
from ppo_lib.losses import ppo_loss_terms


def batch(n=64, actions=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, actions, generator=g) * 2
    values = torch.randn(n, generator=g)
    acts = torch.randint(0, actions, (n,), generator=g)
    with torch.no_grad():
        log_probs, _ = categorical_log_prob_entropy(logits, acts)
    old_log_probs = log_probs + 0.4 * torch.randn(n, generator=g)   # ratios far from 1
    advantages = torch.randn(n, generator=g)
    advantages[:4] = 0.0                                              # A = 0 too
    returns = torch.randn(n, generator=g)
    old_values = values + 0.3 * torch.randn(n, generator=g)
    return logits, values, acts, old_log_probs, advantages, returns, old_values


def reference(logits, values, acts, old_log_probs, advantages, returns, clip_range, vf_coef,
              ent_coef, old_values, clip_range_vf):
    log_probs, entropy = categorical_log_prob_entropy(logits, acts)
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    terms = ppo_loss_terms(ratio, advantages, values, returns, entropy, clip_range, vf_coef,
                           ent_coef, old_values, clip_range_vf)
    return terms.total, terms, log_ratio, ratio


@pytest.mark.parametrize("clip_range_vf", [None, 0.1])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
@pytest.mark.parametrize("clip_range", [0.1, 0.2, 0.5])
def test_fused_loss_terms_and_gradients_equal_the_reference(clip_range, ent_coef, clip_range_vf):
    logits, values, acts, old_lp, adv, ret, old_v = batch()
    results = []
    for fn in (reference, categorical_ppo_loss):
        z = logits.clone().requires_grad_(True)
        v = values.clone().requires_grad_(True)
        loss, terms, log_ratio, ratio = fn(z, v, acts, old_lp, adv, ret, clip_range,
                                           0.7, ent_coef, old_v, clip_range_vf)
        (2.0 * loss).backward()  # an upstream gradient other than 1
        results.append((loss, terms, log_ratio, ratio, z.grad, v.grad))
    (ref_loss, ref_terms, ref_lr, ref_r, ref_gz, ref_gv), (loss, terms, lr, r, gz, gv) = results
    clipped = (ref_r - 1).abs() > clip_range
    assert 0.05 < clipped.float().mean() < 0.95, "both clipped and unclipped samples"
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    for name in ("policy", "value", "entropy"):
        torch.testing.assert_close(getattr(terms, name), getattr(ref_terms, name),
                                   rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lr, ref_lr, rtol=0, atol=0)
    torch.testing.assert_close(r, ref_r, rtol=0, atol=0)
    torch.testing.assert_close(gz, ref_gz, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gv, ref_gv, rtol=1e-5, atol=1e-7)
    assert gz.abs().sum() > 0 and gv.abs().sum() > 0
    assert not lr.requires_grad and approx_kl(lr) >= 0


def test_fused_gradient_at_the_clip_boundaries():
    """Ratios exactly at 1 - eps, 1 and 1 + eps: clamp passes the gradient there (the
    boundary is inside), and min() of two equal terms gives the full A r in total."""
    eps = 0.25  # 1 +- 0.25 are exact in float32
    logits = torch.zeros(6, 2)
    acts = torch.zeros(6, dtype=torch.long)
    ratios = torch.tensor([1 - eps, 1.0, 1 + eps, 1 - eps, 1.0, 1 + eps])
    old_lp = torch.log_softmax(logits, -1)[:, 0] - torch.log(ratios)
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    values, ret = torch.zeros(6), torch.zeros(6)
    grads = []
    for fn in (reference, categorical_ppo_loss):
        z = logits.clone().requires_grad_(True)
        fn(z, values.clone().requires_grad_(True), acts, old_lp, adv, ret, eps, 0.5, 0.0,
           None, None)[0].backward()
        grads.append(z.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-8)
