"""Lesson 11 exercises: the maths of PPO for language models (``ppo_lib.rlhf``): the reward
model's Bradley-Terry loss, the per-token KL-penalised reward of RLHF, and GRPO's
group-relative advantages.

Shapes are batch first, as the lesson passes them: scores (B,), log-probs (B, T) for B
completions of T tokens, GRPO rewards (P, G) for P prompts x G completions each; a batch of
one, one-token completions and groups of two are cases too. Every case is float32 and seeded.

Decisions:
- bradley_terry_loss: the scores come out of the reward model, so a case passes them as
  non-leaf tensors and checks the gradient. The numerically unstable log(sigmoid(m)) is
  rejected by margins of -120: in float32 log(sigmoid(m)) is still exact at m = -40 and
  only turns into log(0) = -inf below about -88.
- kl_penalized_rewards: a new tensor and in-place writes into it both pass; writing into the
  caller's ``logprobs`` fails (``check`` compares every input with a copy): the PPO update
  reuses those log-probs as its old_logprobs.
- group_relative_advantages: the population std (correction=0) passes too, and so does eps in
  any reasonable place (std + eps, sqrt(var + eps^2), std.clamp(min=eps)): the values must
  match within rtol 1e-3 on groups whose std is at least 0.5, and a group of equal rewards
  must give 0 (no NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import rlhf
from ..grading import Case, Exercise, register
from .cases import ITEM_SAYS, Known, T, gradient_is, graded_case, mistakes_of

# ---------------------------------------------------------------------------------------
# bradley_terry_loss(chosen_rewards, rejected_rewards) = -mean log sigmoid(c - r)


def _bt_unstable_log(c: Tensor, r: Tensor) -> Tensor:
    return -torch.log(torch.sigmoid(c - r)).mean()


BT_KNOWN = [
    Known("sign flipped (rejected - chosen)", lambda c, r: -F.logsigmoid(r - c).mean(),
          "chosen - rejected", "you use rejected - chosen: the margin is chosen - rejected, "
          "the loss is small when the chosen completion scores higher"),
    Known("sigmoid without the log", lambda c, r: -torch.sigmoid(c - r).mean(),
          "without the log", "you average sigmoid(margin) without the log: the loss is the "
          "negative log-likelihood, -mean(log sigmoid(chosen - rejected))"),
    Known("sum instead of mean", lambda c, r: -F.logsigmoid(c - r).sum(), "not .sum()",
          "you sum over the pairs: average with .mean() (not .sum())"),
    Known("log(sigmoid(.)) (overflows on large negative margins)", _bt_unstable_log,
          "logsigmoid", "you compute log(sigmoid(m)): in float32 sigmoid(m) is 0 below about "
          "m = -88 and log(0) = -inf; use F.logsigmoid(m) (or -F.softplus(-m))"),
    Known("log(1 + exp(-m)) written out", lambda c, r: torch.log1p(torch.exp(r - c)).mean(),
          "overflows", "you write log(1 + exp(-m)) out: exp(-m) overflows to inf in float32 "
          "for m below about -88; F.softplus(-m) computes the same stably"),
    Known("hinge loss", lambda c, r: torch.relu(1 - (c - r)).mean(), "hinge",
          "you use a hinge loss max(0, 1 - margin): Bradley-Terry's loss is the negative "
          "log-likelihood -mean(log sigmoid(chosen - rejected))"),
    Known("squared error on the margin", lambda c, r: ((c - r - 1) ** 2).mean(),
          "squared error", "you use a squared error: Bradley-Terry's loss is the negative "
          "log-likelihood -mean(log sigmoid(chosen - rejected))"),
    Known("squared error on the probability", lambda c, r: ((torch.sigmoid(c - r) - 1) ** 2)
          .mean(), "squared error", "you use a squared error: Bradley-Terry's loss is the "
          "negative log-likelihood -mean(log sigmoid(chosen - rejected))"),
    Known("only the chosen scores", lambda c, r: -F.logsigmoid(c).mean(), "rejected_rewards",
          "you use only chosen_rewards: the loss depends on the margin chosen_rewards - "
          "rejected_rewards"),
    Known("the margin itself, no log-sigmoid", lambda c, r: -(c - r).mean(), "unbounded",
          "you minimise -mean(chosen - rejected): without the log-sigmoid the loss is "
          "unbounded below (the scores grow without end); -mean(log sigmoid(margin))"),
    Known("returns a float (.item())", lambda c, r: rlhf.bradley_terry_loss(c, r).item(),
          "no .item()", ITEM_SAYS),
    Known("detached (no gradient)",
          lambda c, r: rlhf.bradley_terry_loss(c.detach(), r.detach()), "carries no gradient"),
]

HINT_BT = ("loss = -mean(log sigmoid(chosen_rewards - rejected_rewards)): "
           "-F.logsigmoid(chosen_rewards - rejected_rewards).mean()")


def _pairs(seed: int, n: int) -> tuple[Tensor, Tensor]:
    """n pairs of scores; margins of both signs, mostly in [-4, 4]."""
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(n, generator=g), 1.5 * torch.randn(n, generator=g) - 0.5


def _bt_gradient_case() -> Case:
    """The reward model scores both completions of every pair in one forward pass: chosen
    and rejected are non-leaf slices of its output; the gradient reaches that output."""
    c, r = _pairs(111, 8)
    leaf = torch.cat([c, r]).requires_grad_(True)
    chosen, rejected = leaf[:8] * 1.0, leaf[8:] * 1.0
    fresh = leaf.detach().clone().requires_grad_(True)
    (want,) = torch.autograd.grad(rlhf.bradley_terry_loss(fresh[:8], fresh[8:]), fresh)
    return graded_case(
        "scores from the reward model (8 pairs), with the gradient",
        rlhf.bradley_terry_loss, (chosen, rejected), known=BT_KNOWN,
        then=gradient_is(leaf, want, "the reward model's scores"),
        inputs_with_grad=[chosen, rejected],
        hint="the scores come out of the reward model: keep the loss a tensor in its autograd "
             "graph (no .item(), .detach() or torch.tensor(...)), d loss / d chosen_i = "
             "-sigmoid(rejected_i - chosen_i) / B")


def _bt_cases() -> list[Case]:
    def case(name, args, *, hint):
        return graded_case(name, rlhf.bradley_terry_loss, args, hint=hint, known=BT_KNOWN)
    return [
        case("one pair (B = 1): chosen 1.5, rejected 0.25", (T([1.5]), T([0.25])),
             hint=HINT_BT + f"; here -log sigmoid(1.25) = {float(-F.logsigmoid(T(1.25))):.4f}"),
        case("64 pairs", _pairs(110, 64),
             hint=HINT_BT + ", averaged over the pairs (.mean(), not .sum())"),
        case("equal scores: the loss is log 2", (T([0.3, -1.0, 2.0, 0.0]),
                                                  T([0.3, -1.0, 2.0, 0.0])),
             hint="sigmoid(0) = 1/2, so each pair costs -log(1/2) = log 2 = 0.693"),
        case("large margins: -120, -40, 2, 3, 60",
             (T([-60.0, 0.0, 3.0, 1.0, 40.0]), T([60.0, 40.0, 1.0, -2.0, -20.0])),
             hint="a reward model can be confidently wrong: log(sigmoid(-120)) is log(0) = "
                  "-inf in float32 (sigmoid underflows below about -88); use the stable "
                  "F.logsigmoid(m) or -F.softplus(-m), which give -120"),
        _bt_gradient_case(),
    ]


register(Exercise(
    id="bradley_terry_loss", lesson="11",
    title="The reward model's loss: -mean log sigmoid(chosen - rejected) (Bradley-Terry)",
    cases=_bt_cases, reference=rlhf.bradley_terry_loss,
    mistakes=lambda: mistakes_of(BT_KNOWN)))


# ---------------------------------------------------------------------------------------
# kl_penalized_rewards(scores, logprobs, ref_logprobs, kl_coef) -> (B, T)
# r_t = -kl_coef * (logprobs_t - ref_logprobs_t), plus the score on the last token


def _with_score(penalty: Tensor, scores: Tensor, where: int | None = -1) -> Tensor:
    """penalty (B, T) with scores (B,) added on token ``where`` (None: on every token)."""
    if where is None:
        return penalty + scores[:, None]
    out = penalty.clone()
    out[:, where] += scores
    return out


def _score_at_the_end(like: Tensor, scores: Tensor, sequence_kl: Tensor) -> Tensor:
    """Zeros shaped like ``like``, with score + the sequence's KL term on the last token."""
    out = torch.zeros_like(like)
    out[:, -1] = scores + sequence_kl
    return out


def _last_completion(scores, logprobs, ref_logprobs, kl_coef):
    rewards = -kl_coef * (logprobs - ref_logprobs)
    rewards[-1] += scores  # batch and time mixed up: the last completion, not the last token
    return rewards


def _writes_into_logprobs(scores, logprobs, ref_logprobs, kl_coef):
    logprobs -= ref_logprobs  # the caller's log-probs: the PPO update reuses them
    rewards = -kl_coef * logprobs
    rewards[:, -1] += scores
    return rewards


def _k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    log_ratio = ref_logprobs - logprobs
    return log_ratio.exp() - log_ratio - 1


KL_KNOWN = [
    Known("whole-sequence KL summed onto the last token only",
          lambda s, lp, ref, c: _score_at_the_end(lp, s, -c * (lp - ref).sum(1)),
          "whole sequence's KL", "you put the whole sequence's KL, summed over its tokens, on "
          "the last token only: every token pays its own penalty -kl_coef * (logprobs_t - "
          "ref_logprobs_t)"),
    Known("summed sequence KL on every token",
          lambda s, lp, ref, c: _with_score((-c * (lp - ref).sum(1, keepdim=True))
                                            .expand_as(lp), s),
          "summed KL on every token", "you put the sequence's summed KL on every token: each "
          "token pays only its own log-ratio, -kl_coef * (logprobs_t - ref_logprobs_t)"),
    Known("mean sequence KL on every token",
          lambda s, lp, ref, c: _with_score((-c * (lp - ref).mean(1, keepdim=True))
                                            .expand_as(lp), s),
          "mean KL on every token", "you put the sequence's mean KL on every token: each "
          "token pays only its own log-ratio, -kl_coef * (logprobs_t - ref_logprobs_t)"),
    Known("one reward per completion (B,)",
          lambda s, lp, ref, c: s - c * (lp - ref).sum(1), "reward per token",
          "you return one reward per completion (B,): PPO for language models needs a reward "
          "per token, (B, T)"),
    Known("score on every token", lambda s, lp, ref, c: _with_score(-c * (lp - ref), s, None),
          "score on every token", "you add the score on every token: the reward model scores "
          "the whole completion once, add it on the last token only (rewards[:, -1] += "
          "scores)"),
    Known("score on the first token", lambda s, lp, ref, c: _with_score(-c * (lp - ref), s, 0),
          "first token", "you add the score on the first token: the completion is scored "
          "once it is finished, on its last token (rewards[:, -1] += scores)"),
    Known("KL sign flipped (ref - logprobs)",
          lambda s, lp, ref, c: _with_score(-c * (ref - lp), s), "ref_logprobs - logprobs",
          "you take ref_logprobs - logprobs: the penalty is -kl_coef * (logprobs - "
          "ref_logprobs), tokens the policy made likelier than the reference pay"),
    Known("k3 estimator instead of the log-ratio",
          lambda s, lp, ref, c: _with_score(-c * _k3(lp, ref), s), "k3",
          "you use the k3 estimator exp(ref - logp) - (ref - logp) - 1: the reward of RLHF "
          "with PPO uses k1, the plain log-ratio logprobs - ref_logprobs (k3 is GRPO's KL "
          "loss term)"),
    Known("no KL penalty", lambda s, lp, ref, c: _with_score(torch.zeros_like(lp), s),
          "no KL penalty", "your rewards have no KL penalty: every token gets -kl_coef * "
          "(logprobs - ref_logprobs)"),
    Known("score multiplied by kl_coef",
          lambda s, lp, ref, c: _with_score(-c * (lp - ref), c * s), "multiply the score",
          "you multiply the score by kl_coef: only the KL term is scaled, the score is added "
          "as it is"),
    Known("absolute value of the log-ratio",
          lambda s, lp, ref, c: _with_score(-c * (lp - ref).abs(), s), "absolute value",
          "you take the absolute value of the log-ratio: k1 is signed, a token the policy made "
          "less likely than the reference earns a small positive reward"),
    Known("kl_coef fixed at 0.1", lambda s, lp, ref, c: _with_score(-0.1 * (lp - ref), s),
          "the kl_coef argument", "your kl_coef stays 0.1: use the kl_coef argument"),
    Known("score added to the last completion (rewards[-1])", _last_completion,
          "rewards[:, -1]", "you add the scores to rewards[-1], the last completion: the "
          "rewards are (B, T), batch first, and the last token of every completion is "
          "rewards[:, -1]"),
    Known("writes into the caller's logprobs", _writes_into_logprobs, "in place"),
]

HINT_KL = ("the rewards are (B, T), batch first: every token pays its own KL penalty "
           "-kl_coef * (logprobs - ref_logprobs), and the score of completion i is added on "
           "its last token only, rewards[:, -1] += scores (rewards[-1] is the last completion)")


def _kl_inputs(seed: int, b: int, t: int) -> tuple[Tensor, Tensor, Tensor]:
    """(scores (B,), logprobs (B, T), ref_logprobs (B, T)): log-ratios of both signs."""
    g = torch.Generator().manual_seed(seed)
    logprobs = -3.0 * torch.rand(b, t, generator=g) - 0.05
    ref_logprobs = logprobs + 0.5 * torch.randn(b, t, generator=g)
    return 2.0 * torch.randn(b, generator=g), logprobs, ref_logprobs


def _kl_cases() -> list[Case]:
    def case(name, seed, b, t, kl_coef, *, hint):
        return graded_case(name, rlhf.kl_penalized_rewards, (*_kl_inputs(seed, b, t), kl_coef),
                           hint=hint, known=KL_KNOWN)
    s, lp, _ = _kl_inputs(126, 2, 5)
    return [
        case("(B, T) = (3, 5), kl_coef = 0.1", 120, 3, 5, 0.1, hint=HINT_KL),
        case("(B, T) = (2, 6), kl_coef = 0.05", 121, 2, 6, 0.05,
             hint="use the kl_coef argument; " + HINT_KL),
        case("a batch of one (1, 7), kl_coef = 0.2", 122, 1, 7, 0.2,
             hint="one completion is still a (1, T) batch: keep the shape, the score goes on "
                  "rewards[0, -1] and every token pays its own KL"),
        case("one-token completions (T = 1), kl_coef = 0.1", 123, 4, 1, 0.1,
             hint="with T = 1 the last token is the first: it pays its KL and gets the score"),
        case("(B, T) = (4, 4), kl_coef = 0.3", 124, 4, 4, 0.3, hint=HINT_KL),
        case("(B, T) = (16, 32), kl_coef = 0.02", 125, 16, 32, 0.02, hint=HINT_KL),
        graded_case("the policy equals the reference: the score alone",
                    rlhf.kl_penalized_rewards, (s, lp, lp.clone(), 0.1), known=KL_KNOWN,
                    hint="logprobs == ref_logprobs: no penalty anywhere, the rewards are 0 "
                         "except the score on the last token"),
    ]


register(Exercise(
    id="kl_penalized_rewards", lesson="11",
    title="RLHF's per-token reward: -kl_coef * log-ratio, plus the score on the last token",
    cases=_kl_cases, reference=rlhf.kl_penalized_rewards,
    mistakes=lambda: mistakes_of(KL_KNOWN)))


# ---------------------------------------------------------------------------------------
# group_relative_advantages(rewards, eps=1e-4) -> (P, G)
# A = (R - mean over the group) / (std over the group + eps), one group per row


def _grpo(mean_dim=1, std_dim=1, correction=1, with_eps=True, keepdim=True, divide=True,
          variance=False):
    """A GRPO advantage with one statistic changed (None: over the whole tensor)."""
    def answer(rewards, eps=1e-4):
        def stat(f, dim, **kw):
            return f(rewards, **kw) if dim is None else f(rewards, dim=dim, keepdim=keepdim, **kw)
        mean = stat(torch.mean, mean_dim)
        centered = rewards - mean
        if not divide:
            return centered
        scale = (stat(torch.var if variance else torch.std, std_dim, correction=correction)
                 + (eps if with_eps else 0.0))
        return centered / scale
    return answer


def _population_std(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """The other std convention, accepted too (both standardise within the group)."""
    return _grpo(correction=0)(rewards, eps)


def _subtracts_in_place(rewards, eps=1e-4):
    rewards -= rewards.mean(dim=1, keepdim=True)
    return rewards / (rewards.std(dim=1, keepdim=True) + eps)


GRPO_KNOWN = [
    Known("standardised across all groups (the whole tensor)", _grpo(None, None),
          "within its own group", "you standardise across all groups (the whole tensor): "
          "GRPO standardises each reward within its own group, the G completions of the same "
          "prompt (mean and std over dim=1)"),
    Known("standardised along the wrong axis (dim=0)", _grpo(0, 0), "dim=0",
          "you standardise along dim=0, across prompts: a group is a row, the G completions "
          "of one prompt; use dim=1 (or dim=-1)"),
    Known("only subtracts the group mean", _grpo(divide=False), "divide by the group's std",
          "you only subtract the group mean: also divide by the group's std (+ eps)"),
    Known("no eps (NaN for a group of equal rewards)", _grpo(with_eps=False), "0 / 0 = NaN",
          "you divide by the std without eps: a group whose completions all scored the same "
          "has std 0, and 0 / 0 = NaN; divide by (std + eps)"),
    Known("mean and std without keepdim=True", _grpo(keepdim=False), "keepdim=True",
          "you take the mean and std without keepdim=True: a (P,) vector broadcasts along "
          "the columns, not the rows; keep them (P, 1)"),
    Known("global mean, group std", _grpo(mean_dim=None), "global mean",
          "you subtract the mean of all rewards (a global mean) but divide by each group's "
          "std: both statistics are per group"),
    Known("group mean, global std", _grpo(std_dim=None), "global std",
          "you divide by the std of all rewards (a global std): both statistics are per "
          "group"),
    Known("divides by the variance", _grpo(variance=True), "variance",
          "you divide by the variance: divide by the standard deviation, its square root"),
    Known("subtracts the mean in place", _subtracts_in_place, "in place"),
]

HINT_GRPO = ("standardise each row (one prompt's group of G completions): mean and std over "
             "dim=1 with keepdim=True, then (rewards - mean) / (std + eps)")


def _groups(seed: int, p: int, g: int) -> Tensor:
    """(P, G) rewards whose groups have different means and spreads (std >= 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(p, g, generator=gen)
    z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)  # each row: std exactly 1
    center = 4.0 * torch.randn(p, 1, generator=gen)
    spread = 0.5 + 2.5 * torch.rand(p, 1, generator=gen)
    return center + spread * (z + 0.3 * torch.randn(p, g, generator=gen))


def _grpo_cases() -> list[Case]:
    def case(name, rewards, *, hint):
        return graded_case(name, rlhf.group_relative_advantages, (rewards,), hint=hint,
                           known=GRPO_KNOWN, atol=1e-4, rtol=1e-3,
                           also=[_population_std(rewards)])
    same = T([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    return [
        case("(P, G) = (3, 4)", _groups(130, 3, 4), hint=HINT_GRPO),
        case("(P, G) = (4, 4)", _groups(131, 4, 4),
             hint="each row is a group: " + HINT_GRPO + " (without keepdim a (P,) mean "
                  "broadcasts along the wrong axis when P == G)"),
        case("(P, G) = (2, 8)", _groups(132, 2, 8), hint=HINT_GRPO),
        case("groups of two: (P, G) = (6, 2)", _groups(133, 6, 2),
             hint="with G = 2 each completion is one std above or below its group's mean: "
                  + HINT_GRPO),
        case("a batch of one prompt (1, 4)", _groups(134, 1, 4),
             hint="one prompt is still a (1, G) batch: standardise its row, keep the shape"),
        case("groups whose completions all scored the same (0/1 rewards)", same,
             hint="when every completion of a group gets the same reward its std is 0: the "
                  "eps in (std + eps) keeps the advantage at 0 instead of 0 / 0 = NaN"),
        case("(P, G) = (8, 8), one group of equal rewards",
             torch.cat([_groups(135, 7, 8), torch.full((1, 8), 0.5)]),
             hint=HINT_GRPO + "; the group of equal rewards gets advantage 0"),
    ]


register(Exercise(
    id="group_relative_advantages", lesson="11",
    title="GRPO's advantages: each reward standardised within its prompt's group",
    cases=_grpo_cases, reference=rlhf.group_relative_advantages,
    mistakes=lambda: mistakes_of(GRPO_KNOWN)))
