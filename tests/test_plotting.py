"""ppo_lib.lab.plotting and ppo_lib.lab.widgets: what the clip plots draw (numbers, not pixels)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ppo_lib.lab import plotting
from ppo_lib.lab import widgets# noqa: E402


@pytest.fixture
def ax():
    fig, axes = plt.subplots(1, 2)
    yield axes
    plt.close(fig)


def _span_edges(a):
    """x extents of every shaded span on an axes (axvspan draws a Rectangle in 3.9+,
    a Polygon before)."""
    edges = []
    for patch in a.patches:
        if hasattr(patch, "get_x") and hasattr(patch, "get_width"):
            edges.append((round(patch.get_x(), 6), round(patch.get_x() + patch.get_width(), 6)))
        else:
            xs = patch.get_xy()[:, 0]
            edges.append((round(xs.min(), 6), round(xs.max(), 6)))
    return sorted(edges)


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_flat_regions_move_with_eps(eps):
    assert plotting.flat_regions(+1, eps) == [(1 + eps, 2.0)]
    assert plotting.flat_regions(-1, eps) == [(0.0, 1 - eps)]


def test_shaded_flat_region_moves_with_eps(ax):
    plotting.plot_clip_objective(ax[0], +1, 0.1)
    plotting.plot_clip_objective(ax[1], +1, 0.3)
    assert (1.1, 2.0) in _span_edges(ax[0])
    assert (1.3, 2.0) in _span_edges(ax[1])
    assert (1.3, 2.0) not in _span_edges(ax[0])


def test_negative_advantage_shades_below_only(ax):
    out = plotting.plot_clip_objective(ax[0], -1, 0.2, ax_grad=ax[1])
    assert out["flat"] == [(0.0, 0.8)]
    for a in ax:
        assert (0.0, 0.8) in _span_edges(a)
        assert not any(lo >= 1.2 - 1e-9 for lo, _ in _span_edges(a))


@pytest.mark.parametrize("sign", [+1, -1])
def test_gradient_is_zero_exactly_on_flat_regions(ax, sign):
    eps = 0.2
    out = plotting.plot_clip_objective(ax[0], sign, eps, ax_grad=ax[1], num=201)
    r, grad = out["ratio"], out["gradient"]
    flat = np.zeros_like(r, dtype=bool)   # inside a flat interval
    touches = np.zeros_like(r, dtype=bool)  # inside or on its edge (a kink)
    for lo, hi in out["flat"]:
        flat |= (r > lo + 1e-9) & (r < hi - 1e-9)
        touches |= (r > lo - 1e-6) & (r < hi + 1e-6)
    assert flat.sum() > 50
    assert np.all(grad[flat] == 0)
    not_flat = (np.abs(r - (1 - eps)) > 1e-6) & (np.abs(r - (1 + eps)) > 1e-6) & ~touches
    assert not_flat.sum() > 50
    assert np.allclose(grad[not_flat], sign)  # d(rA)/dr = A where the min picks r*A


def test_notes_errors_1_and_2_gradient_not_zero():
    # A > 0, r = 0.5 (below 1 - eps): still pushed up.  A < 0, r = 1.5: still pushed down.
    assert plotting.clip_objective_gradient(np.array([0.5]), +1.0, 0.2)[0] == pytest.approx(1.0)
    assert plotting.clip_objective_gradient(np.array([1.5]), -1.0, 0.2)[0] == pytest.approx(-1.0)
    assert plotting.clip_objective_gradient(np.array([1.5]), +1.0, 0.2)[0] == 0.0
    assert plotting.clip_objective_gradient(np.array([0.5]), -1.0, 0.2)[0] == 0.0


def test_clip_objective_values():
    r = np.array([0.5, 1.0, 1.5])
    assert np.allclose(plotting.clip_objective(r, 2.0, 0.2), [1.0, 2.0, 2.4])
    assert np.allclose(plotting.clip_objective(r, -2.0, 0.2), [-1.6, -2.0, -3.0])


def test_readout_and_title_state_eps(ax):
    assert plotting.clip_readout(0.2) == ("eps = 0.20: A > 0 flat for r > 1.20; "
                                          "A < 0 flat for r < 0.80")
    plotting.plot_clip_objective(ax[0], +1, 0.25)
    assert "eps = 0.25" in ax[0].get_title()


def test_bad_arguments_name_themselves(ax):
    with pytest.raises(ValueError, match="advantage_sign"):
        plotting.flat_regions(0, 0.2)
    with pytest.raises(ValueError, match="clip_range"):
        plotting.flat_regions(1, 1.5)


def test_ratio_histogram_share_outside(ax):
    share = plotting.plot_ratio_histogram(ax[0], [0.5, 0.9, 1.0, 1.1, 1.5], 0.2)
    assert share == pytest.approx(0.4)


def test_widgets_readout_printed_and_figure_closed(capsys):
    def draw(clip_range):  # a tiny figure: this test is about the readout and closing
        fig, axes = plotting.new_figure(1, width=1.0, height=1.0)
        axes[0].plot([0, 1], [clip_range, clip_range])
        return fig, plotting.clip_readout(clip_range)

    before = len(plt.get_fignums())
    w = widgets.interact_with_readout(
        draw, clip_range=widgets.float_slider(0.2, 0.05, 0.5, 0.05, "eps"))
    slider = w.children[0]
    slider.value = 0.3
    out = capsys.readouterr().out
    assert "eps = 0.20: A > 0 flat for r > 1.20" in out
    assert "eps = 0.30: A > 0 flat for r > 1.30" in out
    assert len(plt.get_fignums()) == before


def test_widget_argument_errors():
    with pytest.raises(ValueError, match="value"):
        widgets.float_slider(0.9, 0.05, 0.5, 0.05)
    with pytest.raises(ValueError, match="step"):
        widgets.float_slider(0.2, 0.05, 0.5, 0.0)
    with pytest.raises(ValueError, match="options"):
        widgets.options_slider([0.1, 0.2], 0.3)
    with pytest.raises(TypeError, match="control 'x'"):
        widgets.interact_with_readout(lambda x: "", x=3)
