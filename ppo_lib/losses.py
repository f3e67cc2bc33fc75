"""The losses PPO minimises (lessons 01, 03, 04 and 05).

Symbols: ratio r_t = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t), advantages A_t,
clip_range eps, values V(s_t), returns R_t (the GAE lambda-returns), entropy H(pi(.|s_t)),
vf_coef c_1, ent_coef c_2.

Notation (the course's): objectives are maximised and written L^PG, L^CLIP, as in the PPO
paper; losses are minimised and written loss_pg = -L^PG, loss_clip = -L^CLIP, loss_vf, and
``loss`` for the total (lesson 04, eq. 4.6). Every function here returns a loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .validation import check_in_range, check_same_shape


def policy_gradient_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """REINFORCE / vanilla policy-gradient loss loss_pg = -L^PG (lesson 01, eq. 1.2).

        loss_pg = -mean_t log pi_theta(a_t|s_t) * A_t

    ``advantages`` may be returns G_t (plain REINFORCE) or G_t - b(s_t) (with a baseline);
    they are treated as constants.
    """
    check_same_shape(log_probs=log_probs, advantages=advantages)
    return -(log_probs * advantages.detach()).mean()


def clipped_surrogate_loss(ratio: Tensor, advantages: Tensor, clip_range: float) -> Tensor:
    """PPO-Clip policy loss loss_clip = -L^CLIP, the objective of lesson 03, eq. 3.2.

        loss_clip = -mean_t min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)
    """
    check_same_shape(ratio=ratio, advantages=advantages)
    check_in_range("clip_range", clip_range, 0.0, 1.0, low_open=True, high_open=True)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(values: Tensor, returns: Tensor, old_values: Tensor | None = None,
               clip_range_vf: float | None = None) -> Tensor:
    """Critic loss loss_vf (lesson 04, eq. 4.5): mean squared error, SB3's form (no 1/2).

        loss_vf = mean_t (V(s_t) - R_t)^2

    With ``clip_range_vf`` the prediction is first clipped, as in SB3 (``clip_range_vf``):
    V_clip = old_values + clip(V - old_values, -clip_range_vf, clip_range_vf), and
    loss_vf = mean_t (V_clip - R_t)^2. OpenAI Baselines and CleanRL take instead
    mean_t max((V - R_t)^2, (V_clip - R_t)^2); lesson 05 compares the two with no clipping.
    """
    check_same_shape(values=values, returns=returns)
    if clip_range_vf is not None:
        if old_values is None:
            raise ValueError("value_loss: clip_range_vf is set, so old_values is required "
                             "(the critic's predictions when the rollout was collected)")
        check_same_shape(values=values, old_values=old_values)
        check_in_range("clip_range_vf", clip_range_vf, 0.0, float("inf"), low_open=True)
        values = old_values + torch.clamp(values - old_values, -clip_range_vf, clip_range_vf)
    return ((returns - values) ** 2).mean()


class PPOLossTerms(NamedTuple):
    """The total loss and the three terms it is made of (for logging)."""

    total: Tensor   # loss (eq. 4.6)
    policy: Tensor  # loss_clip = -L^CLIP
    value: Tensor   # loss_vf (eq. 4.5)
    entropy: Tensor  # mean entropy of the policy, H (a bonus: it enters the loss as -c_2 H)


def ppo_loss_terms(ratio: Tensor, advantages: Tensor, values: Tensor, returns: Tensor,
                   entropy: Tensor, clip_range: float, vf_coef: float = 0.5,
                   ent_coef: float = 0.0, old_values: Tensor | None = None,
                   clip_range_vf: float | None = None) -> PPOLossTerms:
    """``ppo_loss`` with its parts, as the trainer logs them."""
    policy = clipped_surrogate_loss(ratio, advantages, clip_range)
    value = value_loss(values, returns, old_values, clip_range_vf)
    mean_entropy = entropy.mean()
    total = policy + vf_coef * value - ent_coef * mean_entropy
    return PPOLossTerms(total, policy, value, mean_entropy)


def ppo_loss(ratio: Tensor, advantages: Tensor, values: Tensor, returns: Tensor,
             entropy: Tensor, clip_range: float, vf_coef: float = 0.5, ent_coef: float = 0.0,
             old_values: Tensor | None = None, clip_range_vf: float | None = None) -> Tensor:
    """Total PPO loss (lesson 04, eq. 4.6), the quantity one gradient step minimises.

        loss = loss_clip + c_1 loss_vf - c_2 mean_t H(pi(.|s_t)),   loss_clip = -L^CLIP

    (the PPO paper's objective L^CLIP+VF+S with a minus sign).

    ``entropy`` holds the per-state entropies H(pi(.|s_t)) = -sum_a pi(a|s_t) log pi(a|s_t).
    """
    return ppo_loss_terms(ratio, advantages, values, returns, entropy, clip_range, vf_coef,
                          ent_coef, old_values, clip_range_vf).total
