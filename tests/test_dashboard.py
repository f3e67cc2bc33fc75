"""The live dashboard: rows recorded, redraws throttled, figures drawn, headless-safe."""

import nbformat
import pytest
from nbclient import NotebookClient

from ppo_lib.lab import dashboard as dashboard_module
from ppo_lib.lab.dashboard import PANELS, TrainingDashboard, figure_png, plot_dashboard, summary_line


def _row(i):
    return {"time/total_timesteps": 512 * (i + 1), "rollout/ep_rew_mean": 20.0 + 10 * i,
            "train/approx_kl": 0.01, "train/clip_fraction": 0.1,
            "train/explained_variance": 0.5, "train/entropy_loss": -0.6}


class _Logger:
    def __init__(self):
        self.rows = []


class _Model:
    def __init__(self):
        self.logger = _Logger()
        self.num_timesteps = 0


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def no_drawing(monkeypatch):
    """Count redraws without paying for matplotlib (the plot has its own test)."""
    monkeypatch.setattr(dashboard_module, "plot_dashboard", lambda rows, title="": None)
    monkeypatch.setattr(dashboard_module, "figure_png", lambda fig: b"")


def _run(dashboard, n_updates, seconds_per_update):
    model = _Model()
    dashboard.init_callback(model)
    dashboard.on_training_start()
    for i in range(n_updates):
        model.logger.rows.append(_row(i))
        dashboard.on_update_end()
        dashboard.clock.now += seconds_per_update
    dashboard.on_training_end()
    return dashboard


def test_records_every_row_and_throttles_redraws(no_drawing, capsys):
    dash = _run(TrainingDashboard(min_interval=2.0, clock=_Clock()), 20, 0.5)
    assert len(dash.rows) == 20
    assert dash.rows[-1]["rollout/ep_rew_mean"] == 210.0
    # 10 s of training at >= 2 s between draws: the first draw, at most 5 more, the final one
    assert 2 <= dash.n_draws <= 7
    assert "return 210" in capsys.readouterr().out  # headless: the final summary is printed


def test_draws_every_update_without_throttle(no_drawing):
    dash = _run(TrainingDashboard(min_interval=0.0, max_cost=1.0, clock=_Clock()), 3, 1.0)
    assert dash.n_draws == 3 + 1


def test_final_diagnosis_names_a_bad_metric(no_drawing):
    dash = TrainingDashboard(clock=_Clock())
    model = _Model()
    dash.init_callback(model)
    dash.on_training_start()
    model.logger.rows.append(dict(_row(0), **{"train/approx_kl": 0.2}))
    dash.on_update_end()
    dash.on_training_end()
    assert any("approx_kl" in f for f in dash.findings)


def test_plot_has_one_panel_per_metric_and_handles_missing_values():
    rows = [_row(0), {"time/total_timesteps": 1024}]  # a row without metrics
    fig = plot_dashboard(rows)
    assert len(fig.axes) == len(PANELS)
    assert figure_png(fig)[:4] == b"\x89PNG"
    assert "entropy 0.6" in summary_line(_row(0))  # entropy = -entropy_loss


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode"):
        TrainingDashboard(mode="tensorboard")
    with pytest.raises(ValueError, match="max_cost"):
        TrainingDashboard(max_cost=0.0)


_NOTEBOOK_CODE = """
%matplotlib inline
from ppo_lib.lab.dashboard import TrainingDashboard
class Logger: rows = []
class Model:
    logger = Logger(); num_timesteps = 0
model = Model()
dash = TrainingDashboard(min_interval=0.0, mode=MODE)
dash.init_callback(model); dash.on_training_start()
for i in range(5):
    model.logger.rows.append({"time/total_timesteps": 100 * (i + 1), "rollout/ep_rew_mean": float(i),
        "train/approx_kl": 0.01, "train/clip_fraction": 0.1, "train/explained_variance": 0.5,
        "train/entropy_loss": -0.6})
    dash.on_update_end()
dash.on_training_end()
print("draws", dash.n_draws)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["display", "widget"])
def test_runs_headless_under_nbclient(mode):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(_NOTEBOOK_CODE.replace("MODE", repr(mode))))
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert any("draws " in out.get("text", "") for out in outputs)  # ran to the end
    if mode == "display":
        # one text output and one image, updated in place (not one per redraw)
        kinds = [next(iter(out.get("data", {"stream": 0}))) for out in outputs]
        assert kinds.count("image/png") == 1
        assert any("return 4" in out.get("data", {}).get("text/html", "") for out in outputs)


def test_gaussian_runs_get_a_std_panel():
    fig = plot_dashboard([dict(_row(0), **{"train/std": 0.8})])
    assert len(fig.axes) == len(PANELS) + 1
    assert "policy std 0.8" in summary_line(dict(_row(0), **{"train/std": 0.8}))
