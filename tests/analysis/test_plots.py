"""Sweep figures: files written, plotted data equal to the input runs (not pixels)."""

import matplotlib.colors as mcolors
import numpy as np
import pytest

from ntk_dist.analysis.boundaries import estimate_boundaries
from ntk_dist.analysis.phases import label_runs
from ntk_dist.analysis.plots import PHASE_COLOURS, plot_catapult, plot_phase_diagram
from ntk_dist.distributed.execute import run_jobs
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.models.networks import CatapultToy

ETAS = (1.5, 1.9, 2.1, 3.0, 3.9, 4.1, 4.5)
WIDTHS = (256, 1024)


@pytest.fixture(scope="module")
def runs():
    data = DataSpec(name="single", n_train=1, n_test=0, dim=1)
    jobs = [
        TrainJob(CatapultToy(n), data, e, steps=128, seed=s, lr_units="lambda0")
        for n in WIDTHS
        for e in ETAS
        for s in range(2)
    ]
    return run_jobs(jobs)


def _files_ok(paths, tmp_path):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:
        assert p.parent == tmp_path and p.stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp"))


def test_catapult_figure_plots_the_runs(runs, tmp_path):
    plot = plot_catapult(runs, tmp_path / "catapult", title="toy")
    _files_ok(plot.paths, tmp_path)
    ax_lam, ax_loss = plot.figure.axes
    df = runs.to_pandas()
    for i, w in enumerate(WIDTHS):
        sel = df[(df.width == w) & ~df.diverged]
        got = ax_lam.collections[i].get_offsets()
        np.testing.assert_allclose(got[:, 0], sel.eta_lambda0)
        np.testing.assert_allclose(got[:, 1], sel.lambda_final / sel.lambda0)
    first = df[(df.width == WIDTHS[0]) & ~df.diverged]
    got = ax_loss.collections[0].get_offsets()
    np.testing.assert_allclose(got[:, 1], first.loss_peak)
    # Guides at 2 and at the toy's eta_max * lambda0 = 4.
    guides = sorted(line.get_xdata()[0] for line in ax_lam.lines if line.get_linestyle() == "--")
    assert guides == [2.0, 4.0]


def test_phase_diagram_colours_runs_by_phase(runs, tmp_path):
    bounds = estimate_boundaries(runs, sweep="toy", n_boot=50)
    plot = plot_phase_diagram(runs, bounds, tmp_path / "phases")
    _files_ok(plot.paths, tmp_path)
    (ax,) = plot.figure.axes
    labels = np.asarray(label_runs(runs).to_pylist())
    eta = runs.column("eta_lambda0").to_numpy()
    by_colour = {tuple(c.get_facecolor()[0]): c.get_offsets() for c in ax.collections[:3]}
    for phase, colour in PHASE_COLOURS.items():
        got = by_colour[tuple(mcolors.to_rgba(colour))]
        np.testing.assert_allclose(np.sort(got[:, 0]), np.sort(eta[labels == phase]))
    assert len(ax.containers) == bounds.num_rows  # one error bar per located boundary
    xs = sorted(c.lines[0].get_xdata()[0] for c in ax.containers)
    np.testing.assert_allclose(xs, sorted(bounds.column("eta_lambda0").to_pylist()))


def test_empty_runs_are_rejected(runs, tmp_path):
    with pytest.raises(ValueError, match="non-empty pyarrow Table"):
        plot_catapult(runs.slice(0, 0), tmp_path / "x")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['model_kind'\]"):
        plot_phase_diagram(runs.drop_columns(["model_kind"]), None, tmp_path / "x")
    assert not list(tmp_path.iterdir())
