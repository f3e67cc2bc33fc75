"""ppo_lib.stats (rliable's IQM, stratified bootstrap CIs, performance profiles, scores from a
run_grid DataFrame) and ppo_lib.lab.stats_plots: hand-computed cases, parity with rliable
and scipy on the same arrays, determinism, and bad input."""

import contextlib
import importlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.stats  # noqa: E402
from rliable import metrics  # noqa: E402

from ppo_lib import stats  # noqa: E402
from ppo_lib.lab import stats_plots  # noqa: E402


def random_scores(runs=10, tasks=3, seed=0, shift=0.0):
    return np.random.default_rng(seed).normal(loc=shift, size=(runs, tasks))


# ---------------------------------------------------------------------------------------
# interquartile_mean


@pytest.mark.parametrize("scores,want", [
    ([4.0, 1.0, 3.0, 2.0], 2.5),                       # n = 4: drop 1 at each end
    ([5.0, 1.0, 4.0, 2.0, 3.0], 3.0),                  # n = 5: floor(5/4) = 1
    ([7.0, 1.0, 6.0, 2.0, 5.0, 3.0, 40.0], 4.6),       # n = 7: mean(2, 3, 5, 6, 7)
    ([0.0, 1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0], 8.75),  # n = 8: drop 2: mean(2, 3, 10, 20)
    ([1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0], 3.0),  # ties on the quartiles
    ([3.0, 3.0, 3.0, 3.0, 3.0], 3.0),                  # all tied
    ([9.0], 9.0),                                      # one run: nothing to drop
    ([1.0, 2.0, 9.0], 4.0),                            # n = 3: floor(3/4) = 0, the mean
])
def test_iqm_by_hand(scores, want):
    assert stats.interquartile_mean(scores) == pytest.approx(want)
    assert stats.interquartile_mean(np.array(scores)) == pytest.approx(want)
    assert isinstance(stats.interquartile_mean(scores), float)


def test_iqm_pools_runs_and_tasks():
    scores = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 4.0]])
    # over all 8 entries: drop 2 at each end -> mean(0, 0, 1, 2), not the mean of the
    # per-task IQMs (0 and 2.5)
    assert stats.interquartile_mean(scores) == pytest.approx(0.75)
    per_task = np.mean([scipy.stats.trim_mean(scores[:, m], 0.25) for m in range(2)])
    assert per_task == pytest.approx(1.25)


@pytest.mark.parametrize("shape", [(10,), (3,), (5, 2), (10, 3), (7, 4)])
def test_iqm_equals_rliable_and_scipy(shape):
    scores = np.random.default_rng(1).normal(size=shape)
    assert stats.interquartile_mean(scores) == pytest.approx(metrics.aggregate_iqm(scores))
    assert stats.interquartile_mean(scores) == pytest.approx(
        scipy.stats.trim_mean(scores, 0.25, axis=None))


@pytest.mark.parametrize("bad,words", [
    ([], "non-empty"), (np.zeros((0, 3)), "non-empty"), ([1.0, np.nan, 2.0], "nan"),
    ([1.0, np.inf], "inf"), (["a", "b"], "numbers"), (np.zeros((2, 2, 2)), "shape (2, 2, 2)"),
])
def test_iqm_bad_input(bad, words):
    with pytest.raises(ValueError, match="scores") as info:
        stats.interquartile_mean(bad)
    assert words in str(info.value)


# ---------------------------------------------------------------------------------------
# stratified bootstrap confidence intervals


@contextlib.contextmanager
def global_numpy_seed(seed):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def rliable_library():
    """rliable.library (its arch < 8 needs pandas < 3, as pyproject.toml pins)."""
    return importlib.import_module("rliable.library")


def test_ci_contains_the_point_and_is_deterministic():
    scores = {"a": random_scores(seed=0), "b": random_scores(seed=1, shift=1.0)}
    first = stats.stratified_bootstrap_ci(scores, reps=500)
    assert first == stats.stratified_bootstrap_ci(scores, reps=500)
    for name, (point, low, high) in first.items():
        assert low <= point <= high and low < high
        assert point == stats.interquartile_mean(scores[name])
    assert first != stats.stratified_bootstrap_ci(scores, reps=500, seed=1)


def test_ci_leaves_global_random_state_alone():
    before = np.random.get_state()[1].copy()
    stats.stratified_bootstrap_ci({"a": random_scores()}, reps=100)
    assert np.array_equal(np.random.get_state()[1], before)


def test_iqm_batched_equals_iqm_called_on_each_resample():
    """The default statistic runs as one trim_mean per batch of resamples; any other
    statistic is called on each (runs, tasks) resample: the same numbers."""
    scores = {"a": random_scores(10, 2, seed=2), "b": random_scores(5, 2, seed=3)}
    assert stats.stratified_bootstrap_ci(scores, reps=300) == stats.stratified_bootstrap_ci(
        scores, statistic=lambda x: stats.interquartile_mean(x), reps=300)


def test_other_statistics():
    scores = {"a": random_scores(8, 2, seed=4)}
    point, low, high = stats.stratified_bootstrap_ci(scores, statistic=np.median, reps=300)["a"]
    assert point == np.median(scores["a"]) and low <= point <= high


def test_higher_confidence_gives_a_wider_interval():
    scores = {"a": random_scores()}
    _, low90, high90 = stats.stratified_bootstrap_ci(scores, reps=1000, confidence=0.9)["a"]
    _, low99, high99 = stats.stratified_bootstrap_ci(scores, reps=1000, confidence=0.99)["a"]
    assert low99 < low90 and high90 < high99


def test_bootstrap_is_stratified_by_task():
    """Task 0 always scores 0, task 1 always 1: a resample that redraws runs within each
    task always holds as many zeros as ones (mean 0.5); pooling the runs would not."""
    scores = np.array([[0.0, 1.0]] * 6)
    assert stats.stratified_bootstrap_ci({"a": scores}, statistic=np.mean) == \
        {"a": (0.5, 0.5, 0.5)}


def test_one_run_gives_the_point_as_interval():
    assert stats.stratified_bootstrap_ci({"a": [3.0]}) == {"a": (3.0, 3.0, 3.0)}


def test_ci_matches_rliable():
    """The same stratified percentile bootstrap as rliable's get_interval_estimates; the two
    draw different resamples, so with many of them the ends agree to Monte Carlo error."""
    library = rliable_library()
    scores = {"a": random_scores(runs=10, tasks=2, seed=3), "b": random_scores(8, 2, seed=4)}
    reps = 20_000
    ours = stats.stratified_bootstrap_ci(scores, reps=reps)
    with global_numpy_seed(0):  # rliable draws from the global state, not random_state
        points, intervals = library.get_interval_estimates(
            scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    for name, (point, low, high) in ours.items():
        assert point == pytest.approx(points[name][0])
        width = intervals[name][1, 0] - intervals[name][0, 0]
        assert low == pytest.approx(intervals[name][0, 0], abs=0.04 * width)
        assert high == pytest.approx(intervals[name][1, 0], abs=0.04 * width)


@pytest.mark.parametrize("kwargs,words", [
    (dict(scores={}), "non-empty dict"), (dict(scores=[1.0, 2.0]), "non-empty dict"),
    (dict(scores={"a": [1.0, np.nan]}), "scores['a']"), (dict(reps=0), "reps"),
    (dict(confidence=1.0), "confidence"), (dict(confidence=95), "confidence"),
    (dict(scores={"a": np.ones((3, 2)), "b": np.ones((3, 1))}), "same number of tasks"),
])
def test_ci_bad_input(kwargs, words):
    arguments = {"scores": {"a": [1.0, 2.0, 3.0]}, **kwargs}
    with pytest.raises(ValueError) as info:
        stats.stratified_bootstrap_ci(**arguments)
    assert words in str(info.value)


# ---------------------------------------------------------------------------------------
# performance profiles and probability of improvement


def test_performance_profile_by_hand():
    scores = {"a": np.array([[0.1, 0.9], [0.5, 0.6]])}
    taus = [0.0, 0.5, 0.6, 1.0]
    profile, low, high = stats.performance_profile(scores, taus, reps=200)["a"]
    np.testing.assert_allclose(profile, [1.0, 0.5, 0.25, 0.0])  # strictly above tau
    assert np.all(low <= profile) and np.all(profile <= high)


def test_performance_profile_matches_rliable():
    library = rliable_library()
    scores = {"a": random_scores(10, 2, seed=5), "b": random_scores(10, 2, seed=6, shift=0.5)}
    taus = np.linspace(-2, 2, 9)
    ours = stats.performance_profile(scores, taus, reps=5000)
    with global_numpy_seed(0):
        profiles, cis = library.create_performance_profile(scores, taus, reps=5000)
    for name, (profile, low, high) in ours.items():
        np.testing.assert_array_equal(profile, profiles[name])
        np.testing.assert_allclose(low, cis[name][0], atol=0.051)  # one run of 20 per step
        np.testing.assert_allclose(high, cis[name][1], atol=0.051)


def test_probability_of_improvement():
    assert stats.probability_of_improvement([2.0, 3.0], [1.0, 2.0]) == pytest.approx(0.875)
    x, y = random_scores(7, 2, seed=7), random_scores(9, 2, seed=8)
    assert stats.probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x, y))
    with pytest.raises(ValueError, match="same number of tasks"):
        stats.probability_of_improvement(np.ones((3, 2)), np.ones((3, 1)))


# ---------------------------------------------------------------------------------------
# scores_by


def grid_frame():
    """A run_grid-like frame: two variants x two envs x seeds 0-2, rows shuffled; score
    = 100 * variant index + 10 * env index + seed, so every cell says where it belongs."""
    rows = [dict(env_id=env, variant=variant, seed=seed, eval_mean=100 * v + 10 * e + seed,
                 error=None)
            for v, variant in enumerate(["base", "no_norm"])
            for e, env in enumerate(["CartPole-v1", "Pendulum-v1"]) for seed in range(3)]
    order = np.random.default_rng(0).permutation(len(rows))
    return pd.DataFrame([rows[i] for i in order])


def test_scores_by_aligns_seeds_across_tasks():
    scores = stats.scores_by(grid_frame())
    assert sorted(scores) == ["base", "no_norm"]
    np.testing.assert_array_equal(scores["base"], [[0, 10], [1, 11], [2, 12]])
    np.testing.assert_array_equal(scores["no_norm"], [[100, 110], [101, 111], [102, 112]])


def test_scores_by_normalizes_each_task():
    scores = stats.scores_by(grid_frame(), normalize={"CartPole-v1": (0.0, 200.0),
                                                      "Pendulum-v1": (10.0, 110.0)})
    np.testing.assert_allclose(scores["no_norm"][0], [0.5, 1.0])


def test_scores_by_several_grid_keys():
    frame = grid_frame().assign(n_epochs=4)
    scores = stats.scores_by(frame, by=["variant", "n_epochs"])
    assert sorted(scores) == [("base", 4), ("no_norm", 4)]
    assert all(type(key[1]) is int for key in scores)  # Python numbers, not numpy scalars


@pytest.mark.parametrize("change,words", [
    (lambda f: f.drop(index=f.index[(f.variant == "base") & (f.env_id == "Pendulum-v1")
                                    & (f.seed == 2)]), "every task needs the same seeds"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "two rows"),
    (lambda f: f.assign(eval_mean=np.where(f.seed == 1, np.nan, f.eval_mean)), "failed run"),
    (lambda f: f.drop(columns="seed"), "no column"),
    (lambda f: f[~((f.variant == "no_norm") & (f.env_id == "Pendulum-v1"))], "not on all of"),
    (lambda f: f.iloc[:0], "no rows"),
])
def test_scores_by_bad_frames(change, words):
    with pytest.raises(ValueError) as info:
        stats.scores_by(change(grid_frame()))
    assert words in str(info.value)


@pytest.mark.parametrize("normalize,words", [
    ({"CartPole-v1": (0.0, 1.0)}, "Pendulum-v1"),
    ({"CartPole-v1": (0.0, 1.0), "Pendulum-v1": (5.0, 5.0)}, "high > low"),
])
def test_scores_by_bad_normalize(normalize, words):
    with pytest.raises(ValueError, match="normalize") as info:
        stats.scores_by(grid_frame(), normalize=normalize)
    assert words in str(info.value)


def test_table_and_clearly_worse():
    estimates = {"base": (300.0, 250.0, 350.0), "lr_high": (150.0, 100.0, 200.0),
                 "touching": (200.0, 150.0, 250.0), "overlap": (260.0, 120.0, 380.0)}
    table = stats.estimates_table(estimates)
    assert list(table.columns) == ["variant", "iqm", "ci_low", "ci_high"]
    assert list(table.variant) == list(estimates)
    assert stats.clearly_worse(table, "base") == ["lr_high"]
    assert stats.clearly_worse(table, "overlap") == []
    with pytest.raises(ValueError, match="'nope'"):
        stats.clearly_worse(table, "nope")
    with pytest.raises(ValueError, match="several rows for variant"):
        stats.clearly_worse(pd.concat([table, table.iloc[:1]]), "base")
    with pytest.raises(ValueError, match="missing"):
        stats.clearly_worse(table.drop(columns="ci_low"), "base")


# ---------------------------------------------------------------------------------------
# plots


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_plot_interval_estimates(ax):
    estimates = {"base": (0.8, 0.7, 0.9), "worse": (0.3, 0.2, 0.4), "best": (0.9, 0.85, 0.95)}
    assert stats_plots.plot_interval_estimates(estimates, ax=ax, highlight="base") is ax
    assert len(ax.patches) == 3
    assert len(ax.lines) == 3 + 1                       # a tick per variant, the base's line
    assert [t.get_text() for t in ax.get_yticklabels()] == ["worse", "base", "best"]
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    assert [round(p.get_x(), 6) for p in bars] == [0.2, 0.7, 0.85]
    assert [round(p.get_width(), 6) for p in bars] == [0.2, 0.2, 0.1]


def test_plot_performance_profiles(ax):
    taus = np.linspace(0, 1, 5)
    profiles = stats.performance_profile({"a": random_scores(5, 2, seed=1),
                                          "b": random_scores(5, 2, seed=2)}, taus, reps=100)
    assert stats_plots.plot_performance_profiles(taus, profiles, ax=ax) is ax
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), profiles["a"][0])
    plain = {name: value[0] for name, value in profiles.items()}
    ax.clear()
    stats_plots.plot_performance_profiles(taus, plain, ax=ax)
    assert len(ax.lines) == 2 and len(ax.collections) == 0


def test_plots_reject_bad_input(ax):
    with pytest.raises(ValueError, match="estimates"):
        stats_plots.plot_interval_estimates({}, ax=ax)
    with pytest.raises(ValueError, match="highlight"):
        stats_plots.plot_interval_estimates({"a": (1, 0, 2)}, ax=ax, highlight="b")
    with pytest.raises(ValueError, match="one value per threshold"):
        stats_plots.plot_performance_profiles([0.0, 1.0], {"a": np.ones(3)}, ax=ax)
