"""Trust Region Policy Optimization, the step PPO approximates (lesson 02).

TRPO solves, at every iteration (Schulman et al. 2015, "Trust Region Policy Optimization"):

    maximise_theta   L^CPI(theta) = mean_t  pi_theta(a_t|s_t) / pi_old(a_t|s_t) * A_t
    subject to       KL_mean(theta) = mean_t KL(pi_old(.|s_t) || pi_theta(.|s_t)) <= delta

(L^CPI, the PPO paper's name for this surrogate objective, is maximised.) With L^CPI
linearised (gradient g) and the KL expanded to second order (its Hessian is the
Fisher matrix F), the solution is the natural-gradient step

    theta_new = theta_old + sqrt(2 delta / (g^T F^-1 g)) * F^-1 g

F is never formed: ``conjugate_gradient`` solves F x = g using only Fisher-vector products
F v, which ``fisher_vector_product`` computes by double backpropagation through the mean KL.
Because the quadratic model is only an approximation, ``trpo_step`` then backtracks until
the real KL is <= delta and the surrogate really improved.

Symbols: delta (the KL radius), g (policy gradient), F (Fisher matrix), x = F^-1 g.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from .grad_mode import check_trainable, trains
from .validation import check_in_range, check_positive_int, check_tensor
from .kl import categorical_mean_kl  # ppo_lib.trpo.categorical_mean_kl (lesson 02)
from .vpg import (EpisodeBatch, TrainingResult, baseline_advantages, make_env, make_policy,
                  make_value_function, training_loop)


def conjugate_gradient(Avp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10,
                       tol: float = 1e-10) -> Tensor:
    """Solve A x = b for a symmetric positive-definite A known only through v -> A v.

    The textbook conjugate gradient method (Nocedal & Wright, Algorithm 5.2), starting
    from x = 0: residual r = b - A x, search direction p, step alpha along p, and beta
    makes the next direction A-conjugate to the previous ones. Exact after n iterations
    for an n x n matrix (in exact arithmetic); TRPO uses ~10 and an approximate answer.
    Stops early when r^T r < tol, or when the residual is exactly zero (then x solves the
    system, and another step would divide 0 by 0).
    """
    if not callable(Avp):
        raise TypeError(f"Avp must be a function v -> A v, got {type(Avp).__name__}")
    check_tensor("b", b)
    check_positive_int("iters", iters)
    check_in_range("tol", tol, 0.0, float("inf"))
    x = torch.zeros_like(b)
    r = b.clone()                # r = b - A x, with x = 0
    p = r.clone()
    r_dot_r = torch.dot(r, r)
    for _ in range(iters):
        if r_dot_r < tol or r_dot_r == 0:
            break
        Ap = Avp(p)
        alpha = r_dot_r / torch.dot(p, Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        new_r_dot_r = torch.dot(r, r)
        beta = new_r_dot_r / r_dot_r
        p = r + beta * p
        r_dot_r = new_r_dot_r
    return x


def flat_grad(output: Tensor, params: Sequence[Tensor], create_graph: bool = False,
              retain_graph: bool | None = None) -> Tensor:
    """d output / d params, concatenated into one vector (zeros for unused parameters)."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params)])


def fisher_vector_product(mean_kl: Tensor, params: Sequence[Tensor], vector: Tensor,
                          damping: float = 0.1) -> Tensor:
    """F v + damping * v, with F the Hessian of the mean KL at theta = theta_old.

    ``mean_kl`` is mean_t KL(pi_old(.|s_t) || pi_theta(.|s_t)) computed with pi_old
    detached and still attached to ``params``; at theta = theta_old its Hessian is the
    Fisher information matrix F = E[grad log pi grad log pi^T]. Two backward passes
    (double backprop) give F v without forming F:

        F v = grad_theta ( (grad_theta KL)^T v )

    ``damping`` adds a multiple of the identity (SB3-contrib's ``cg_damping``): F is
    often near singular, and the damping keeps conjugate gradient stable.
    """
    check_tensor("vector", vector)
    check_in_range("damping", damping, 0.0, float("inf"))
    params = list(params)
    n_params = sum(p.numel() for p in params)
    if vector.shape != (n_params,):
        raise ValueError(f"vector must be flat with one entry per parameter, shape "
                         f"({n_params},), got shape {tuple(vector.shape)}")
    kl_grad = flat_grad(mean_kl, params, create_graph=True, retain_graph=True)
    kl_grad_dot_v = torch.dot(kl_grad, vector.detach())
    return flat_grad(kl_grad_dot_v, params, retain_graph=True) + damping * vector


def fisher_matrix(policy: nn.Module, obs: Tensor) -> Tensor:
    """The explicit Fisher matrix of a categorical policy, (n_params, n_params).

        F = mean_s sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T

    Forming it costs memory n_params^2 and time ~ batch x actions x n_params^2; inverting
    it ~ n_params^3. Lesson 02 times this against ``conjugate_gradient`` with
    ``fisher_vector_product``, which never forms F. For small policies and tests only.
    """
    params = {name: p.detach() for name, p in policy.named_parameters()}
    jacobians = torch.func.jacrev(_log_probs_of_params, argnums=0)(params, policy, obs)
    grads = torch.cat([j.reshape(*j.shape[:2], -1) for j in jacobians.values()], dim=-1)
    with torch.no_grad():
        probs = torch.softmax(policy(obs), dim=-1)                      # (B, A)
    weighted = grads * probs.unsqueeze(-1)                              # (B, A, n)
    return torch.einsum("ban,bam->nm", weighted, grads) / obs.shape[0]


def _log_probs_of_params(params: dict, policy: nn.Module, obs: Tensor) -> Tensor:
    """log pi(.|s) for every state, as a function of the parameters (for jacrev)."""
    return torch.log_softmax(torch.func.functional_call(policy, params, (obs,)), dim=-1)


def action_log_probs(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(a_t|s_t) of the actions taken, from logits (B, n_actions)   -> (B,)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def surrogate_objective(logits: Tensor, actions: Tensor, old_log_probs: Tensor,
                        advantages: Tensor) -> Tensor:
    """L^CPI(theta) = mean_t r_t(theta) A_t, r_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t).

    An objective (maximised): TRPO's surrogate, lesson 02 eq. 2.2.

    Its gradient at theta = theta_old is the vanilla policy gradient g.
    """
    ratio = torch.exp(action_log_probs(logits, actions) - old_log_probs)
    return (ratio * advantages).mean()


@dataclass
class TRPOInfo:
    """What one ``trpo_step`` did."""

    step_size: float            # sqrt(2 delta / g^T F^-1 g), the full step's length along F^-1 g
    kl: float                   # mean KL(pi_old || pi_new) reached (0.0 if rejected)
    improvement: float          # L^CPI(theta_new) - L^CPI(theta_old) (0.0 if rejected)
    expected_improvement: float  # g^T (full step), the linear model's prediction
    backtracks: int             # how many times the step was halved
    accepted: bool              # False: no step within max_backtracks satisfied both tests
    fisher_vector_products: int = 0  # F v products made: the CG iterations + 1 for x^T F x;
    #                                  each costs two backward passes (double backprop)


def trpo_step(policy: nn.Module, obs: Tensor, actions: Tensor, advantages: Tensor,
              delta: float = 0.01, cg_iters: int = 10, damping: float = 0.1,
              backtrack_coef: float = 0.5, max_backtracks: int = 10) -> TRPOInfo:
    """One TRPO update of a categorical ``policy`` (a module mapping obs to logits), in place.

    1. g = grad L^CPI(theta_old)                      (the policy gradient)
    2. x = F^-1 g by ``conjugate_gradient`` with Fisher-vector products
    3. full step = sqrt(2 delta / x^T F x) * x         (x^T F x = g^T F^-1 g)
    4. line search: try theta_old + backtrack_coef^k * full step, k = 0, 1, ..., and keep
       the first one whose mean KL is <= delta and whose surrogate improved; if none does,
       keep theta_old.
    """
    check_in_range("delta", delta, 0.0, float("inf"), low_open=True)
    check_positive_int("cg_iters", cg_iters)
    check_in_range("backtrack_coef", backtrack_coef, 0.0, 1.0, low_open=True, high_open=True)
    check_positive_int("max_backtracks", max_backtracks)
    params = [p for p in policy.parameters() if p.requires_grad]
    with torch.no_grad():
        old_logits = policy(obs)
        old_log_probs = action_log_probs(old_logits, actions)
    advantages = advantages.detach()

    surrogate = surrogate_objective(policy(obs), actions, old_log_probs, advantages)
    g = flat_grad(surrogate, params)
    mean_kl = categorical_mean_kl(old_logits, policy(obs))
    n_products = 0

    def Fvp(vector: Tensor) -> Tensor:
        nonlocal n_products
        n_products += 1
        return fisher_vector_product(mean_kl, params, vector, damping=damping)

    x = conjugate_gradient(Fvp, g, iters=cg_iters)
    x_F_x = torch.dot(x, Fvp(x))
    if not torch.isfinite(x_F_x) or x_F_x <= 0:   # zero gradient: nothing to do
        return TRPOInfo(0.0, 0.0, 0.0, 0.0, 0, False, n_products)
    step_size = math.sqrt(2 * delta / x_F_x.item())
    full_step = step_size * x
    expected_improvement = torch.dot(g, full_step).item()

    old_params = parameters_to_vector(params).detach().clone()
    old_surrogate = surrogate.item()
    for k in range(max_backtracks):
        fraction = backtrack_coef ** k
        vector_to_parameters(old_params + fraction * full_step, params)
        with torch.no_grad():
            logits = policy(obs)
            kl = categorical_mean_kl(old_logits, logits).item()
            improvement = surrogate_objective(logits, actions, old_log_probs,
                                              advantages).item() - old_surrogate
        if kl <= delta and improvement > 0:
            return TRPOInfo(step_size, kl, improvement, expected_improvement, k, True,
                            n_products)
    vector_to_parameters(old_params, params)
    return TRPOInfo(step_size, 0.0, 0.0, expected_improvement, max_backtracks, False, n_products)


@trains  # autograd on and float32 whatever the caller's modes (ppo_lib.grad_mode)
def train_trpo(env_id: str = "CartPole-v1", n_iterations: int = 60, n_envs: int = 16,
               delta: float = 0.01, gamma: float = 0.99, normalize_advantage: bool = True,
               hidden: Sequence[int] = (32,), vf_learning_rate: float = 1e-2,
               vf_iters: int = 20, cg_iters: int = 10, damping: float = 0.1,
               total_timesteps: int | None = None, seed: int = 0,
               policy: nn.Module | None = None) -> TrainingResult:
    """TRPO on a discrete-action env: ``ppo_lib.vpg.training_loop``, the loop of
    ``train_vpg``, with ``trpo_step`` in place of the plain gradient step (so the two compare
    like for like).

    Each iteration: ``n_envs`` whole episodes, advantages G_t - V(s_t) (normalised), one
    ``trpo_step`` of radius ``delta``, then V fitted to G_t by regression. History rows as
    ``train_vpg``'s, plus kl, step_size, backtracks and accepted.
    """
    check_positive_int("n_iterations", n_iterations)
    check_in_range("delta", delta, 0.0, float("inf"), low_open=True)
    check_trainable("policy", policy)
    if total_timesteps is not None:
        check_positive_int("total_timesteps", total_timesteps)
    torch.manual_seed(seed)
    envs = make_env(env_id, n_envs)
    policy = policy if policy is not None else make_policy(envs, hidden)
    value_fn = make_value_function(envs, hidden)
    vf_optimizer = torch.optim.Adam(value_fn.parameters(), lr=vf_learning_rate)
    step = functools.partial(trpo_policy_step, policy, delta, cg_iters, damping)
    result = training_loop(envs, policy, value_fn, vf_optimizer, step, n_iterations, gamma,
                           seed, baseline_advantages, normalize_advantage, vf_iters,
                           total_timesteps)
    envs.close()
    return result


def trpo_policy_step(policy: nn.Module, delta: float, cg_iters: int, damping: float,
                     batch: EpisodeBatch, advantages: Tensor) -> dict[str, float]:
    """``trpo_step`` as ``training_loop``'s policy step: the history row's kl, step_size,
    backtracks and accepted."""
    info = trpo_step(policy, batch.obs, batch.actions, advantages, delta=delta,
                     cg_iters=cg_iters, damping=damping)
    return dict(kl=info.kl, step_size=info.step_size, backtracks=info.backtracks,
                accepted=info.accepted)
