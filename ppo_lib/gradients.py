"""The PPO loss and its gradient at the policy's heads, written out (the maths of
``ppo_lib.fastpath``'s gradient step; tests/test_fastpath.py checks them against autograd).

With log pi = log_softmax(z), p = exp(log pi), r = exp(log pi_a - log pi_old), n = batch,

    L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) + c1 mean((R - V)^2) - c2 mean(H)

    dL/dz = g (onehot(a) - p) + (c2 / n) p (log pi + H),   g = -(1 / n) A r [unclipped <= clipped]
    dL/dV = (2 c1 / n) (V - R)      (times [|V - V_old| <= eps_vf] with value clipping)

where [unclipped <= clipped] is 1 where min() takes the unclipped term (the clipped term
passes no gradient outside [1 - eps, 1 + eps]). Pure functions of tensors, no graph: the
same numbers as ``losses.ppo_loss_terms`` on ``evaluate_actions`` up to float32 rounding.
"""

from __future__ import annotations

import torch

from .distributions import LOG_SQRT_2PI, gaussian_entropy


def clipped_and_value_gradients(log_ratio, advantages, values, returns, clip_range, vf_coef,
                                old_values, clip_range_vf):
    """The clipped surrogate and the value loss, and their gradients with respect to
    log pi(a|s) and V -> policy, value, ratio, dL/dlog_pi (B,), dL/dV (B,)."""
    n = values.shape[0]
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_range, 1 + clip_range) * advantages
    takes_unclipped = unclipped <= clipped
    policy = -torch.where(takes_unclipped, unclipped, clipped).mean()
    predicted, vf_passes = values, None
    if clip_range_vf is not None:
        change = values - old_values
        predicted = old_values + change.clamp(-clip_range_vf, clip_range_vf)
        vf_passes = change.abs() <= clip_range_vf
    error = predicted - returns
    value = error.square().mean()
    g = torch.where(takes_unclipped, (-1.0 / n) * advantages * ratio, 0.0)
    grad_values = (2.0 * vf_coef / n) * error
    if vf_passes is not None:
        grad_values = grad_values * vf_passes
    return policy, value, ratio, g, grad_values


def categorical_loss_and_gradients(logits, values, actions, old_log_probs, advantages,
                                   returns, clip_range, vf_coef, ent_coef, old_values,
                                   clip_range_vf):
    """Categorical: -> total, policy, value, mean_entropy, log_ratio, ratio, dL/dlogits,
    dL/dvalues."""
    n = values.shape[0]
    log_pi = torch.log_softmax(logits, dim=-1)
    p = log_pi.exp()
    entropy = -(p * log_pi).sum(-1)
    index = actions.unsqueeze(-1)
    log_ratio = log_pi.gather(-1, index).squeeze(-1) - old_log_probs
    policy, value, ratio, g, grad_values = clipped_and_value_gradients(
        log_ratio, advantages, values, returns, clip_range, vf_coef, old_values, clip_range_vf)
    mean_entropy = entropy.mean()
    total = policy + vf_coef * value
    if ent_coef != 0:
        total = total - ent_coef * mean_entropy

    g = g.unsqueeze(-1)
    if ent_coef != 0:
        grad_logits = torch.addcmul(ent_coef / n * p * (log_pi + entropy.unsqueeze(-1)),
                                    g, -p)
    else:  # the same numbers: the entropy term is exactly 0
        grad_logits = (g * p).neg_()
    grad_logits.scatter_add_(-1, index, g)
    return total, policy, value, mean_entropy, log_ratio, ratio, grad_logits, grad_values


def gaussian_loss_and_gradients(mean, log_std, values, actions, old_log_probs, advantages,
                                returns, clip_range, vf_coef, ent_coef, old_values,
                                clip_range_vf):
    """Diagonal Gaussian, sigma = exp(log_std) a parameter: -> total, policy, value,
    mean_entropy, log_ratio, ratio, dL/dmean, dL/dlog_std, dL/dvalues.

    With z = (a - mu) / sigma:  d log pi / d mu = z / sigma,  d log pi / d log sigma = z^2 - 1,
    and the entropy sum_j (1/2 + log sqrt(2 pi) + log sigma_j) has d H / d log sigma = 1.
    """
    n = values.shape[0]
    log_stds = log_std.expand_as(mean)
    inv_std = torch.exp(-log_stds)
    z = (actions - mean) * inv_std          # distributions.gaussian_log_prob, keeping z
    log_prob = (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
    log_ratio = log_prob - old_log_probs
    policy, value, ratio, g, grad_values = clipped_and_value_gradients(
        log_ratio, advantages, values, returns, clip_range, vf_coef, old_values, clip_range_vf)
    mean_entropy = gaussian_entropy(log_std).expand(n).mean()  # as evaluate_actions
    total = policy + vf_coef * value
    if ent_coef != 0:
        total = total - ent_coef * mean_entropy

    g = g.unsqueeze(-1)
    grad_mean = g * z * inv_std
    grad_log_std = (g * (z * z - 1)).sum(0)
    if ent_coef != 0:
        grad_log_std = grad_log_std - ent_coef
    return (total, policy, value, mean_entropy, log_ratio, ratio, grad_mean, grad_log_std,
            grad_values)
