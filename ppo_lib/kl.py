"""KL divergences (lessons 02 and 03).

The trust region of TRPO bounds KL(pi_old || pi_new); PPO monitors it with the k3 estimator
of John Schulman's note "Approximating KL Divergence" (http://joschu.net/blog/kl-approx.html),
the same one SB3 logs as ``train/approx_kl``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import check_in_range, check_tensor


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

    Unbiased and, each term (r - 1) - log r being >= 0, never negative in exact arithmetic,
    unlike the naive mean(-log r). In float32, terms with r near 1 round to tiny negatives,
    so a mean near 0 can print as about -1e-9 (lesson 07 shows it).
    """
    check_tensor("log_ratio", log_ratio)
    ratio = torch.exp(log_ratio)
    return ((ratio - 1) - log_ratio).mean()


def adaptive_kl_coefficient(beta: float, kl: float, target_kl: float) -> float:
    """PPO-penalty's update of the KL coefficient beta, once per update (lesson 07).

    The adaptive-KL variant of the PPO paper (Schulman et al. 2017, "Proximal Policy
    Optimization Algorithms", section 4) maximises

        L^KLPEN = E_t[r_t A_t - beta KL[pi_old(.|s_t), pi(.|s_t)]]

    and after each update, with d = the KL the update measured and d_targ = ``target_kl``:

        d < d_targ / 1.5  ->  beta <- beta / 2     (the policy barely moved: penalise less)
        d > d_targ * 1.5  ->  beta <- beta * 2     (it moved too far: penalise more)
        otherwise (both bounds included) beta stays.

    ``kl`` may be a Python number or a 0-d tensor (it is read as a float, and may be a tiny
    negative float32 rounding of 0); returns the new beta as a Python float.
    """
    check_in_range("beta", beta, 0.0, float("inf"), low_open=True, high_open=True)
    check_in_range("target_kl", target_kl, 0.0, float("inf"), low_open=True, high_open=True)
    check_in_range("kl", kl, float("-inf"), float("inf"), low_open=True, high_open=True)
    beta, kl, target_kl = float(beta), float(kl), float(target_kl)
    if kl < target_kl / 1.5:
        return beta / 2
    if kl > target_kl * 1.5:
        return beta * 2
    return beta


def kl_penalty_loss(ratio: Tensor, advantages: Tensor, log_ratio: Tensor,
                    beta: float) -> Tensor:
    """PPO-penalty's policy loss (lesson 07): loss_klpen = -L^KLPEN, the quantity minimised.

        loss_klpen = -mean_t(r_t A_t) + beta * approx_kl(log_ratio)

    The KL term is the k3 estimate of KL[pi_old, pi] on the minibatch (``approx_kl``): the
    rollout keeps log pi_old(a_t|s_t) only, not pi_old's whole distribution, and k3 is
    unbiased on samples of pi_old, never negative, and the same for every action space. Its
    gradient, mean((r_t - 1) grad log pi(a_t|s_t)), is 0 at pi = pi_old, as KL's is.
    ``beta`` is a constant here: ``adaptive_kl_coefficient`` changes it between updates.
    """
    check_tensor("ratio", ratio)
    check_tensor("advantages", advantages)
    check_tensor("log_ratio", log_ratio)
    if ratio.shape != advantages.shape or log_ratio.shape != ratio.shape:
        raise ValueError(f"ratio, advantages and log_ratio must have one shape, got "
                         f"{tuple(ratio.shape)}, {tuple(advantages.shape)} and "
                         f"{tuple(log_ratio.shape)}")
    check_in_range("beta", beta, 0.0, float("inf"), high_open=True)
    return -(ratio * advantages).mean() + beta * approx_kl(log_ratio)
