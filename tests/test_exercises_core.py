"""The core exercises, the maths PPO is built from (registered in
ppo_lib/course/exercises/lesson00.py ... lesson05.py): right answers written other ways pass
(the solution notebooks' own answers, each registered mistake with its own hint: see
tests/test_exercises_all.py), wrong answers nobody registered fail, and the conjugate
gradient reference (ppo_lib.trpo) agrees with a direct solve."""

import pytest
import torch
import torch.nn.functional as F

from ppo_lib.course import grading
from ppo_lib.course.exercises import lesson02, lesson05

T = torch.tensor
CORE_IDS = ["discounted_returns", "gae", "kl_categorical", "conjugate_gradient",
            "clipped_surrogate_loss", "value_loss", "approx_kl", "clip_fraction",
            "explained_variance"]


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.setattr(grading, "RESULTS", {})
    monkeypatch.delenv(grading.NBGRADER_ENV, raising=False)
    monkeypatch.delenv(grading.RESULTS_ENV, raising=False)


def verdict(exercise_id, fn):
    result = grading.check(exercise_id, fn)
    return result.verdict


def passes(exercise_id, fn):
    v = verdict(exercise_id, fn)
    assert v.passed, v.text()


def fails_with(exercise_id, fn, *phrases):
    v = verdict(exercise_id, fn)
    assert not v.passed
    shown = (v.message + " " + v.hint).lower()
    for phrase in phrases:
        assert phrase.lower() in shown, v.text()


# ---------------------------------------------------------------------------------------
# right answers written other ways pass

def test_discounted_returns_written_other_ways():
    def with_index(rewards, dones, gamma, last_values=None):
        out = torch.zeros_like(rewards)
        for t in range(len(rewards) - 1, -1, -1):
            if t == len(rewards) - 1:
                nxt = 0.0 if last_values is None else last_values
            else:
                nxt = out[t + 1]
            out[t] = rewards[t] + gamma * (1 - dones[t]) * nxt
        return out

    def stacked_float64(rewards, dones, gamma, last_values=None):
        g = torch.zeros(rewards.shape[1:], dtype=torch.float64)
        if last_values is not None:
            g = g + torch.as_tensor(last_values, dtype=torch.float64)
        rows = []
        for r, d in zip(reversed(rewards.double()), reversed(dones.double())):
            g = r + gamma * (1 - d) * g
            rows.append(g)
        return torch.stack(rows[::-1]).to(rewards.dtype)

    def with_where(rewards, dones, gamma, last_values=None):
        g = torch.zeros_like(rewards[0]) if last_values is None else last_values.clone()
        out = []
        for t in reversed(range(rewards.shape[0])):
            g = rewards[t] + torch.where(dones[t] > 0, 0.0, gamma * g)
            out.insert(0, g)
        return torch.stack(out)

    for fn in (with_index, stacked_float64, with_where):
        passes("discounted_returns", fn)


def test_gae_written_other_ways():
    def loop_with_next_value(rewards, values, dones, last_values, gamma, gae_lambda):
        advantages = torch.zeros_like(rewards)
        last = 0
        for t in reversed(range(len(rewards))):
            next_value = last_values if t == len(rewards) - 1 else values[t + 1]
            delta = rewards[t] + gamma * next_value * (1 - dones[t]) - values[t]
            last = delta + gamma * gae_lambda * (1 - dones[t]) * last
            advantages[t] = last
        return advantages, advantages + values

    def float64_then_cast(rewards, values, dones, last_values, gamma, gae_lambda):
        r, v, d = rewards.double(), values.double(), dones.double()
        lv = torch.as_tensor(last_values, dtype=torch.float64).reshape(v[:1].shape)
        next_v = torch.cat([v[1:], lv])
        deltas = r + gamma * next_v * (1 - d) - v
        out, a = [], torch.zeros_like(v[0])
        for t in range(len(r) - 1, -1, -1):
            a = deltas[t] + gamma * gae_lambda * (1 - d[t]) * a
            out.append(a)
        adv = torch.stack(out[::-1]).to(rewards.dtype)
        return adv, adv + values

    def as_list(rewards, values, dones, last_values, gamma, gae_lambda):
        adv, ret = loop_with_next_value(rewards, values, dones, last_values, gamma, gae_lambda)
        return [adv, ret]   # a list of the two is accepted as well as a tuple

    for fn in (loop_with_next_value, float64_then_cast, as_list):
        passes("gae", fn)


def test_kl_categorical_written_other_ways():
    passes("kl_categorical", lambda p, q: (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1))
    passes("kl_categorical", lambda p, q: torch.nan_to_num(p * (p / q).log()).sum(dim=-1))
    passes("kl_categorical",
           lambda p, q: F.kl_div(q.log(), p, reduction="none").sum(-1))
    passes("kl_categorical", lambda p, q: torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=p), torch.distributions.Categorical(probs=q)))


def test_conjugate_gradient_written_other_ways():
    def check_after_update(Avp, b, iters=10, tol=1e-10):
        x, r = torch.zeros_like(b), b.clone()
        p, rr = r.clone(), r.dot(r)
        if rr < tol:
            return x
        for _ in range(iters):
            ap = Avp(p)
            alpha = rr / p.dot(ap)
            x = x + alpha * p
            r = r - alpha * ap
            rr_new = r.dot(r)
            if rr_new < tol:
                break
            p = r + (rr_new / rr) * p
            rr = rr_new
        return x

    def residual_from_x(Avp, b, iters=10, tol=1e-10):
        x = torch.zeros_like(b)
        r = b - Avp(x)
        p = r
        for _ in range(iters):
            rr = r @ r
            if rr < tol:
                break
            ap = Avp(p)
            alpha = rr / (p @ ap)
            x = x + alpha * p
            r = r - alpha * ap
            p = r + (r @ r) / rr * p
        return x

    from ppo_lib.trpo import conjugate_gradient
    for fn in (check_after_update, residual_from_x, conjugate_gradient):
        passes("conjugate_gradient", fn)


def test_clipped_surrogate_loss_written_other_ways():
    def spinning_up(ratio, advantages, clip_range):
        bound = torch.where(advantages >= 0, (1 + clip_range) * advantages,
                            (1 - clip_range) * advantages)
        return -torch.min(ratio * advantages, bound).mean()

    def max_of_negatives(ratio, advantages, clip_range):
        return torch.max(-ratio * advantages,
                         -ratio.clamp(1 - clip_range, 1 + clip_range) * advantages).mean()

    def float64_inside(ratio, advantages, clip_range):
        r, a = ratio.double(), advantages.double()
        loss = -torch.minimum(r * a, r.clamp(1 - clip_range, 1 + clip_range) * a)
        return (loss.sum() / r.numel()).float()

    for fn in (spinning_up, max_of_negatives, float64_inside):
        passes("clipped_surrogate_loss", fn)


def test_value_loss_written_other_ways():
    def with_mse_loss(values, returns, old_values=None, clip_range_vf=None):
        if clip_range_vf is not None:
            values = torch.clamp(values, old_values - clip_range_vf, old_values + clip_range_vf)
        return F.mse_loss(values, returns)

    def with_where(values, returns, old_values=None, clip_range_vf=None):
        if clip_range_vf is None:
            return ((values - returns) ** 2).mean()
        low, high = old_values - clip_range_vf, old_values + clip_range_vf
        clipped = torch.where(values > high, high, torch.where(values < low, low, values))
        # torch.where passes no gradient to values where it picks the bound, as clamp does
        return (clipped - returns).pow(2).sum() / values.numel()

    for fn in (with_mse_loss, with_where):
        passes("value_loss", fn)


def test_approx_kl_written_other_ways():
    passes("approx_kl", lambda log_ratio: torch.mean(torch.expm1(log_ratio) - log_ratio))
    passes("approx_kl", lambda lr: ((lr.double().exp() - 1) - lr.double()).mean().float())
    passes("approx_kl", lambda lr: (lr.exp() - 1 - lr).sum() / lr.numel())


def test_clip_fraction_written_other_ways():
    passes("clip_fraction", lambda ratio, clip_range: ((ratio - 1).abs() > clip_range).float().mean())
    passes("clip_fraction", lambda r, eps: float(((r > 1 + eps) | (r < 1 - eps)).sum()) / r.numel())
    passes("clip_fraction", lambda r, eps: ((r - 1).abs() > eps).double().mean().item())


def test_explained_variance_written_other_ways():
    def unbiased(values, returns):  # n - 1 cancels in the ratio
        var = returns.var()
        return float("nan") if var == 0 else (1 - (returns - values).var() / var).item()

    def numpy_style(values, returns):
        import numpy as np
        y, p = returns.flatten().numpy(), values.flatten().numpy()
        var = np.var(y)
        return float("nan") if var == 0 else float(1 - np.var(y - p) / var)

    def returns_a_tensor(values, returns):
        v, r = values.reshape(-1).double(), returns.reshape(-1).double()
        var = r.var(unbiased=False)
        return torch.tensor(float("nan")) if var == 0 else 1 - (r - v).var(unbiased=False) / var

    for fn in (unbiased, numpy_style, returns_a_tensor):
        passes("explained_variance", fn)


# ---------------------------------------------------------------------------------------
# wrong answers the outside tester wrote (beyond the registered mistakes)

def test_batched_and_edge_mistakes_are_rejected():
    fails_with("clipped_surrogate_loss",
               lambda r, a, eps: -torch.min(r * a, r.clamp(1 - eps, 1 + eps) * a).sum() / len(r),
               "len(ratio)")
    fails_with("explained_variance",
               lambda v, r: sum(lesson05._ev_per_env(v[:, None], r[:, None]) for _ in [0])
               if v.dim() == 1 else lesson05._ev_per_env(v, r), "per env")
    fails_with("clip_fraction", lambda r, eps: ((r.log()).abs() > eps).float().mean().item(),
               "log r")

    def detached_ratio(ratio, advantages, clip_range):
        r = ratio.detach()
        return -torch.min(r * advantages, r.clamp(1 - clip_range, 1 + clip_range) * advantages).mean()
    fails_with("clipped_surrogate_loss", detached_ratio, "no gradient")

    def values_flag_off(values, returns, old_values=None, clip_range_vf=None):
        values.requires_grad_(False)   # raises on a critic's (non-leaf) output
        if clip_range_vf is not None:
            values = old_values + (values - old_values).clamp(-clip_range_vf, clip_range_vf)
        return ((returns - values) ** 2).mean()
    fails_with("value_loss", values_flag_off, "raised RuntimeError")


def test_a_wrong_answer_nobody_listed_gets_the_case_hint():
    v = verdict("gae", lambda r, v, d, lv, g, lam: (torch.ones_like(r), torch.ones_like(r)))
    assert not v.passed and "this is what you get" not in v.message
    assert v.hint  # the case's own hint


def test_diagnosis_names_every_mistake_that_gives_the_same_output():
    # on rewards 0, 1, 1 with values 0.5, 1, 2 two mistakes give different outputs
    mistakes = {m.description: m.answer for m in grading.EXERCISES["gae"].mistakes()}
    v = verdict("gae", mistakes["loop over range(T - 1) skips the last step"])
    assert "misses a step" in v.message and "values[-1]" not in v.message


def test_conjugate_gradient_matches_a_direct_solve():
    from ppo_lib.trpo import conjugate_gradient
    a = lesson02._spd(6, 0)
    b = torch.arange(1.0, 7.0, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)
    assert torch.allclose(lesson02._conjugate_gradient(a.__matmul__, b, iters=6), x)


def test_value_loss_states_sb3s_form():
    ex = grading.EXERCISES["value_loss"]
    assert "SB3" in ex.title
    cleanrl = next(m for m in ex.mistakes() if "CleanRL" in m.description)
    v = verdict("value_loss", cleanrl.answer)
    assert "SB3" in v.message and "max of the clipped and unclipped" in v.message
