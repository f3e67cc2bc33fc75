"""ppo_lib.trpo: conjugate gradient, Fisher-vector products, the TRPO step and loop."""

import functools

import pytest
import torch
from torch import nn

from ppo_lib.trpo import (categorical_mean_kl, conjugate_gradient, fisher_vector_product,
                          flat_grad, surrogate_objective, train_trpo, trpo_step)

torch.set_num_threads(1)


def assert_close(got, want, rtol=1e-5, atol=1e-8):
    """torch.allclose with a message (torch.testing.assert_close costs ~2 s on first use)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.allclose(got, want, rtol=rtol, atol=atol), (got, want)


def random_spd(n, condition=10.0, seed=0):
    """A random symmetric positive-definite n x n matrix with the given condition number."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigenvalues = torch.logspace(0, torch.log10(torch.tensor(condition)).item(), n,
                                 dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


def matvec(A, v):
    return A @ v


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_conjugate_gradient_solves_spd_systems(n):
    A = random_spd(n, condition=10.0, seed=n)
    b = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = conjugate_gradient(functools.partial(matvec, A), b, iters=n, tol=0.0)
    assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-8)


def test_conjugate_gradient_float32_random_matrix():
    g = torch.Generator().manual_seed(3)
    M = torch.randn(8, 8, generator=g)
    A = M @ M.T + 8 * torch.eye(8)
    b = torch.randn(8, generator=g)
    x = conjugate_gradient(functools.partial(matvec, A), b, iters=8)
    assert_close(x, torch.linalg.solve(A, b), rtol=1e-4, atol=1e-4)


def test_few_iterations_on_ill_conditioned_matrix_are_less_accurate():
    # Condition number 1e4: rounding spoils the conjugacy, so even n = 50 iterations are
    # not exact; 3 or 10 (TRPO's budget) are far off. Well-conditioned: 10 are plenty.
    b = torch.randn(50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    A = random_spd(50, condition=1e4, seed=7)
    exact = torch.linalg.solve(A, b)
    errors = [((conjugate_gradient(functools.partial(matvec, A), b, iters=k, tol=0.0)
                - exact).norm() / exact.norm()).item() for k in (3, 10, 50, 200)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[1] > 0.5                        # 10 iterations: clearly not solved
    assert errors[3] < 1e-8                       # many iterations: solved
    A_easy = random_spd(50, condition=3.0, seed=7)
    x = conjugate_gradient(functools.partial(matvec, A_easy), b, iters=10, tol=0.0)
    assert ((x - torch.linalg.solve(A_easy, b)).norm() / exact.norm()).item() < 1e-3


def test_conjugate_gradient_zero_rhs_and_early_stop():
    A = random_spd(4)
    calls = []

    def counting(v):
        calls.append(1)
        return A @ v

    assert torch.equal(conjugate_gradient(counting, torch.zeros(4, dtype=torch.float64)),
                       torch.zeros(4, dtype=torch.float64))
    assert calls == []                       # r^T r = 0 < tol: no product needed


@pytest.mark.parametrize("kwargs, match", [
    (dict(iters=0), "iters"), (dict(iters=2.5), "iters"), (dict(tol=-1.0), "tol")])
def test_conjugate_gradient_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        conjugate_gradient(functools.partial(matvec, torch.eye(2)), torch.ones(2), **kwargs)


def test_conjugate_gradient_needs_a_function():
    with pytest.raises(TypeError, match="Avp"):
        conjugate_gradient(torch.eye(2), torch.ones(2))


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def tiny_data(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 3, (n,), generator=g)
    advantages = torch.randn(n, generator=g, dtype=torch.float64)
    return obs, actions, advantages


def explicit_fisher(policy, obs):
    """F = mean_s sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T, built row by row."""
    params = list(policy.parameters())
    n = sum(p.numel() for p in params)
    F = torch.zeros(n, n, dtype=torch.float64)
    for s in obs:
        log_probs = torch.log_softmax(policy(s), dim=-1)
        for a in range(log_probs.shape[0]):
            grad = flat_grad(log_probs[a], params, retain_graph=True)
            F += log_probs[a].exp().item() * torch.outer(grad, grad)
    return F / len(obs)


def test_fisher_vector_product_matches_explicit_fisher_and_kl_hessian():
    policy = tiny_policy()
    obs, _, _ = tiny_data(n=8)
    params = list(policy.parameters())
    with torch.no_grad():
        old_logits = policy(obs)
    mean_kl = categorical_mean_kl(old_logits, policy(obs))
    F = explicit_fisher(policy, obs)
    n = F.shape[0]
    # The KL Hessian at theta_old, via torch.autograd.functional.hessian on the flat vector.
    theta0 = torch.nn.utils.parameters_to_vector(params).detach()
    H = torch.autograd.functional.hessian(
        functools.partial(kl_of_flat_params, policy, obs, old_logits), theta0)
    assert_close(H, F, rtol=1e-6, atol=1e-9)
    v = torch.randn(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert_close(fisher_vector_product(mean_kl, params, v, damping=0.0), F @ v,
                               rtol=1e-6, atol=1e-9)
    assert_close(fisher_vector_product(mean_kl, params, v, damping=0.1),
                               F @ v + 0.1 * v, rtol=1e-6, atol=1e-9)


def kl_of_flat_params(policy, obs, old_logits, theta):
    logits = torch.func.functional_call(policy, unflatten(policy, theta), (obs,))
    return categorical_mean_kl(old_logits, logits)


def unflatten(policy, theta):
    out, i = {}, 0
    for name, p in policy.named_parameters():
        out[name] = theta[i:i + p.numel()].view_as(p)
        i += p.numel()
    return out


def test_fisher_vector_product_bad_vector_shape():
    policy = tiny_policy()
    obs, _, _ = tiny_data(n=4)
    mean_kl = categorical_mean_kl(policy(obs).detach(), policy(obs))
    with pytest.raises(ValueError, match="vector"):
        fisher_vector_product(mean_kl, list(policy.parameters()), torch.ones(3))
    with pytest.raises(ValueError, match="damping"):
        fisher_vector_product(mean_kl, list(policy.parameters()), torch.ones(31), damping=-1)


@pytest.mark.parametrize("delta", [0.0001, 0.001, 0.01, 0.05])
def test_trpo_step_respects_kl_bound_and_improves_surrogate(delta):
    policy = tiny_policy(seed=1)
    obs, actions, advantages = tiny_data(seed=1, n=64)
    with torch.no_grad():
        old_logits = policy(obs)
        old_log_probs = torch.log_softmax(old_logits, -1).gather(-1, actions[:, None])[:, 0]
        before = surrogate_objective(old_logits, actions, old_log_probs, advantages).item()
    info = trpo_step(policy, obs, actions, advantages, delta=delta, damping=1e-3)
    with torch.no_grad():
        logits = policy(obs)
        kl = categorical_mean_kl(old_logits, logits).item()
        after = surrogate_objective(logits, actions, old_log_probs, advantages).item()
    assert info.accepted
    assert 0 < kl <= delta
    assert kl == pytest.approx(info.kl)
    assert after > before
    assert after - before == pytest.approx(info.improvement)
    # A small trust region: the quadratic model is good, the full step is taken, KL ~ delta.
    if delta <= 0.001:
        assert info.backtracks == 0
        assert kl > 0.5 * delta


def test_damping_shortens_the_step():
    obs, actions, advantages = tiny_data(seed=1, n=64)
    kls = []
    for damping in (1e-3, 1.0):
        policy = tiny_policy(seed=1)
        kls.append(trpo_step(policy, obs, actions, advantages, delta=0.01, damping=damping).kl)
    assert kls[1] < kls[0]


def test_trpo_step_rejects_when_nothing_improves():
    policy = tiny_policy(seed=2)
    obs, actions, _ = tiny_data(seed=2)
    before = torch.nn.utils.parameters_to_vector(policy.parameters()).clone()
    info = trpo_step(policy, obs, actions, torch.zeros(len(actions), dtype=torch.float64))
    assert not info.accepted
    assert torch.equal(torch.nn.utils.parameters_to_vector(policy.parameters()), before)


@pytest.mark.parametrize("kwargs, match", [
    (dict(delta=0.0), "delta"), (dict(delta=-0.1), "delta"), (dict(cg_iters=0), "cg_iters"),
    (dict(backtrack_coef=1.0), "backtrack_coef"), (dict(max_backtracks=0), "max_backtracks")])
def test_trpo_step_bad_arguments(kwargs, match):
    policy = tiny_policy()
    obs, actions, advantages = tiny_data()
    with pytest.raises(ValueError, match=match):
        trpo_step(policy, obs, actions, advantages, **kwargs)


def test_train_trpo_bad_arguments():
    with pytest.raises(ValueError, match="delta"):
        train_trpo(delta=0)
    with pytest.raises(ValueError, match="n_iterations"):
        train_trpo(n_iterations=0)


@pytest.mark.slow
def test_train_trpo_learns_cartpole():
    result = train_trpo(n_iterations=40, delta=0.01, seed=0, total_timesteps=60_000)
    returns = result.get("mean_return")
    assert returns[0] < 50
    assert sum(returns[-3:]) / 3 >= 300
    assert all(row["kl"] <= 0.01 for row in result.history)


def test_fisher_matrix_matches_the_explicit_sum():
    from ppo_lib.trpo import fisher_matrix
    policy = tiny_policy(seed=3)
    obs, _, _ = tiny_data(seed=3, n=6)
    assert_close(fisher_matrix(policy, obs), explicit_fisher(policy, obs),
                               rtol=1e-6, atol=1e-10)


def test_conjugate_gradient_tol_zero_stops_at_an_exact_solution():
    """With tol=0 (as lesson 02 calls it) a system solved exactly (A = 2I: one step) must
    stop, not divide 0 by 0 into NaN on the next step."""
    b = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: 2.0 * v, b, iters=10, tol=0.0)
    assert torch.allclose(x, b / 2) and not torch.isnan(x).any()
