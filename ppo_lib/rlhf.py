"""The maths of PPO for language models (lesson 11): the reward model's loss, the per-token
KL-penalised reward of RLHF, GRPO's group-relative advantages and its k3 KL term.

Shapes: language-model tensors are batch first, as in every LM library: ``(B, T)`` is
completions x generated tokens (TRL's convention). ``ppo_lib.returns.gae`` wants time first,
so the RLHF trainer transposes before calling it. Symbols: s(x, y) the reward model's score
of completion y, pi_theta the policy, pi_ref the frozen reference, beta the KL coefficient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import clipped_surrogate_loss
from .validation import check_in_range, check_same_shape, check_tensor


def bradley_terry_loss(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Reward-model loss from preference pairs (Bradley-Terry; lesson 11, eq. 11.1).

        P(chosen > rejected) = sigmoid(s_chosen - s_rejected)
        loss = -mean log sigmoid(s_chosen - s_rejected)

    ``chosen_rewards[i]`` and ``rejected_rewards[i]`` are the scores of pair i, shape (B,).
    TRL's RewardTrainer computes the same (``-logsigmoid(chosen - rejected).mean()``).
    """
    check_same_shape("pairs", chosen_rewards=chosen_rewards,
                     rejected_rewards=rejected_rewards)
    # logsigmoid, not log(sigmoid(.)): in float32 sigmoid rounds to 0 below about -88 and
    # the log gives -inf; logsigmoid stays finite (a badly wrong pair must still teach).
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def kl_penalized_rewards(scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor,
                         kl_coef: float) -> Tensor:
    """Per-token rewards of RLHF with PPO (lesson 11, eq. 11.2), shape (B, T).

        r_t = -beta * (log pi_theta(y_t|x, y_<t) - log pi_ref(y_t|x, y_<t))  +  [t = T-1] s(x, y)

    Every token pays its own KL penalty (k1, the log-ratio of the sampled token); the reward
    model's score ``scores`` (B,) arrives once, on the last token. ``logprobs`` and
    ``ref_logprobs`` are (B, T) log-probabilities of the sampled tokens under the policy
    that sampled them and under the reference. TRL's PPOTrainer: ``kl_coef``, k1 estimator.
    """
    check_same_shape("completions x tokens", logprobs=logprobs, ref_logprobs=ref_logprobs)
    check_tensor("scores", scores)
    if logprobs.dim() != 2 or scores.shape != logprobs.shape[:1]:
        raise ValueError(f"logprobs must be (B, T) and scores (B,), got logprobs of shape "
                         f"{tuple(logprobs.shape)} and scores of shape {tuple(scores.shape)}")
    check_in_range("kl_coef", kl_coef, 0.0, float("inf"))
    rewards = -kl_coef * (logprobs - ref_logprobs)
    rewards[:, -1] += scores
    return rewards


def group_relative_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """GRPO's advantages (lesson 11, eq. 11.3): each completion's reward standardised within
    its own group, the G completions of one prompt.

        A_{i,j} = (R_{i,j} - mean_j R_{i,j}) / (std_j R_{i,j} + eps)

    ``rewards`` is (P, G): P prompts x G completions each. std is the sample standard
    deviation (Bessel's correction, torch's default and TRL's ``nanstd``); eps keeps a group
    whose completions all scored the same at advantage 0. TRL's GRPOTrainer: ``scale_rewards
    ="group"``, the same 1e-4.
    """
    check_tensor("rewards", rewards)
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, group_size) with group_size >= 2, got "
                         f"shape {tuple(rewards.shape)}")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def per_token_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k3 estimate of KL(pi_theta || pi_ref) per token, from tokens sampled by pi_theta
    (GRPO's KL term; lesson 11, eq. 11.4). The estimator of lesson 03's ``approx_kl``, with the
    log-ratio taken the other way (reference over policy):

        k3_t = exp(log pi_ref - log pi_theta) - (log pi_ref - log pi_theta) - 1   >= 0
    """
    check_same_shape("completions x tokens", logprobs=logprobs, ref_logprobs=ref_logprobs)
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log pi(y_t | ...) of the tokens ``tokens`` (B, T) under ``logits`` (B, T, V): the
    log-softmax gathered at each token (TRL's ``selective_log_softmax``)."""
    check_tensor("logits", logits)
    check_tensor("tokens", tokens)
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits must be tokens' shape plus a vocabulary axis, got logits "
                         f"{tuple(logits.shape)} and tokens {tuple(tokens.shape)}")
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)



def grpo_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor,
              advantages: Tensor, clip_range: float, beta: float) -> Tensor:
    """GRPO's loss for completions of one length (lesson 11, eq. 11.5): PPO's clipped loss on
    every token, each token carrying its completion's advantage, plus beta times the k3 KL to
    the reference as a loss term (not a reward):

        loss = -mean_{i,t} min(r_{i,t} A_i, clip(r_{i,t}, 1 - eps, 1 + eps) A_i)
               + beta * mean_{i,t} k3_{i,t}

    ``logprobs``, ``old_logprobs``, ``ref_logprobs`` (B, T); ``advantages`` (B,). With every
    completion T tokens long this is TRL's ``loss_type="grpo"`` (and "bnpo", "dapo",
    "dr_grpo") with ``use_bias_correction_kl=False``; TRL's default since 1.10 multiplies k3
    by the ratio, the same value on-policy, a different gradient (tests/test_trl_parity.py).
    """
    check_same_shape("completions x tokens", logprobs=logprobs, old_logprobs=old_logprobs,
                     ref_logprobs=ref_logprobs)
    check_tensor("advantages", advantages)
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be (B,), one per completion, got shape "
                         f"{tuple(advantages.shape)} for logprobs of shape "
                         f"{tuple(logprobs.shape)}")
    check_in_range("beta", beta, 0.0, float("inf"))
    ratio = torch.exp(logprobs - old_logprobs)
    token_advantages = advantages.unsqueeze(1).expand_as(ratio)
    return (clipped_surrogate_loss(ratio, token_advantages, clip_range)
            + beta * per_token_kl(logprobs, ref_logprobs).mean())
