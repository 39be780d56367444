"""Sweep figures: files written, plotted data equal to the input runs (not pixels)."""

import matplotlib.colors as mcolors
import numpy as np
import pyarrow as pa
import pytest

from ntk_dist.analysis.boundaries import estimate_boundaries
from ntk_dist.analysis.phase_plots import (
    PHASE_COLOURS,
    medians,
    plot_catapult,
    plot_critical,
    plot_phase_diagram,
)
from ntk_dist.analysis.phases import label_runs
from ntk_dist.analysis.published import published_for
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
    # Guides at 2 and at the toy's published eta_max * lambda0 = 4, with legend entries.
    guides = sorted(line.get_xdata()[0] for line in ax_lam.lines if line.get_linestyle() == "--")
    assert guides == [2.0, 4.0]
    legend = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert any(t.startswith("2: linear stability edge") for t in legend)
    assert "published c_max = 4 (Lewkowycz et al. 2020, arXiv 2003.02218, §2)" in legend
    assert "diverged (drawn above the peaks)" in legend
    assert ax_lam.get_xscale() == "log"


def test_medians_group_by_the_sampled_point(runs, tmp_path):
    # Two seeds of one point whose measured eta * lambda0 differ in the last digit give
    # one median, not two.
    x = np.array([3.0, np.nextafter(3.0, 4.0), 2.0, 2.0])
    y = np.array([1.0, 3.0, 5.0, 7.0])
    xs, med = medians(x, y, np.array(["a", "a", "b", "b"]))
    np.testing.assert_allclose(xs, [2.0, 3.0])
    np.testing.assert_allclose(med, [6.0, 2.0])


def test_no_published_guide_beside_an_unpublished_setting(runs, tmp_path):
    def fc(depth):
        t = runs
        for name, value in (("model_kind", "fc"), ("activation", "relu"), ("depth", depth)):
            t = t.set_column(t.column_names.index(name), name, pa.array([value] * t.num_rows))
        return t

    # The published ~12 is for 3 hidden layers: a depth-2 ReLU network gets no guide.
    assert published_for(fc(2)) == []
    assert [(p.boundary, p.value) for p in published_for(fc(3))] == [("c_max", 12.0)]
    sgd = fc(3).set_column(
        runs.column_names.index("optimizer"), "optimizer", pa.array(["sgd"] * runs.num_rows)
    )
    assert published_for(sgd) == []
    plot = plot_catapult(fc(2), tmp_path / "c")
    axes = plot.figure.axes[0]
    assert [line.get_xdata()[0] for line in axes.lines if line.get_linestyle() == "--"] == [2.0]


def test_phase_diagram_colours_runs_by_phase(runs, tmp_path):
    bounds = estimate_boundaries(runs, sweep="toy", n_boot=50)
    plot = plot_phase_diagram(runs, bounds, tmp_path / "phases")
    _files_ok(plot.paths, tmp_path)
    (ax,) = plot.figure.axes
    labels = np.asarray(label_runs(runs).to_pylist())
    eta = runs.column("eta_lambda0").to_numpy()
    present = [p for p in PHASE_COLOURS if (labels == p).any()]
    by_colour = {
        tuple(c.get_facecolor()[0]): c.get_offsets() for c in ax.collections[: len(present)]
    }
    for phase in present:
        got = by_colour[tuple(mcolors.to_rgba(PHASE_COLOURS[phase]))]
        np.testing.assert_allclose(np.sort(got[:, 0]), np.sort(eta[labels == phase]))
    assert len(ax.containers) == bounds.num_rows  # one error bar per located boundary
    xs = sorted(c.lines[0].get_xdata()[0] for c in ax.containers)
    np.testing.assert_allclose(xs, sorted(bounds.column("eta_lambda0").to_pylist()))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"c_loss (95% CI)", "c_sharp (95% CI)", "c_max (95% CI)"} <= set(legend)


def test_critical_values_against_width_and_depth(runs, tmp_path):
    bounds = estimate_boundaries(runs, sweep="toy", n_boot=20)
    plot = plot_critical(bounds, tmp_path / "critical")
    _files_ok(plot.paths, tmp_path)
    ax_w, ax_d = plot.figure.axes
    # One line per (boundary, depth) against width; per (boundary, width) against depth.
    assert len(ax_w.containers) == 3 and len(ax_d.containers) == 3 * len(WIDTHS)
    c_loss = [r for r in bounds.to_pylist() if r["boundary"] == "c_loss"]
    got = ax_w.containers[0].lines[0].get_xydata()
    np.testing.assert_allclose(got[:, 0], [r["width"] for r in c_loss])
    np.testing.assert_allclose(got[:, 1], [r["eta_lambda0"] for r in c_loss])


def test_empty_runs_are_rejected(runs, tmp_path):
    with pytest.raises(ValueError, match="non-empty pyarrow Table"):
        plot_catapult(runs.slice(0, 0), tmp_path / "x")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['train_loss'\]"):
        plot_phase_diagram(runs.drop_columns(["train_loss"]), None, tmp_path / "x")
    assert not list(tmp_path.iterdir())
