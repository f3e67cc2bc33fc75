"""Lesson 01 exercises: the REINFORCE loss and advantages with a baseline.

``policy_gradient_loss`` has the signature of ``ppo_lib.losses.policy_gradient_loss``;
``baseline_advantages`` that of ``ppo_lib.vpg.baseline_advantages``. Both plug into
``ppo_lib.vpg.train_vpg(loss_fn=..., advantage_fn=...)``, which passes log-probabilities
from the policy (non-leaf tensors that require grad) and flat (B,) batches. The cases use
those, a batch of one and (T, N) tensors; each classic mistake is listed once (``Known``,
see ``cases.py``) and named in the message when a learner's output reproduces it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..grading import Case, Exercise, register
from ...losses import policy_gradient_loss
from ...vpg import baseline_advantages
from .cases import ITEM_SAYS, Known, graded_case, from_a_network, mistakes_of

# ---------------------------------------------------------------------------------------
# policy_gradient_loss: loss_pg = -L^PG = -mean_t log pi(a_t|s_t) A_t  (eq. 1.2)


def _pg_inputs(seed: int, shape: tuple) -> tuple[Tensor, Tensor]:
    """log-probabilities (negative, as real ones are) and advantages of both signs."""
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.log(0.05 + 0.9 * torch.rand(shape, generator=g))
    advantages = torch.randn(shape, generator=g)
    return log_probs, advantages


def _pg_normalizes(log_probs, advantages):
    a = advantages.detach()
    a = (a - a.mean()) / (a.std() + 1e-8)
    return -(log_probs * a).mean()


def _pg_flag_off(log_probs, advantages):
    advantages.requires_grad_(False)  # changes the caller's tensor; raises on a critic's output
    return -(log_probs * advantages).mean()


PG_KNOWN = [
    Known("missing minus sign", lambda lp, a: (lp * a.detach()).mean(), "minus sign",
          "the minus sign is missing: the loss loss_pg = -L^PG is minimised, the objective L^PG "
          "maximised"),
    Known("sum instead of mean", lambda lp, a: -(lp * a.detach()).sum(), "take the mean",
          "you sum over steps: take the mean, so the step size does not grow with the batch"),
    Known("divides the sum by len(log_probs)",
          lambda lp, a: -(lp * a.detach()).sum() / len(lp), "len(log_probs)",
          "you divide by len(log_probs), which is T for (T, N) inputs: .mean() averages over "
          "every entry"),
    Known("mean over axis 0 only", lambda lp, a: -(lp * a.detach()).mean(0), "every entry",
          "you average over axis 0 only: the loss is one number, the mean over every entry"),
    Known("probabilities instead of log-probabilities",
          lambda lp, a: -(lp.exp() * a.detach()).mean(), "log-probabilities",
          "you use probabilities pi(a|s) instead of log-probabilities log pi(a|s)"),
    Known("mean(log pi) * mean(A)", lambda lp, a: -(lp.mean() * a.detach().mean()),
          "mean of the products",
          "you multiply the means: the loss is the mean of the products log pi(a_t|s_t) A_t"),
    Known("normalises the advantages inside the loss", _pg_normalizes,
          "normalise the advantages inside",
          "you normalise the advantages inside the loss: take them as given"),
    Known("returns a float (no gradient)",
          lambda lp, a: -(lp * a.detach()).mean().item(), "no .item()", ITEM_SAYS),
    Known("log_probs detached (no gradient)", lambda lp, a: -(lp.detach() * a.detach()).mean(),
          "carries no gradient"),
    Known("advantages not detached", lambda lp, a: -(lp * a).mean(), "detach"),
    Known("advantages.requires_grad_(False) instead of .detach()", _pg_flag_off,
          "requires_grad_(False)"),
]


def _pg_gradient_check(log_prob_leaf: Tensor, advantage_leaf: Tensor, advantages: Tensor):
    """then-check: d L / d log pi_t = -A_t / n, and no gradient reaches the advantages."""
    def check(got) -> str | None:
        if not isinstance(got, Tensor) or got.grad_fn is None:
            return "the loss carries no gradient (.item(), .detach() or float() somewhere?)"
        grad_lp, grad_adv = torch.autograd.grad(got, [log_prob_leaf, advantage_leaf],
                                                allow_unused=True, retain_graph=True)
        if grad_adv is not None and grad_adv.abs().max() > 0:
            return ("a gradient flows into the advantages: they are constants (weights) in "
                    "the policy gradient, detach them")
        want = -advantages / advantages.numel()
        if grad_lp is None:
            return "the loss carries no gradient to log_probs (.detach() or .data on them?)"
        if not torch.allclose(grad_lp, want, atol=1e-6):
            return (f"d loss / d log_probs is {[round(x, 4) for x in grad_lp.flatten().tolist()]}, "
                    f"expected -A_t / n = {[round(x, 4) for x in want.flatten().tolist()]}")
        return None
    return check


HINT_PG_GRAD = ("multiply by advantages.detach(): the advantage weighs each log-probability "
                "but is not itself optimised by this loss (not requires_grad_(False), which "
                "changes the caller's tensor and raises on a critic's output)")


def _pg_gradient_case(name: str, seed: int, shape: tuple) -> Case:
    """log-probs from a policy and advantages from a critic: both non-leaf, requiring grad."""
    log_probs, advantages = _pg_inputs(seed, shape)
    lp_leaf, lp = from_a_network(log_probs)
    adv_leaf, adv = from_a_network(advantages)
    return graded_case(name, policy_gradient_loss, (lp, adv), hint=HINT_PG_GRAD, known=PG_KNOWN,
                      then=_pg_gradient_check(lp_leaf, adv_leaf, advantages),
                      inputs_with_grad=[lp, adv])


def _pg_cases() -> list[Case]:
    def case(name, seed, shape, hint):
        return graded_case(name, policy_gradient_loss, _pg_inputs(seed, shape), hint=hint,
                          known=PG_KNOWN)
    return [
        case("one step", 0, (1,), "loss_pg = -log pi(a|s) * A: mind the minus sign, and use "
                                  "log_probs as given (they are already logarithms)"),
        case("six steps", 1, (6,), "average over steps with .mean(), so the step size does "
                                   "not grow with the batch"),
        case("(T, N) = (4, 3) steps x envs", 2, (4, 3),
             "the mean runs over every entry, whatever the shape"),
        _pg_gradient_case("gradient: advantages are constants", 7, (5,)),
        _pg_gradient_case("gradient for a batch of one (as lesson 01 uses it)", 8, (1,)),
    ]


register(Exercise(
    id="policy_gradient_loss", lesson="01",
    title="The REINFORCE loss -mean log pi(a|s) A",
    cases=_pg_cases, reference=policy_gradient_loss, mistakes=lambda: mistakes_of(PG_KNOWN)))

# ---------------------------------------------------------------------------------------
# baseline_advantages: A_t = G_t - V(s_t), optionally normalised.


def T(values) -> Tensor:  # noqa: N802 (short constructor for the cases)
    return torch.tensor(values, dtype=torch.float32)


def _returns_and_values(seed: int, n: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    returns = 20.0 * torch.rand(n, generator=g)
    values = returns + 3.0 * torch.randn(n, generator=g)
    return returns, values


def _normalized(raw: Tensor, unbiased: bool) -> Tensor:
    return (raw - raw.mean()) / (raw.std(unbiased=unbiased) + 1e-8)


def _adv_flipped(returns, values, normalize=True):
    return baseline_advantages(values, returns, normalize)


def _adv_not_detached(returns, values, normalize=True):
    advantages = returns - values
    if normalize and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def _adv_no_epsilon(returns, values, normalize=True):
    advantages = returns - values.detach()
    if normalize and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / advantages.std()
    return advantages


def _adv_not_centred(returns, values, normalize=True):
    advantages = returns - values.detach()
    if normalize and advantages.numel() > 1:
        advantages = advantages / (advantages.std() + 1e-8)
    return advantages


def _adv_no_guard(returns, values, normalize=True):
    advantages = returns - values.detach()
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def _adv_flag_off(returns, values, normalize=True):
    values.requires_grad_(False)  # changes the caller's tensor; raises on a critic's output
    return baseline_advantages(returns, values, normalize)


def _adv_in_place(returns, values, normalize=True):
    returns -= values.detach()  # writes into the caller's returns
    if normalize and returns.numel() > 1:
        returns = (returns - returns.mean()) / (returns.std() + 1e-8)
    return returns


ADV_KNOWN = [
    Known("V - G instead of G - V", _adv_flipped, "G_t - V(s_t)",
          "you compute V - G: A_t = G_t - V(s_t), returns minus values"),
    Known("normalises even when normalize=False",
          lambda r, v, normalize=True: baseline_advantages(r, v, normalize=True),
          "normalize=False", "you normalise although normalize=False: leave the scale alone "
          "then"),
    Known("never normalises",
          lambda r, v, normalize=True: baseline_advantages(r, v, normalize=False),
          "never normalise", "you never normalise: with normalize=True, A <- (A - A.mean()) / "
          "(A.std() + 1e-8)"),
    Known("divides by the std without subtracting the mean", _adv_not_centred,
          "subtracting the mean", "you divide by the std without subtracting the mean"),
    Known("no epsilon: division by a zero std", _adv_no_epsilon, "1e-8",
          "you divide by the std alone: add 1e-8 so that equal advantages (std 0) stay finite"),
    Known("no guard for a batch of one (std of one value is NaN)", _adv_no_guard,
          "batch of one",
          "you normalise a batch of one: its std() is NaN (n - 1 = 0); leave a single "
          "advantage as it is"),
    Known("values not detached", _adv_not_detached, "detach"),
    Known("values.requires_grad_(False) instead of .detach()", _adv_flag_off,
          "requires_grad_(False)"),
    Known("subtracts in place from the caller's returns", _adv_in_place,
          "compute into new tensors"),
]


def _no_gradient(got) -> str | None:
    if isinstance(got, Tensor) and got.requires_grad:
        return ("the advantages carry a gradient back into the critic's values: detach "
                "V(s_t), the baseline is a constant for the policy gradient")
    return None


def _baseline_cases() -> list[Case]:
    def case(name, args, kwargs, *, hint, expected=None, also=(), then=None, with_grad=()):
        return graded_case(name, baseline_advantages, args, kwargs, hint=hint, known=ADV_KNOWN,
                          expected=expected, also=also, then=then, inputs_with_grad=with_grad)
    returns, values = _returns_and_values(0, 6)
    returns_b, values_b = _returns_and_values(1, 9)
    raw_b = returns_b - values_b
    constant = torch.full((5,), 7.0)
    leaf, critic_values = from_a_network(values)
    _, critic_values_b = from_a_network(values_b)
    return [
        case("A = G - V without normalisation", (returns, values), dict(normalize=False),
             hint="A_t = G_t - V(s_t) (returns minus values, not the other way round); "
                  "normalize=False must leave the scale alone"),
        case("normalised", (returns_b, values_b), dict(normalize=True),
             expected=_normalized(raw_b, True), also=[_normalized(raw_b, False)],
             hint="A <- (A - A.mean()) / (A.std() + 1e-8) when normalize=True"),
        case("normalised, all advantages equal", (constant, torch.zeros(5)),
             dict(normalize=True), expected=torch.zeros(5),
             hint="when every advantage is equal the std is 0: the + 1e-8 keeps the "
                  "division finite (the result is all zeros)"),
        case("normalised, a batch of one", (T([5.0]), T([2.0])), dict(normalize=True),
             expected=T([3.0]), also=[T([0.0])],
             hint="a batch of one: its std() is NaN (n - 1 = 0); leave a single advantage "
                  "as it is (SB3 normalises only batches of more than one), as long as the "
                  "result is finite"),
        case("the baseline is a constant (values from a critic)", (returns, critic_values),
             dict(normalize=False), then=_no_gradient, with_grad=[critic_values],
             hint="use values.detach(): no gradient of the policy loss may reach V (and no "
                  "values.requires_grad_(False): it changes the caller's tensor and raises "
                  "on a critic's output)"),
        case("normalised, values from a critic", (returns_b, critic_values_b),
             dict(normalize=True), expected=_normalized(raw_b, True),
             also=[_normalized(raw_b, False)], then=_no_gradient, with_grad=[critic_values_b],
             hint="values.detach(), then normalise"),
    ]


register(Exercise(
    id="baseline_advantages", lesson="01",
    title="Advantages with a baseline: A = G - V(s), normalised",
    cases=_baseline_cases, reference=baseline_advantages,
    mistakes=lambda: mistakes_of(ADV_KNOWN)))
