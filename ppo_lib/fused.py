"""The update's fast path for categorical policies: the whole PPO loss as one autograd node.

``losses.ppo_loss_terms`` on ``CategoricalActorCritic.evaluate_actions`` is the reference,
the form the lessons show. Run on a CartPole minibatch, its ~30 small tensor operations
each cost an autograd node, and their backward pass costs more than the network's. Here
the same loss is computed from the logits and the values in one ``autograd.Function`` whose
gradient is written out by hand:

    log pi = log_softmax(z),  p = exp(log pi),  r = exp(log pi_a - log pi_old),  n = batch
    L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) + c1 mean((R - V)^2) - c2 mean(H)

    dL/dz = g (onehot(a) - p) + (c2 / n) p (log pi + H),   g = -(1 / n) A r [unclipped <= clipped]
    dL/dV = (2 c1 / n) (V - R)      (times [|V - V_old| <= eps_vf] with value clipping)

where [unclipped <= clipped] is 1 where min() takes the unclipped term (the clipped term
passes no gradient outside [1 - eps, 1 + eps]). ``tests/test_fused.py`` checks the loss, its
terms and both gradients against the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .losses import PPOLossTerms


class _CategoricalPPOLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, values, actions, old_log_probs, advantages, returns, clip_range,
                vf_coef, ent_coef, old_values, clip_range_vf):
        n = values.shape[0]
        log_pi = torch.log_softmax(logits, dim=-1)
        p = log_pi.exp()
        entropy = -(p * log_pi).sum(-1)
        log_ratio = log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - old_log_probs
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
        mean_entropy = entropy.mean()
        total = policy + vf_coef * value - ent_coef * mean_entropy

        g = (-1.0 / n) * advantages * ratio * takes_unclipped
        grad_logits = torch.addcmul(ent_coef / n * p * (log_pi + entropy.unsqueeze(-1)),
                                    g.unsqueeze(-1), -p)
        grad_logits.scatter_add_(-1, actions.unsqueeze(-1), g.unsqueeze(-1))
        grad_values = (2.0 * vf_coef / n) * error
        if vf_passes is not None:
            grad_values = grad_values * vf_passes
        ctx.save_for_backward(grad_logits, grad_values)
        ctx.mark_non_differentiable(policy, value, mean_entropy, log_ratio, ratio)
        return total, policy, value, mean_entropy, log_ratio, ratio

    @staticmethod
    def backward(ctx, grad_total, *_unused):
        grad_logits, grad_values = ctx.saved_tensors
        return (grad_total * grad_logits, grad_total * grad_values,
                None, None, None, None, None, None, None, None, None)


def categorical_ppo_loss(logits: Tensor, values: Tensor, actions: Tensor, old_log_probs: Tensor,
                         advantages: Tensor, returns: Tensor, clip_range: float,
                         vf_coef: float = 0.5, ent_coef: float = 0.0,
                         old_values: Tensor | None = None, clip_range_vf: float | None = None,
                         ) -> tuple[Tensor, PPOLossTerms, Tensor, Tensor]:
    """The PPO loss of a categorical policy from its ``logits`` (B, A) and ``values`` (B,)
    -> (loss, terms, log_ratio, ratio), equal to ``ppo_loss_terms`` on ``evaluate_actions``.

    Only ``loss`` carries a gradient (to ``logits`` and ``values``); the terms are for
    logging. Advantages are used as given (normalise them first, as the trainer does).
    """
    total, policy, value, entropy, log_ratio, ratio = _CategoricalPPOLoss.apply(
        logits, values, actions.long().reshape(-1), old_log_probs, advantages, returns,
        float(clip_range), float(vf_coef), float(ent_coef), old_values,
        None if clip_range_vf is None else float(clip_range_vf))
    return total, PPOLossTerms(total, policy, value, entropy), log_ratio, ratio
