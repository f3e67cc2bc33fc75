"""ppo_lib.diagnostics: clip_fraction, explained_variance edge cases, diagnose rules."""

import math

import pytest
import torch

from ppo_lib.diagnostics import METRIC_KEYS, clip_fraction, diagnose, explained_variance

T = torch.tensor


def test_clip_fraction_counts_both_sides_and_returns_a_float():
    got = clip_fraction(T([0.5, 0.9, 1.0, 1.1, 1.5]), 0.2)
    assert isinstance(got, float) and math.isclose(got, 0.4, rel_tol=1e-6)
    assert clip_fraction(torch.ones(7), 0.2) == 0.0


def test_clip_fraction_checks_clip_range():
    with pytest.raises(ValueError, match="clip_range"):
        clip_fraction(torch.ones(2), -0.1)


def test_explained_variance_edge_cases():
    returns = T([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(returns, returns) == 1.0
    assert math.isclose(explained_variance(returns + 10, returns), 1.0)  # constant offset
    assert math.isclose(explained_variance(torch.full((4,), 2.5), returns), 0.0, abs_tol=1e-12)
    assert math.isclose(explained_variance(T([4.0, 3.0, 2.0, 1.0]), returns), -3.0)
    assert math.isnan(explained_variance(returns, torch.full((4,), 5.0)))


def test_explained_variance_matches_sb3():
    from stable_baselines3.common.utils import explained_variance as sb3_ev
    g = torch.Generator().manual_seed(0)
    values, returns = torch.randn(50, generator=g), torch.randn(50, generator=g)
    assert math.isclose(explained_variance(values, returns),
                        float(sb3_ev(values.numpy(), returns.numpy())), rel_tol=1e-5)


def test_diagnose_flags_each_rule_with_metric_and_value():
    findings = diagnose({"train/approx_kl": 0.2, "train/clip_fraction": 0.7,
                         "train/explained_variance": -0.5})
    text = "\n".join(findings)
    assert len(findings) == 3
    for needle in ("approx_kl = 0.2", "clip_fraction = 0.70", "explained_variance = -0.50"):
        assert needle in text
    assert diagnose({"approx_kl": 1e-4})[0].startswith("approx_kl")


def test_diagnose_healthy_run_is_quiet():
    assert diagnose({"train/approx_kl": 0.01, "train/clip_fraction": 0.1,
                     "train/explained_variance": 0.8, "train/entropy_loss": -0.6}) == []


def test_metric_keys_are_sb3_spelled():
    assert "train/approx_kl" in METRIC_KEYS and all("/" in k for k in METRIC_KEYS)


def test_diagnose_collapsed_policy_never_advises_a_higher_learning_rate():
    findings = diagnose({"train/approx_kl": 1e-5, "train/entropy_loss": -0.001})
    assert len(findings) == 2
    assert all("raise learning_rate" not in f for f in findings), findings
    assert "collapsed" in findings[0] and "lower learning_rate" in findings[1]
    # with a healthy entropy, a tiny KL still asks for bigger steps
    assert "raise learning_rate" in diagnose({"train/approx_kl": 1e-5,
                                              "train/entropy_loss": -0.6})[0]
