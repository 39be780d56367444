"""Checks and figures of the published studies on constructed trajectories and
boundaries (expected values from the construction, not from the code under test)."""

import numpy as np
import pyarrow as pa
import pytest
from matplotlib.collections import PolyCollection

from ntk_dist.analysis.studies import (
    REGIMES,
    edge_of_stability,
    plot_catapult_peaks,
    plot_edge_of_stability,
    plot_regimes,
    stability_check,
)


def _run(loss, lam, *, eta, width=64, depth=1, target=None):
    """A record recorded at every step 0..T; eta is the absolute learning rate."""
    loss, lam = np.asarray(loss, float), np.asarray(lam, float)
    return {
        "width": width,
        "depth": depth,
        "activation": "relu",
        "diverged": False,
        "loss_initial": loss[0],
        "loss_peak": float(loss.max()),
        "peak_step": int(loss.argmax()),
        "learning_rate": eta,
        "eta_lambda0": eta * lam[0],
        "target_eta_lambda0": eta * lam[0] if target is None else target,
        "lambda0": lam[0],
        "lambda_final": lam[-1],
        "loss_final": loss[-1],
        "steps": len(loss) - 1,
        "record_steps": list(range(len(loss))),
        "train_loss": loss.tolist(),
        "lambda_t": lam.tolist(),
    }


def _catapult(eta, lam_final, *, width=64, peak=50.0, target=None):
    """Loss rises to ``peak`` at step 3 and decays; lambda falls from 10 / eta... to lam_final."""
    loss = [1.0, 4.0, 20.0, peak, 5.0, 0.5, 0.1, 0.05]
    lam = np.linspace(3.0 / eta, lam_final, len(loss))
    return _run(loss, lam, eta=eta, width=width, target=target)


def test_stability_check_counts_loss_catapults_above_two_over_eta():
    lazy_unstable = _run([1.0, 0.5, 0.2, 0.1], [100.0, 100.0, 100.0, 125.0], eta=0.02)
    runs = pa.Table.from_pylist(
        [_catapult(0.1, 18.0), _catapult(0.1, 24.0), lazy_unstable]  # eta*lambda_T 1.8, 2.4
    )
    out = stability_check(runs)
    assert out["n"] == 2 and out["violations"] == 1 and not out["ok"]
    assert out["max_eta_lambda_T"] == pytest.approx(2.4)
    assert stability_check(runs, rtol=0.25)["ok"]  # 2.4 <= 2 * 1.25


def test_edge_of_stability_summary_from_a_constructed_trajectory():
    eta, T = 0.01, 1000
    t = np.arange(T + 1)
    lam = np.where(t <= 500, 50.0 + 150.0 * t / 500, np.where(t % 2, 198.0, 204.0))
    run = _run(np.exp(-t / 300.0), lam, eta=eta)
    row = edge_of_stability(pa.Table.from_pylist([run])).to_pylist()[0]
    assert row["start"] == pytest.approx(0.25)
    # eta * lambda / 2 >= 0.95  <=>  lambda >= 190 = 50 + 150 t / 500  <=>  t >= 466.67
    assert row["onset"] == 467
    assert row["peak"] == pytest.approx(1.02)
    # t >= 500: step 500 is on the ramp (lambda 200, 1.0), then 250 odd (0.99) and 250
    # even (1.02) steps: the median of 501 values is 1.0.
    assert row["late_median"] == pytest.approx(1.0)
    assert row["late_max"] == pytest.approx(1.02)


def test_edge_of_stability_figure_plots_eta_lambda_over_two(tmp_path):
    t = np.arange(11)
    runs = pa.Table.from_pylist(
        [_run(np.exp(-t), 10.0 + t, eta=e) for e in (0.05, 0.02)]  # unsorted on purpose
    )
    plot = plot_edge_of_stability(runs, tmp_path / "eos")
    ax_s, ax_l = plot.figure.axes
    np.testing.assert_allclose(ax_s.lines[0].get_ydata(), 0.05 * (10.0 + t) / 2)
    np.testing.assert_allclose(ax_s.lines[1].get_ydata(), 0.02 * (10.0 + t) / 2)
    np.testing.assert_allclose(ax_l.lines[1].get_ydata(), np.exp(-t))
    assert ax_s.lines[2].get_ydata()[0] == 1.0  # the guide lambda_t = 2 / eta
    assert [p.suffix for p in plot.paths] == [".png", ".pdf"]


def test_catapult_peaks_against_width(tmp_path):
    runs = pa.Table.from_pylist(
        [
            _catapult(0.1, 15.0, width=64, peak=40.0, target=3.0),
            _catapult(0.1, 15.0, width=64, peak=60.0, target=3.0),
            _catapult(0.1, 15.0, width=256, peak=200.0, target=3.0),
            _catapult(0.1, 15.0, width=256, peak=90.0, target=5.0),  # one width only: no line
        ]
    )
    plot = plot_catapult_peaks(runs, tmp_path / "peaks")
    ax_h, ax_t = plot.figure.axes
    (line,) = ax_h.lines
    np.testing.assert_allclose(line.get_xdata(), [64, 256])
    np.testing.assert_allclose(line.get_ydata(), [50.0, 200.0])  # median of 40, 60; then 200
    np.testing.assert_allclose(ax_t.lines[0].get_ydata(), [3, 3])
    assert len(ax_h.collections[0].get_offsets()) == 4


def _bounds(rows):
    return pa.Table.from_pylist(
        [
            {
                "width": w,
                "depth": d,
                "boundary": b,
                "eta_lambda0": c,
                "ci_low": c / 1.1,
                "ci_high": c * 1.1,
            }
            for w, d, b, c in rows
        ]
    )


def test_regime_figure_shades_between_the_located_boundaries(tmp_path):
    rows = [
        (256, 1, "c_loss", 2.0),
        (256, 1, "c_max", 10.0),
        (256, 1, "c_sharp", 2.5),
        (64, 8, "c_loss", 4.0),
        (64, 8, "c_max", 20.0),
        (64, 8, "c_sharp", 3.0),
        (64, 2, "c_loss", float("nan")),
        (64, 2, "c_max", 12.0),
    ]
    plot = plot_regimes(_bounds(rows), tmp_path / "regimes")
    (ax,) = plot.figure.axes
    shaded = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [c.get_label() for c in shaded] == [name for name, _ in REGIMES]
    lines = {ln.get_label(): ln for ln in ax.lines}
    np.testing.assert_allclose(lines["c_loss (95% CI)"].get_xdata(), [1 / 256, 8 / 64])
    np.testing.assert_allclose(lines["c_loss (95% CI)"].get_ydata(), [2.0, 4.0])
    np.testing.assert_allclose(lines["c_max (95% CI)"].get_xdata(), [1 / 256, 2 / 64, 8 / 64])
    np.testing.assert_allclose(lines["c_sharp (95% CI)"].get_ydata(), [2.5, 3.0])
    # The loss-catapult band's lower edge at a located depth / width is c_loss there.
    verts = shaded[1].get_paths()[0].vertices
    i = np.argmin(np.abs(verts[:, 0] - 8 / 64))
    assert verts[i, 1] == pytest.approx(4.0, rel=0.05)
    assert len(ax.containers) == 7  # one error bar per located row


def test_regime_figure_without_divergence_shades_the_catapult_to_the_top(tmp_path):
    rows = [(64, 1, "c_loss", 2.5), (256, 1, "c_loss", 2.2), (64, 1, "c_max", float("nan"))]
    (ax,) = plot_regimes(_bounds(rows), tmp_path / "regimes").figure.axes
    shaded = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [c.get_label() for c in shaded] == [name for name, _ in REGIMES[:2]]
    top = shaded[1].get_paths()[0].vertices[:, 1].max()
    assert top > 100  # not stopped at c_loss: nothing diverged


def test_regime_figure_rejects_empty_boundaries(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        plot_regimes(pa.table({"x": pa.array([], pa.int64())}), tmp_path / "r")
