"""Log-probabilities, entropies and samples of the policy distributions PPO uses (lesson 06).

Pure functions of tensors, equal to ``torch.distributions.Categorical(logits=...)``,
``torch.distributions.Normal(mean, exp(log_std))`` and ``Bernoulli(logits=...)`` (tested),
but without building a distribution object on every call: the policies call these on their
hot path. One distribution per action space, as SB3:

    Discrete(n)              categorical        over n logits
    Box (action_dim,)        diagonal Gaussian  mean from the net, a learned log_std
    MultiDiscrete(nvec)      one categorical per dimension over a split of sum(nvec) logits
    MultiBinary(n)           one Bernoulli per bit, from n logits

For the last two the dimensions are independent, so log-probabilities and entropies are
sums over dimensions (SB3's MultiCategoricalDistribution and BernoulliDistribution).

Symbols: logits z (B, n_actions); mean mu (B, action_dim); log_std log sigma (action_dim,)
or (B, action_dim); actions a.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(a|s) = z_a - logsumexp(z)   -> (B,).

    From logits, never from softmax probabilities: log(softmax(z)) underflows to -inf for
    very unlikely actions (the source notes' error 8).
    """
    log_pi = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return log_pi.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """H = -sum_a pi(a|s) log pi(a|s), summed over actions, one per state   -> (B,).

    (A mean over actions would be the source notes' error 3.)
    """
    log_pi = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -(log_pi.exp() * log_pi).sum(-1)


def categorical_log_prob_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """``categorical_log_prob`` and ``categorical_entropy`` from one log-softmax (the
    update's hot path; tested equal to the two functions)."""
    log_pi = torch.log_softmax(logits, dim=-1)
    log_prob = log_pi.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return log_prob, -(log_pi.exp() * log_pi).sum(-1)


def categorical_sample(logits: Tensor) -> Tensor:
    """Draw a ~ pi(.|s) by the Gumbel-max trick: argmax(z + Gumbel noise)   -> (B,) int64.

    Same distribution as ``Categorical(logits=z).sample()`` (a different random stream).
    """
    u = torch.rand_like(logits).clamp_(min=1e-20)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def categorical_sample_multinomial(logits: Tensor) -> Tensor:
    """Draw a ~ pi(.|s) from the probabilities softmax(z) with ``torch.multinomial``   -> (B,)
    int64.

    The same distribution as ``categorical_sample`` and ``Categorical(logits=z).sample()``,
    with a random stream of its own (the one ``ppo_lib.vpg`` and ``ppo_lib.trpo`` train
    with), and about four times faster than ``Categorical`` for the tiny batches of a
    rollout (no argument validation).
    """
    return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """Diagonal Gaussian log-density, summed over action dimensions   -> (B,).

        log pi(a|s) = sum_j [ -(a_j - mu_j)^2 / (2 sigma_j^2) - log sigma_j - log sqrt(2 pi) ]
    """
    log_std = log_std.expand_as(mean)
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """H = sum_j [ 1/2 + log sqrt(2 pi) + log sigma_j ], summed over the last axis."""
    return (0.5 + LOG_SQRT_2PI + log_std).sum(-1)


def multi_categorical_log_prob_entropy(logits: Tensor, nvec: list[int], actions: Tensor,
                                       ) -> tuple[Tensor, Tensor]:
    """One categorical per action dimension j over its slice of the logits (sizes ``nvec``):

        log pi(a|s) = sum_j log softmax(z_j)_{a_j},   H = sum_j H(softmax(z_j))   -> (B,), (B,)

    logits (B, sum(nvec)), actions (B, len(nvec)).
    """
    log_prob = entropy = 0
    for j, z in enumerate(torch.split(logits, nvec, dim=-1)):
        lp, h = categorical_log_prob_entropy(z, actions[..., j])
        log_prob, entropy = log_prob + lp, entropy + h
    return log_prob, entropy


def multi_categorical_sample(logits: Tensor, nvec: list[int], deterministic: bool = False,
                             ) -> Tensor:
    """One action per dimension: a sample of each categorical, or (``deterministic``) its
    most likely action   -> (B, len(nvec)) int64."""
    parts = torch.split(logits, nvec, dim=-1)
    return torch.stack([z.argmax(-1) if deterministic else categorical_sample(z)
                        for z in parts], dim=-1)


def bernoulli_log_prob_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """One Bernoulli per bit, p_j = sigmoid(z_j), from the logits   -> (B,), (B,):

        log pi(a|s) = sum_j [a_j z_j - softplus(z_j)],   H = sum_j [softplus(z_j) - p_j z_j]

    (softplus(z) = log(1 + e^z): log p_j = -softplus(-z_j), log(1 - p_j) = -softplus(z_j),
    never log(sigmoid(z)), which underflows as log(softmax) does.)
    """
    softplus = torch.nn.functional.softplus(logits)
    log_prob = (actions.to(logits.dtype) * logits - softplus).sum(-1)
    return log_prob, (softplus - torch.sigmoid(logits) * logits).sum(-1)


def bernoulli_sample(logits: Tensor, deterministic: bool = False) -> Tensor:
    """Each bit 1 with probability sigmoid(z_j) (``deterministic``: 1 where z_j > 0, the
    likelier value)   -> (B, n) int64."""
    if deterministic:
        return (logits > 0).long()
    return (torch.rand_like(logits) < torch.sigmoid(logits)).long()
