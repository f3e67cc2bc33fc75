"""KL divergences (lessons 02 and 03).

The trust region of TRPO bounds KL(pi_old || pi_new); PPO monitors it with the k3 estimator
of John Schulman's note "Approximating KL Divergence" (http://joschu.net/blog/kl-approx.html),
the same one SB3 logs as ``train/approx_kl``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import check_tensor


def kl_categorical(p: Tensor, q: Tensor) -> Tensor:
    """Exact KL(p || q) = sum_a p(a) log(p(a) / q(a)) over the last axis (lesson 02, eq. 2.1).

    ``p`` and ``q`` are probability vectors on the last axis; the result drops that axis.
    Terms with p(a) = 0 contribute 0 (the limit of p log p).
    """
    check_tensor("p", p)
    check_tensor("q", q)
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q must have the same number of actions on the last axis, "
                         f"got p {tuple(p.shape)} and q {tuple(q.shape)}")
    support = p > 0
    # Where p(a) = 0 the term is 0. Take the logs of 1 there, not of 0: torch.where passes
    # gradients through both branches, and 0 * log(0) would make them NaN.
    safe_p = torch.where(support, p, torch.ones_like(p))
    safe_q = torch.where(support, q, torch.ones_like(q))
    terms = torch.where(support, safe_p * (torch.log(safe_p) - torch.log(safe_q)),
                        torch.zeros_like(p))
    return terms.sum(dim=-1)


def categorical_mean_kl(old_logits: Tensor, logits: Tensor) -> Tensor:
    """mean_t KL(pi_old(.|s_t) || pi_theta(.|s_t)) for categorical policies given by logits
    (B, n_actions): TRPO's constraint (lesson 02), and how far a VPG step moved the policy
    (lesson 01). ``old_logits`` are detached: gradients flow through ``logits`` only."""
    return kl_categorical(torch.softmax(old_logits.detach(), dim=-1),
                          torch.softmax(logits, dim=-1)).mean()


def approx_kl(log_ratio: Tensor) -> Tensor:
    """k3 estimate of KL(pi_old || pi_new) from samples of the old policy (lesson 03).

        log_ratio = log pi_new(a|s) - log pi_old(a|s),   r = exp(log_ratio)
        approx_kl = mean((r - 1) - log r)

    Unbiased and never negative, unlike the naive mean(-log r).
    """
    check_tensor("log_ratio", log_ratio)
    ratio = torch.exp(log_ratio)
    return ((ratio - 1) - log_ratio).mean()
