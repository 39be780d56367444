"""Sweep figures from a runs table (and its boundaries), saved as PNG and PDF.

- :func:`plot_catapult`: lambda_T / lambda0 and the loss peak (``loss_peak``) against
  eta * lambda0 on a log axis, one colour per width (Lewkowycz et al. 2020, Fig. 2
  style), with dashed guides at the stability edge 2 and at the published values of
  the runs' setting only (:mod:`ntk_dist.analysis.published`: 4 for the toy; about 12
  for 3-layer ReLU networks; docs/theory.md §5, §7). Every run is a point; lines join
  the per-width medians over the seeds of each sampled point. Divergent runs are drawn
  only as crosses above the highest loss peak of the loss panel (their pre-divergence
  peak is not a catapult peak).
- :func:`plot_phase_diagram`: width against eta * lambda0, one panel per depth, each run
  coloured by its phase (:func:`ntk_dist.analysis.phases.label_runs`), with the located
  boundaries (estimate and confidence interval as error bars, transition region as a
  shaded band).
- :func:`plot_critical`: c_loss, c_sharp and c_max against width and against depth.

Figures use matplotlib's object API, as in :mod:`ntk_dist.analysis.plots`; each function
returns the figure (tests read the plotted data from its artists) and the written paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ntk_dist.analysis.figures import Plot, check_runs, run_columns, save_plot, width_colours
from ntk_dist.analysis.phases import PHASES, label_runs
from ntk_dist.analysis.published import published_for

PHASE_COLOURS = {
    "lazy": "tab:blue",
    "sharpness_reduction": "tab:green",
    "loss_catapult": "tab:orange",
    "divergent": "tab:red",
}
BOUNDARY_MARKERS = {"c_loss": "o", "c_sharp": "s", "c_max": "^"}
BOUNDARY_COLOURS = {"c_loss": "tab:orange", "c_sharp": "tab:green", "c_max": "tab:red"}
_LINE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: The linearised model's stability edge eta * lambda0 = 2 (docs/theory.md §3): a guide in
#: every sweep figure, not a published measurement.
STABILITY_EDGE = 2.0


def plot_catapult(runs: pa.Table, path: str | Path, *, title: str = "") -> Plot:
    """lambda_T / lambda0 and the peak loss against eta * lambda0, per width.

    Args:
      runs: rows in RECORD_SCHEMA (with ``target_eta_lambda0``, the sampler's point, when
        it is a sweep's run table: the median lines group by it).
      path: output path without suffix; ``path.png`` and ``path.pdf`` are written.
      title: figure title.

    Returns:
      :class:`Plot`. Axes 0 holds one scatter per width (offsets: eta * lambda0,
      lambda_final / lambda0 of the non-divergent runs), axes 1 the same for
      loss_peak. The x-axes are logarithmic. Vertical guides: the stability edge 2 and
      the published values of this setting (:mod:`ntk_dist.analysis.published`), each
      with a legend entry, as are the divergence crosses.
    """
    check_runs(runs)
    col = run_columns(runs, "width", "eta_lambda0", "lambda_final", "lambda0")
    col |= run_columns(runs, "loss_peak", "diverged")
    key = _point_keys(runs)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_lam, ax_loss = fig.subplots(1, 2, sharex=True)
    widths = sorted(set(col["width"].tolist()))
    colours = width_colours(len(widths))
    lam_ratio = col["lambda_final"] / col["lambda0"]
    peak = col["loss_peak"]
    top = np.nanmax(peak[~col["diverged"]], initial=1.0) * 3
    dead_label = "diverged (drawn above the peaks)"
    for w, c in zip(widths, colours, strict=True):
        sel = col["width"] == w
        alive = sel & ~col["diverged"]
        ax_lam.scatter(col["eta_lambda0"][alive], lam_ratio[alive], s=12, color=c, label=f"n={w}")
        ax_loss.scatter(col["eta_lambda0"][alive], peak[alive], s=12, color=c, label=f"n={w}")
        dead = sel & col["diverged"]
        if dead.any():
            ax_loss.scatter(
                col["eta_lambda0"][dead],
                np.full(dead.sum(), top),
                marker="x",
                color=c,
                label=dead_label,
            )
            dead_label = None  # one legend entry for the crosses of every width
        for ax, y in ((ax_lam, lam_ratio), (ax_loss, peak)):
            xs, med = medians(col["eta_lambda0"][alive], y[alive], key[alive])
            ax.plot(xs, med, color=c, lw=1)
    for ax in (ax_lam, ax_loss):
        _guides(ax, runs)
        _log_x(ax, col["eta_lambda0"])
        ax.set_xlabel(r"$\eta\,\lambda_0$")
    ax_lam.set_ylabel(r"$\lambda_T / \lambda_0$")
    ax_loss.set_ylabel("peak loss (O(n) in the catapult phase)")
    ax_loss.set_yscale("log")
    ax_lam.legend(fontsize=7)
    ax_loss.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def plot_phase_diagram(
    runs: pa.Table,
    boundaries: pa.Table | None,
    path: str | Path,
    *,
    title: str = "",
    early_steps: int | None = None,
) -> Plot:
    """Width against eta * lambda0, runs coloured by phase, located boundaries on top.

    One panel per depth (a single panel for one depth).

    Args:
      runs: rows in RECORD_SCHEMA.
      boundaries: output of :func:`ntk_dist.analysis.boundaries.estimate_boundaries` (or None).
      path: output path without suffix; ``path.png`` and ``path.pdf`` are written.
      title: figure title.
      early_steps: the labels' window (:func:`ntk_dist.analysis.phases.classify_runs`).

    Returns:
      :class:`Plot`. Each panel holds one scatter per phase present (offsets:
      eta * lambda0, width), then one error bar container per located boundary row of
      its depth (marker by boundary, :data:`BOUNDARY_MARKERS`). The x-axis is
      logarithmic and zoomed to the runs.
    """
    check_runs(runs)
    col = run_columns(runs, "width", "eta_lambda0", "depth")
    labels = np.asarray(label_runs(runs, early_steps=early_steps).to_pylist())
    depths = sorted(set(col["depth"].tolist()))
    fig = Figure(figsize=(3.5 + 3.5 * len(depths), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(depths), sharey=True, squeeze=False)[0])
    for ax, depth in zip(axes, depths, strict=True):
        here = col["depth"] == depth
        for phase in PHASES:
            sel = here & (labels == phase)
            if sel.any():
                ax.scatter(
                    col["eta_lambda0"][sel],
                    col["width"][sel],
                    s=14,
                    color=PHASE_COLOURS[phase],
                    label=phase,
                )
        rows = [] if boundaries is None else boundaries.to_pylist()
        shown = set()
        for row in rows:
            if row["depth"] != depth or not np.isfinite(row["eta_lambda0"]):
                continue
            x, w, name = row["eta_lambda0"], row["width"], row["boundary"]
            ax.errorbar(
                [x],
                [w],
                xerr=[[x - row["ci_low"]], [row["ci_high"] - x]],
                fmt=BOUNDARY_MARKERS.get(name, "|"),
                color="k",
                mfc="none",
                capsize=4,
                ms=8,
                label=None if name in shown else f"{name} (95% CI)",
            )
            shown.add(name)
            ax.fill_betweenx(
                [w / 1.15, w * 1.15],
                row["region_low"],
                row["region_high"],
                color="k",
                alpha=0.15,
                lw=0,
            )
        _guides(ax, runs.filter(pa.array(here)))
        _log_x(ax, col["eta_lambda0"])
        ax.set_yscale("log", base=2)
        ax.set_xlabel(r"$\eta\,\lambda_0$")
        if len(depths) > 1:
            ax.set_title(f"depth {depth}", fontsize=9)
    axes[0].set_ylabel("width n")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def plot_critical(boundaries: pa.Table, path: str | Path, *, title: str = "") -> Plot:
    """The located critical values against width (one line per depth and boundary) and
    against depth (one line per width and boundary), with their 95% intervals.

    Args:
      boundaries: output of :func:`ntk_dist.analysis.boundaries.estimate_boundaries`.
      path: output path without suffix; ``path.png`` and ``path.pdf`` are written.
      title: figure title.

    Returns:
      :class:`Plot`. Axes 0 (against width) and 1 (against depth) hold one error bar
      container per line, with the located rows only (NaN estimates left out).
    """
    if not isinstance(boundaries, pa.Table) or boundaries.num_rows == 0:
        raise ValueError("boundaries must be a non-empty table (estimate_boundaries output)")
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    rows = [r for r in boundaries.to_pylist() if np.isfinite(r["eta_lambda0"])]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_w, ax_d = fig.subplots(1, 2, sharey=True)
    for ax, along, across in ((ax_w, "width", "depth"), (ax_d, "depth", "width")):
        lines = sorted({(r["boundary"], r[across]) for r in rows})
        keys = sorted({k for _, k in lines})
        for name, k in lines:
            pts = sorted((r[along], r) for r in rows if (r["boundary"], r[across]) == (name, k))
            x = np.array([p[0] for p in pts], float)
            y = np.array([p[1]["eta_lambda0"] for p in pts])
            err = [y - [p[1]["ci_low"] for p in pts], [p[1]["ci_high"] for p in pts] - y]
            ax.errorbar(
                x,
                y,
                yerr=err,
                fmt=_LINE_MARKERS[keys.index(k) % len(_LINE_MARKERS)] + "-",
                color=BOUNDARY_COLOURS.get(name, "k"),
                capsize=3,
                ms=5,
                label=f"{name}, {across} {k}",
            )
        ax.axhline(STABILITY_EDGE, color="grey", ls="--", lw=1, label="2: stability edge")
        if along == "width":
            ax.set_xscale("log", base=2)
            ax.set_xlabel("width n")
        else:
            depths = sorted({r["depth"] for r in rows})
            if len(depths) <= 12:
                ax.set_xticks(depths)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if depths:
                ax.set_xlim(depths[0] - 0.5, depths[-1] + 0.5)
            ax.set_xlabel("depth (hidden layers)")
        ax.legend(fontsize=7)
    ax_w.set_ylabel(r"critical $\eta\,\lambda_0$ (95% CI)")
    ax_w.set_yscale("log")
    ax_w.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax_w.yaxis.set_minor_formatter(StrMethodFormatter("{x:g}"))
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def _guides(ax, runs: pa.Table) -> None:
    """Dashed guides with legend entries: the stability edge and the published values."""
    ax.axvline(
        STABILITY_EDGE, color="grey", ls="--", lw=1, label="2: linear stability edge (theory §3)"
    )
    for pub in published_for(runs):
        if pub.value != STABILITY_EDGE:
            approx = "~" if pub.approx else ""
            label = f"published {pub.boundary} = {approx}{pub.value:g} ({pub.source})"
            ax.axvline(pub.value, color="k", ls="--", lw=1, label=label)


#: Tick positions of the log eta * lambda0 axis, printed plainly ("2", not "2 x 10^0").
_TICKS = (0.1, 0.2, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100)


def _log_x(ax, x) -> None:
    """A logarithmic x-axis zoomed to the data (a factor 1.15 of margin each side)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    x = x[np.isfinite(x) & (x > 0)]
    ax.set_xscale("log")
    if x.size:
        lo, hi = x.min() / 1.15, x.max() * 1.15
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator([t for t in _TICKS if lo <= t <= hi]))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())


def medians(x, y, key):
    """Median of ``y`` (and of ``x``) over the runs of each point ``key`` (the sampler's
    point), so seeds whose measured x differ in the last digits share one median.

    Returns:
      (xs, ys) sorted by xs; ys is NaN for a point without finite y.
    """
    out = []
    for k in np.unique(key):
        sel = key == k
        ys = y[sel]
        out.append((np.median(x[sel]), np.nanmedian(ys) if np.isfinite(ys).any() else np.nan))
    out.sort()
    return np.array([a for a, _ in out]), np.array([b for _, b in out])


def _point_keys(runs) -> np.ndarray:
    """The sampler's point of each run: ``target_eta_lambda0`` when present (a sweep's
    runs), else eta * lambda0 to 9 significant digits."""
    width = runs.column("width").to_numpy(zero_copy_only=False)
    if "target_eta_lambda0" in runs.column_names:
        x = runs.column("target_eta_lambda0").to_numpy(zero_copy_only=False)
    else:
        x = runs.column("eta_lambda0").to_numpy(zero_copy_only=False)
    return np.array([f"{w}:{v:.9g}" for w, v in zip(width, x, strict=True)])
