"""Lesson 04 exercises: Generalised Advantage Estimation (``gae``) and the critic's loss
(``value_loss``, with SB3's optional clipping); ``bootstrap_truncated`` has its own module."""

from __future__ import annotations

import torch
from torch import Tensor

from ... import losses, returns
from ..grading import Case, Exercise, register
from .cases import (HINT_KEEP_SHAPE, ITEM_SAYS, Known, T, from_a_network, gradient_is, graded_case,
                    mistakes_of, random_dones, uniform)


# ---------------------------------------------------------------------------------------
# gae(rewards, values, dones, last_values, gamma, gae_lambda) -> (advantages, returns)

HINT_GAE_CONST = ("rewards 1 and a constant V = 2 with gamma 0.5 (SB3's test): every "
                  "delta_t = 1 + 0.5 * 2 - 2 = 0, so advantages 0 and returns = advantages + "
                  "values = 2")
HINT_NEXT_STATE = ("with lambda = 0, A_t = delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t), "
                   "with values[t + 1] and last_values after the last step: [0.5, 2, 2] "
                   "here; returns = A + V")
HINT_GAE_LAST = "after the last step, bootstrap from V_T = last_values (here A_1 = 0.5 * 10)"
HINT_GAE_DONES = ("mask both places with (1 - d_t): the bootstrap gamma V_{t+1} in delta_t "
                  "AND the recursion gamma lambda A_{t+1}")
HINT_LAMBDA0 = "lambda = 0: A_t must equal delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t"
HINT_LAMBDA1 = ("lambda = 1: A_t must equal the discounted return minus V_t; gamma in both "
                "delta and the recursion")
HINT_GAMMA_LAMBDA = ("gamma discounts V_{t+1} in delta_t; the recursion uses gamma * lambda "
                     "(gamma 0.9, lambda 0.5 here)")
HINT_GAE_TN = ("(T, N) inputs: loop over time (axis 0) only, each step works on all N envs; "
               "last_values has shape (N,), one per env (no .item() or float())")


def _gae_loop(rewards, values, dones, last_values, gamma, gae_lambda, *, mask_delta=True,
              mask_recursion=True, same_state=False, bootstrap="last", add_values=True,
              delta_discount=None, recursion_discount=None, steps=None, mask_next=False,
              normalize=None, mask_next_recursion=False):
    """One GAE implementation with switches to introduce each classic mistake."""
    delta_discount = gamma if delta_discount is None else delta_discount
    recursion_discount = gamma * gae_lambda if recursion_discount is None else recursion_discount
    n = rewards.shape[0]
    not_done = 1.0 - dones
    if mask_next:  # CleanRL's convention read into ppo_lib's dones
        not_done = torch.cat([not_done[1:], not_done[-1:]])
    last = torch.as_tensor(last_values, dtype=values.dtype).reshape(values[0].shape)
    final = {"last": last, "zero": 0 * last, "first": values[0], "own": values[-1]}[bootstrap]
    next_values = torch.cat([values[1:], final.unsqueeze(0)])
    if same_state:
        next_values = values
    deltas = rewards + delta_discount * next_values * (not_done if mask_delta else 1) - values
    advantages = torch.zeros_like(rewards)
    a = torch.zeros_like(rewards[0])
    recursion_mask = torch.cat([not_done[1:], not_done[-1:]]) if mask_next_recursion else not_done
    for t in (reversed(range(n)) if steps is None else steps(n)):
        a = deltas[t] + recursion_discount * (recursion_mask[t] if mask_recursion else 1) * a
        advantages[t] = a
    rets = advantages + values if add_values else advantages
    if normalize is not None:
        normalized = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return normalized, (normalized + values if normalize == "both" else rets)
    return advantages, rets


def _gae_variant(**switches):
    return lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, **switches)


def _gae_reversed_list(rewards, values, dones, last_values, gamma, gae_lambda):
    advantages, _ = returns.gae(rewards, values, dones, last_values, gamma, gae_lambda)
    flipped = advantages.flip(0)  # appended from the last step backwards, never reversed
    return flipped, flipped + values


def _gae_monte_carlo_target(rewards, values, dones, last_values, gamma, gae_lambda):
    advantages, _ = returns.gae(rewards, values, dones, last_values, gamma, gae_lambda)
    return advantages, returns.discounted_returns(rewards, dones, gamma, last_values)


def _gae_only_1d(rewards, values, dones, last_values, gamma, gae_lambda):
    next_values = torch.cat([values[1:], torch.tensor([float(last_values)])])
    deltas = rewards + gamma * next_values * (1 - dones) - values
    advantages = torch.zeros_like(rewards)
    a = 0.0
    for t in reversed(range(len(rewards))):
        a = deltas[t] + gamma * gae_lambda * (1 - dones[t]) * a
        advantages[t] = a
    return advantages, advantages + values


def _gae_in_place(rewards, values, dones, last_values, gamma, gae_lambda):
    deltas = rewards  # not a copy: the writes below change the caller's rewards
    deltas += gamma * torch.cat([values[1:], last_values.reshape(1, *values.shape[1:])]) \
        * (1 - dones) - values
    a = torch.zeros_like(rewards[0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(len(rewards))):
        a = deltas[t] + gamma * gae_lambda * (1 - dones[t]) * a
        advantages[t] = a
    return advantages, advantages + values


GAE_KNOWN = [
    Known("returns only the advantages",
          lambda r, v, d, lv, g, lam: returns.gae(r, v, d, lv, g, lam)[0], "tuple of 2 values"),
    Known("forgets to add the values back (returns = advantages)", _gae_variant(add_values=False),
          "add the values back",
          "your returns are the advantages: add the values back, returns = advantages + "
          "values"),
    Known("Monte-Carlo returns as the critic's target", _gae_monte_carlo_target, "Monte-Carlo",
          "your returns are the Monte-Carlo discounted returns: the critic's target here is "
          "the lambda-return, returns = advantages + values"),
    Known("normalises the advantages inside gae", _gae_variant(normalize="advantages"),
          "normalise", "you normalise the advantages: gae returns them raw (PPO standardises "
          "each minibatch later)"),
    Known("normalises the advantages, and returns from them",
          _gae_variant(normalize="both"), "normalise",
          "you normalise the advantages: gae returns them raw (PPO standardises each "
          "minibatch later), and returns = raw advantages + values"),
    Known("returns the advantages built backwards without reversing them", _gae_reversed_list,
          "reverse order", "your advantages are in reverse order: you built them from the "
          "last step backwards, so reverse the list (or write into advantages[t])"),
    Known("loop over range(T - 1) skips the last step",
          _gae_variant(steps=lambda n: reversed(range(n - 1))), "misses a step",
          "your loop misses a step: reversed(range(T)) visits every t from T - 1 down to 0 "
          "(range(T - 1) stops one short)"),
    Known("bootstraps from V(s_t) instead of V(s_{t+1})", _gae_variant(same_state=True),
          "bootstrap from V(s_t)",
          "you bootstrap from V(s_t): delta_t uses the NEXT state's value V(s_{t+1}) "
          "(values[t + 1], and last_values after the last step)"),
    Known("ignores last_values", _gae_variant(bootstrap="zero"), "ignore last_values",
          "you ignore last_values: after the last step bootstrap from V_T = last_values"),
    Known("torch.roll for the next values (wraps values[0] around)",
          _gae_variant(bootstrap="first"), "wraps around",
          "your next value after the last step is values[0] (torch.roll wraps around): use "
          "last_values there"),
    Known("bootstraps the last step from values[-1]", _gae_variant(bootstrap="own"),
          "values[-1]",
          "your next value after the last step is V(s_{T-1}) = values[-1]: use last_values "
          "there"),
    Known("ignores episode ends", _gae_variant(mask_delta=False, mask_recursion=False),
          "ignore episode ends",
          "you ignore episode ends: mask both the bootstrap gamma V_{t+1} and the recursion "
          "with (1 - d_t)"),
    Known("masks the TD error but not the recursion", _gae_variant(mask_recursion=False),
          "but not the recursion",
          "you mask the TD error but not the recursion: gamma * lambda * A_{t+1} also needs "
          "(1 - d_t)"),
    Known("masks the recursion but not the TD error", _gae_variant(mask_delta=False),
          "but not the bootstrap",
          "you mask the recursion but not the bootstrap: gamma * V_{t+1} in delta_t also "
          "needs (1 - d_t)"),
    Known("masks with the next step's done (CleanRL's convention)", _gae_variant(mask_next=True),
          "CleanRL",
          "you mask with d_{t+1}: here dones[t] = 1 means the transition at step t ended the "
          "episode, so mask with (1 - dones[t]) (in CleanRL dones[t + 1] marks that "
          "instead)"),
    Known("masks the recursion with the next step's done", _gae_variant(mask_next_recursion=True),
          "CleanRL",
          "your recursion is masked with d_{t+1}: here dones[t] = 1 means the transition at "
          "step t ended the episode, so both masks use (1 - dones[t]) (in CleanRL "
          "dones[t + 1] marks that instead)"),
    Known("lambda discounts V_{t+1} in delta (gamma and lambda swapped)",
          lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, delta_discount=lam),
          "gamma discounts V_{t+1}",
          "lambda discounts V_{t+1} in your delta: gamma discounts V_{t+1}, lambda only "
          "enters the recursion (gamma * lambda)"),
    Known("recursion without lambda",
          lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, recursion_discount=g),
          "without lambda",
          "your recursion is without lambda: A_t = delta_t + gamma * lambda * (1 - d_t) * "
          "A_{t+1}"),
    Known("recursion without gamma",
          lambda r, v, d, lv, g, lam: _gae_loop(r, v, d, lv, g, lam, recursion_discount=lam),
          "without gamma",
          "your recursion is without gamma: A_t = delta_t + gamma * lambda * (1 - d_t) * "
          "A_{t+1}"),
    Known("works for (T,) only (float(last_values))", _gae_only_1d, "one per env"),
    Known("writes the TD errors into the caller's rewards", _gae_in_place,
          "compute into new tensors"),
]


def gae_cases() -> list[Case]:
    def case(name, args, *, hint, expected=None):
        return graded_case(name, returns.gae, args, hint=hint, known=GAE_KNOWN, expected=expected)
    ones = torch.ones(4)
    return [
        case("constant V = 2, rewards 1, no ends, last V = 2, gamma 0.5, lambda 1",
             (ones, 2 * ones, 0 * ones, T(2.0), 0.5, 1.0),
             expected=(torch.zeros(4), 2 * ones), hint=HINT_GAE_CONST),
        case("lambda = 0, gamma 1: A_t = delta_t, with V(s_{t+1})",
             (T([0.0, 1.0, 1.0]), T([0.5, 1.0, 2.0]), torch.zeros(3), T(3.0), 1.0, 0.0),
             expected=(T([0.5, 2.0, 2.0]), T([1.0, 3.0, 4.0])), hint=HINT_NEXT_STATE),
        case("last_values bootstraps the last step",
             (torch.zeros(2), torch.zeros(2), torch.zeros(2), T(10.0), 0.5, 1.0),
             expected=(T([2.5, 5.0]), T([2.5, 5.0])), hint=HINT_GAE_LAST),
        case("an episode ends at step 1 (rewards 1, V = 1, gamma 0.5, lambda 1)",
             (torch.ones(3), torch.ones(3), T([0.0, 1.0, 0.0]), T(1.0), 0.5, 1.0),
             expected=(T([0.5, 0.0, 0.5]), T([1.5, 1.0, 1.5])), hint=HINT_GAE_DONES),
        case("lambda = 0 gives delta", (uniform(5, 11, -1, 1), uniform(5, 12),
                                        random_dones(5, 13, 0.3), T(0.7), 0.9, 0.0),
             hint=HINT_LAMBDA0),
        case("lambda = 1 gives the discounted return minus V",
             (uniform(5, 21, -1, 1), uniform(5, 22), random_dones(5, 23, 0.3), T(0.7), 0.9, 1.0),
             hint=HINT_LAMBDA1),
        case("gamma 0.9, lambda 0.5 (not interchangeable)",
             (uniform(6, 31, -1, 1), uniform(6, 32, 0, 2), T([0.0, 0, 1, 0, 0, 0]),
              T(1.5), 0.9, 0.5), hint=HINT_GAMMA_LAMBDA),
        case("(T, N) = (7, 4) with episode ends, last_values (N,)",
             (uniform((7, 4), 41, -1, 1), uniform((7, 4), 42), random_dones((7, 4), 43, 0.25),
              uniform(4, 44, 0, 2), 0.99, 0.95), hint=HINT_GAE_TN),
        case("one env: (T, N) = (6, 1), last_values (1,)",
             (uniform((6, 1), 51, -1, 1), uniform((6, 1), 52), random_dones((6, 1), 53, 0.3),
              T([0.5]), 0.9, 0.8), hint=HINT_KEEP_SHAPE),
        case("one step: (T, N) = (1, 3), last_values (3,)",
             (T([[1.0, 0.5, 2.0]]), T([[0.5, 1.0, 1.5]]), T([[0.0, 1.0, 0.0]]),
              T([1.0, 2.0, 3.0]), 0.9, 0.95), hint=HINT_KEEP_SHAPE),
    ]


register(Exercise(
    id="gae", lesson="04", title="Generalised Advantage Estimation",
    cases=gae_cases, reference=returns.gae, mistakes=lambda: mistakes_of(GAE_KNOWN)))


# ---------------------------------------------------------------------------------------
# value_loss(values, returns, old_values=None, clip_range_vf=None)

HINT_SB3_CLIP = ("SB3's form: clip the PREDICTION, V_clipped = old_values + clamp(values - "
                 "old_values, -clip_range_vf, clip_range_vf), then the plain MSE of the clipped "
                 "one, mean((returns - V_clipped) ** 2)")


def _vl_clip(values, old_values, eps):
    return old_values + torch.clamp(values - old_values, -eps, eps)


def _vl_max_form(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    clipped = _vl_clip(values, old_values, clip_range_vf)
    return torch.max((returns - values) ** 2, (returns - clipped) ** 2).mean()


def _vl_plain(values, returns, old_values=None, clip_range_vf=None):
    return ((returns - values) ** 2).mean()


def _vl_with(transform):
    """value_loss with SB3's clipping, the final reduction replaced by ``transform``."""
    def loss(values, returns, old_values=None, clip_range_vf=None):
        if clip_range_vf is not None:
            values = _vl_clip(values, old_values, clip_range_vf)
        return transform(values, returns)
    return loss


def _vl_clips_the_loss(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    return torch.clamp((returns - values) ** 2, max=clip_range_vf).mean()


def _vl_clips_around_zero(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    return ((returns - torch.clamp(values, -clip_range_vf, clip_range_vf)) ** 2).mean()


def _vl_clips_the_returns(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is None:
        return ((returns - values) ** 2).mean()
    clipped = old_values + torch.clamp(returns - old_values, -clip_range_vf, clip_range_vf)
    return ((clipped - values) ** 2).mean()


def _vl_fixed_eps(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is not None:
        values = _vl_clip(values, old_values, 0.2)
    return ((returns - values) ** 2).mean()


def _vl_clamps_in_place(values, returns, old_values=None, clip_range_vf=None):
    if clip_range_vf is not None:
        values.sub_(old_values).clamp_(-clip_range_vf, clip_range_vf).add_(old_values)
    return ((returns - values) ** 2).mean()


def _vl_flag_off(values, returns, old_values=None, clip_range_vf=None):
    values.requires_grad_(False)  # changes the caller's tensor; raises on a critic's output
    return losses.value_loss(values, returns, old_values, clip_range_vf)


VL_KNOWN = [
    Known("with a 1/2 factor", lambda *a: 0.5 * losses.value_loss(*a), "no 1/2 factor",
          "you multiply by 1/2: SB3's value loss is the plain MSE, no 1/2 factor"),
    Known("mean absolute error", _vl_with(lambda v, r: (r - v).abs().mean()), "squared",
          "you take the absolute error: the loss is the mean of the squared errors"),
    Known("root mean squared error", _vl_with(lambda v, r: ((r - v) ** 2).mean().sqrt()),
          "no square root", "you take the square root: the loss is the mean squared error "
          "itself (no square root)"),
    Known("sum instead of mean", _vl_with(lambda v, r: ((r - v) ** 2).sum()), "not .sum()",
          "you sum the squared errors: average with .mean() (not .sum())"),
    Known("divides the sum by len(values)", _vl_with(lambda v, r: ((r - v) ** 2).sum() / len(v)),
          "len(values)", "you divide by len(values), which is T for (T, N) inputs: .mean() "
          "averages over every entry"),
    Known("max of clipped and unclipped errors (CleanRL / baselines form)", _vl_max_form,
          "CleanRL",
          "you take the max of the clipped and unclipped squared errors, the CleanRL / OpenAI "
          "baselines form: this exercise asks for SB3's form, which clips the prediction and "
          "takes the plain MSE of the clipped one, mean((returns - V_clipped) ** 2), even "
          "where clipping lowers the error"),
    Known("clips the loss, not the prediction", _vl_clips_the_loss, "clip the PREDICTION",
          "you clip the loss: clip the PREDICTION to old_values +- clip_range_vf, then take "
          "the MSE"),
    Known("ignores old_values (clips around 0)", _vl_clips_around_zero, "around old_values",
          "you clip the values around 0: clip them around old_values, old_values + "
          "clamp(values - old_values, -c, c)"),
    Known("never clips", _vl_plain, "never clip",
          "you never clip: with clip_range_vf given, use V_clipped = old_values + "
          "clamp(values - old_values, -c, c)"),
    Known("clips the returns instead of the values", _vl_clips_the_returns, "clip the returns",
          "you clip the returns: clip the PREDICTION (values) around old_values, the target "
          "stays as it is"),
    Known("hard-coded clip_range_vf = 0.2", _vl_fixed_eps, "use clip_range_vf",
          "your clip range stays 0.2: use clip_range_vf"),
    Known("returns a float (.item())", lambda *a: losses.value_loss(*a).item(), "no .item()",
          ITEM_SAYS),
    Known("detaches the values (the critic gets no gradient)",
          _vl_with(lambda v, r: ((r - v.detach()) ** 2).mean()), "carries no gradient"),
    Known("clamps the caller's values in place", _vl_clamps_in_place, "in place"),
    Known("turns off requires_grad on the caller's values", _vl_flag_off, "requires_grad_(False)"),
]


def _vl_grad_case(name: str, values: Tensor, rets: Tensor, old: Tensor | None,
                  eps: float | None, hint: str) -> Case:
    """values from a critic (non-leaf, requires grad); the gradient is checked."""
    leaf, critic_values = from_a_network(values)
    r = values.detach().clone().requires_grad_(True)
    (want,) = torch.autograd.grad(losses.value_loss(r, rets, old, eps), r)
    kwargs = {} if eps is None else {"old_values": old, "clip_range_vf": eps}
    return graded_case(name, losses.value_loss, (critic_values, rets), kwargs, hint=hint,
                      known=VL_KNOWN, then=gradient_is(leaf, want, "values"),
                      inputs_with_grad=[critic_values])


def value_loss_cases() -> list[Case]:
    def case(name, args, kwargs=None, *, hint, expected=None):
        return graded_case(name, losses.value_loss, args, kwargs, hint=hint, known=VL_KNOWN,
                          expected=expected)
    values = T([1.0, 2.0, 3.0, 0.0])
    rets = T([2.0, 2.0, 1.0, 1.0])
    old = T([0.5, 2.5, 3.1, 0.0])
    return [
        case("mean squared error", (values, rets), expected=T(1.5),
             hint="loss_vf = mean((returns - values) ** 2): SB3's form, no 1/2 factor"),
        case("clip_range_vf=None means no clipping", (values, rets),
             {"old_values": old, "clip_range_vf": None}, expected=T(1.5),
             hint="without clip_range_vf, old_values is not used"),
        case("clip the prediction around old_values", (values, rets),
             {"old_values": old, "clip_range_vf": 0.2}, hint=HINT_SB3_CLIP),
        case("SB3's form where clipping LOWERS the error (not the max of both)",
             (T([3.0, 1.0, 2.0]), T([2.5, 1.5, 0.0])),
             {"old_values": T([2.0, 2.0, 2.1]), "clip_range_vf": 0.2},
             expected=T((0.3 ** 2 + 0.3 ** 2 + 2.0 ** 2) / 3),
             hint=HINT_SB3_CLIP + " (SB3 does not take the max of the clipped and unclipped "
                  "errors as CleanRL does)"),
        case("clipping is relative to old_values", (T([5.0, -5.0]), T([4.0, -4.0])),
             {"old_values": T([4.5, -4.5]), "clip_range_vf": 0.1},
             hint="the clip range is centred on old_values, not on 0"),
        case("clip_range_vf is an argument (0.5 here)", (T([1.0, 3.0]), T([0.0, 4.0])),
             {"old_values": T([2.0, 2.0]), "clip_range_vf": 0.5},
             hint="use clip_range_vf, not a hard-coded 0.2"),
        case("(T, N) = (4, 3): the mean over every entry",
             (uniform((4, 3), 101, -1, 1), uniform((4, 3), 102, -1, 1)),
             hint="one scalar: .mean() over every entry, not len(values)"),
        _vl_grad_case("gradient: values from a critic (requires grad)",
                      T([1.0, 2.0, 3.0]), T([2.0, 1.0, 3.5]), None, None,
                      hint="the loss must carry the gradient to the critic's values: no "
                           ".item() or .detach(), no in-place changes, and no "
                           "requires_grad_(False) (it changes the caller's tensor, and raises "
                           "on a critic's output)"),
        _vl_grad_case("gradient with clipping: zero where the prediction is clipped",
                      T([3.0, 1.0, 2.05, 0.0]), T([2.5, 1.5, 0.0, 1.0]),
                      T([2.0, 2.0, 2.1, 0.1]), 0.2,
                      hint=HINT_SB3_CLIP + "; clamp gives zero gradient where it clips, and "
                           "nothing may change the caller's values in place"),
        _vl_grad_case("a batch of one from a critic", T([0.5]), T([2.0]), None, None,
                      hint="a (1,) batch gives a 0-d loss with its gradient"),
    ]


register(Exercise(
    id="value_loss", lesson="04",
    title="The critic's loss, SB3's form: mean((returns - V)^2), V clipped to "
          "old_values +- clip_range_vf when given",
    cases=value_loss_cases, reference=losses.value_loss, mistakes=lambda: mistakes_of(VL_KNOWN)))
