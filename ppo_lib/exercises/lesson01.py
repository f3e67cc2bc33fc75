"""Lesson 01 exercises: the REINFORCE loss and advantages with a baseline.

``policy_gradient_loss`` has the signature of ``ppo_lib.losses.policy_gradient_loss``;
``baseline_advantages`` that of ``ppo_lib.vpg.baseline_advantages``. Both plug into
``ppo_lib.vpg.train_vpg(loss_fn=..., advantage_fn=...)``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..grading import Case, Exercise, Mistake, compare, register
from ..losses import policy_gradient_loss
from ..vpg import baseline_advantages

# ---------------------------------------------------------------------------------------
# policy_gradient_loss: L^PG = -mean_t log pi(a_t|s_t) A_t


def _pg_inputs(seed: int, shape: tuple) -> tuple[Tensor, Tensor]:
    """log-probabilities (negative, as real ones are) and advantages of both signs."""
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.log(0.05 + 0.9 * torch.rand(shape, generator=g))
    advantages = torch.randn(shape, generator=g)
    return log_probs, advantages


def _which_pg_mistake(log_probs: Tensor, advantages: Tensor, got: Tensor) -> str:
    """Name the classic mistake whose value ``got`` matches, if any."""
    variants = {
        "the minus sign is missing (the loss is minimised, the objective maximised)":
            (log_probs * advantages).mean(),
        "it sums over steps; take the mean": -(log_probs * advantages).sum(),
        "it uses probabilities pi(a|s) instead of log-probabilities log pi(a|s)":
            -(log_probs.exp() * advantages).mean(),
    }
    for message, value in variants.items():
        if torch.allclose(got.detach().double(), value.double(), atol=1e-6, rtol=1e-5):
            return message
    return ""


def _verify_pg_value(log_probs: Tensor, advantages: Tensor, got) -> str | None:
    if not isinstance(got, Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if got.dim() != 0:
        return f"expected a 0-d tensor (one scalar loss), got shape {tuple(got.shape)}"
    want = policy_gradient_loss(log_probs, advantages)
    problem = compare(got.detach(), want)
    if problem:
        mistake = _which_pg_mistake(log_probs, advantages, got)
        return f"{problem}" + (f": {mistake}" if mistake else "")
    return None


def _pg_value_case(name: str, seed: int, shape: tuple, hint: str) -> Case:
    log_probs, advantages = _pg_inputs(seed, shape)
    return Case(name, args=(log_probs, advantages), hint=hint,
                verify=functools.partial(_verify_pg_value, log_probs, advantages))


def _graph_leaves(output: Tensor) -> list[Tensor]:
    """The leaf tensors that require grad and that ``output`` was computed from.

    ``check`` hands the learner copies of the case's inputs, so the verifier finds them
    in the autograd graph of the answer."""
    leaves, seen, stack = [], set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):          # AccumulateGrad: a leaf
            leaves.append(node.variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def _verify_pg_gradient(log_probs: Tensor, advantages: Tensor, got) -> str | None:
    """The gradient goes to log pi only: d L / d log pi_t = -A_t / n, none to A_t."""
    if not isinstance(got, Tensor) or got.dim() != 0:
        return "expected a 0-d tensor (one scalar loss)"
    if not got.requires_grad:
        return "the loss carries no gradient (.item(), .detach() or float() somewhere?)"
    leaves = _graph_leaves(got)
    grads = torch.autograd.grad(got, leaves, allow_unused=True)
    grad_log_probs = None
    for leaf, grad in zip(leaves, grads):
        if torch.equal(leaf.detach(), advantages) and grad is not None and grad.abs().max() > 0:
            return ("a gradient flows into the advantages: they are constants (weights) in "
                    "the policy gradient, detach them")
        if torch.equal(leaf.detach(), log_probs):
            grad_log_probs = grad
    want = -advantages / advantages.numel()
    if grad_log_probs is None or not torch.allclose(grad_log_probs, want, atol=1e-6):
        return f"d loss / d log_probs is {grad_log_probs}, expected -A_t / n = {want}"
    return None


def _pg_gradient_case() -> Case:
    log_probs, advantages = _pg_inputs(7, (5,))
    # Both require grad, as if the advantages came from a critic that is being trained.
    args = (log_probs.clone().requires_grad_(True), advantages.clone().requires_grad_(True))
    return Case("gradient: advantages are constants", args=args,
                verify=functools.partial(_verify_pg_gradient, log_probs, advantages),
                hint="multiply by advantages.detach(): the advantage weighs each "
                     "log-probability but is not itself optimised by this loss")


def _pg_cases() -> list[Case]:
    return [
        _pg_value_case("one step", 0, (1,),
                       "L = -log pi(a|s) * A: mind the minus sign, and use log_probs as "
                       "given (they are already logarithms)"),
        _pg_value_case("six steps", 1, (6,),
                       "average over steps with .mean(), so the step size does not grow "
                       "with the batch"),
        _pg_value_case("(T, N) = (4, 3) steps x envs", 2, (4, 3),
                       "the mean runs over every entry, whatever the shape"),
        _pg_gradient_case(),
    ]


def _pg_missing_minus(log_probs, advantages):
    return (log_probs * advantages.detach()).mean()


def _pg_sum(log_probs, advantages):
    return -(log_probs * advantages.detach()).sum()


def _pg_not_detached(log_probs, advantages):
    return -(log_probs * advantages).mean()


def _pg_probs(log_probs, advantages):
    return -(log_probs.exp() * advantages.detach()).mean()


def _pg_mean_of_products_split(log_probs, advantages):
    return -(log_probs.mean() * advantages.detach().mean())


def _pg_returns_float(log_probs, advantages):
    return -(log_probs * advantages.detach()).mean().item()


def _pg_mistakes() -> list[Mistake]:
    return [
        Mistake("missing minus sign", _pg_missing_minus),
        Mistake("sum instead of mean", _pg_sum),
        Mistake("advantages not detached", _pg_not_detached),
        Mistake("probabilities instead of log-probabilities", _pg_probs),
        Mistake("mean(log pi) * mean(A)", _pg_mean_of_products_split),
        Mistake("returns a float (no gradient)", _pg_returns_float),
    ]


register(Exercise(
    id="policy_gradient_loss", lesson="01",
    title="The REINFORCE loss -mean log pi(a|s) A",
    cases=_pg_cases, reference=policy_gradient_loss, mistakes=_pg_mistakes))

# ---------------------------------------------------------------------------------------
# baseline_advantages: A_t = G_t - V(s_t), optionally normalised.


def _returns_and_values(seed: int, n: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    returns = 20.0 * torch.rand(n, generator=g)
    values = returns + 3.0 * torch.randn(n, generator=g)
    return returns, values


def _verify_normalized(returns: Tensor, values: Tensor, got) -> str | None:
    """(A - mean) / (std + 1e-8); either std (n or n - 1 in the denominator) is accepted."""
    if not isinstance(got, Tensor) or got.shape != returns.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        return f"expected a tensor of shape {tuple(returns.shape)}, got {shape}"
    raw = returns - values
    for unbiased in (True, False):
        want = (raw - raw.mean()) / (raw.std(unbiased=unbiased) + 1e-8)
        if torch.allclose(got.detach(), want, atol=1e-5, rtol=1e-4):
            return None
    mean, std = got.detach().mean().item(), got.detach().std().item()
    return (f"expected (A - mean A) / (std A + 1e-8) (mean 0, std 1); yours has mean "
            f"{mean:.3g} and std {std:.3g}")


def _verify_baseline_constant(got) -> str | None:
    if not isinstance(got, Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if got.requires_grad:
        return ("the advantages carry a gradient back into the critic's values: detach "
                "V(s_t), the baseline is a constant for the policy gradient")
    return None


def _baseline_cases() -> list[Case]:
    returns, values = _returns_and_values(0, 6)
    returns_b, values_b = _returns_and_values(1, 9)
    constant = torch.full((5,), 7.0)
    grad_values = values.clone().requires_grad_(True)
    return [
        Case("A = G - V without normalisation", args=(returns, values),
             kwargs=dict(normalize=False),
             hint="A_t = G_t - V(s_t) (returns minus values, not the other way round); "
                  "normalize=False must leave the scale alone"),
        Case("normalised", args=(returns_b, values_b), kwargs=dict(normalize=True),
             verify=functools.partial(_verify_normalized, returns_b, values_b),
             hint="A <- (A - A.mean()) / (A.std() + 1e-8) when normalize=True"),
        Case("normalised, all advantages equal", args=(constant, torch.zeros(5)),
             kwargs=dict(normalize=True), expected=torch.zeros(5),
             hint="when every advantage is equal the std is 0: the + 1e-8 keeps the "
                  "division finite (the result is all zeros)"),
        Case("the baseline is a constant", args=(returns, grad_values),
             kwargs=dict(normalize=False), verify=_verify_baseline_constant,
             hint="use values.detach(): no gradient of the policy loss may reach V"),
    ]


def _adv_flipped(returns, values, normalize=True):
    return baseline_advantages(values, returns, normalize)


def _adv_not_detached(returns, values, normalize=True):
    advantages = returns - values
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


def _adv_always_normalized(returns, values, normalize=True):
    return baseline_advantages(returns, values, normalize=True)


def _adv_never_normalized(returns, values, normalize=True):
    return baseline_advantages(returns, values, normalize=False)


def _adv_no_epsilon(returns, values, normalize=True):
    advantages = returns - values.detach()
    if normalize:
        advantages = (advantages - advantages.mean()) / advantages.std()
    return advantages


def _adv_not_centred(returns, values, normalize=True):
    advantages = returns - values.detach()
    if normalize:
        advantages = advantages / (advantages.std() + 1e-8)
    return advantages


def _baseline_mistakes() -> list[Mistake]:
    return [
        Mistake("V - G instead of G - V", _adv_flipped),
        Mistake("values not detached", _adv_not_detached),
        Mistake("normalises even when normalize=False", _adv_always_normalized),
        Mistake("never normalises", _adv_never_normalized),
        Mistake("no epsilon: division by a zero std", _adv_no_epsilon),
        Mistake("divides by the std without subtracting the mean", _adv_not_centred),
    ]


register(Exercise(
    id="baseline_advantages", lesson="01",
    title="Advantages with a baseline: A = G - V(s), normalised",
    cases=_baseline_cases, reference=baseline_advantages, mistakes=_baseline_mistakes))
