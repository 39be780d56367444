"""Sweep figures from a runs table (and its boundaries), saved as PNG and PDF.

- :func:`plot_catapult`: lambda_T / lambda0 and the loss peak (``loss_peak``) against
  eta * lambda0, one colour per width (Lewkowycz et al. 2020, Fig. 2 style), with
  dashed guides at 2 and at the expected eta_max * lambda0 (4 for the toy, about 12
  for ReLU networks; science.md §5). Every run is a point; lines join the per-width
  medians over seeds. Divergent runs are drawn only as crosses above the highest loss
  peak of the loss panel (their pre-divergence peak is not a catapult peak).
- :func:`plot_phase_diagram`: width against eta * lambda0, each run coloured by its
  phase (:func:`ntk_dist.phases.label_runs`), with the located boundaries (estimate
  and confidence interval as error bars, transition region as a shaded band).

Figures use matplotlib's object API (``matplotlib.figure.Figure`` on the Agg canvas),
so nothing touches pyplot's global state or needs a display. Each function returns the
figure (tests read the plotted data from its artists) and the written paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from .phases import PHASES, label_runs

PHASE_COLOURS = {"lazy": "tab:blue", "catapult": "tab:orange", "divergent": "tab:red"}
FORMATS = ("png", "pdf")
_EXPECTED_ETA_MAX = {"toy": 4.0, "relu": 12.0}


class Plot(NamedTuple):
    """A saved figure: the matplotlib Figure and the files written (PNG, PDF)."""

    figure: Figure
    paths: tuple[Path, ...]


def expected_eta_max(runs: pa.Table) -> float | None:
    """eta_max * lambda0 from the literature for these runs: 4 (toy), 12 (ReLU), else None."""
    col = _columns(runs, "model_kind", "activation")
    kinds, acts = set(col["model_kind"].tolist()), set(col["activation"].tolist())
    if kinds == {"toy"}:
        return _EXPECTED_ETA_MAX["toy"]
    if kinds == {"fc"} and acts == {"relu"}:
        return _EXPECTED_ETA_MAX["relu"]
    return None


def plot_catapult(runs: pa.Table, path: str | Path, *, title: str = "") -> Plot:
    """lambda_T / lambda0 and the peak loss against eta * lambda0, per width.

    Args:
      runs: rows in RECORD_SCHEMA.
      path: output path without suffix; ``path.png`` and ``path.pdf`` are written.
      title: figure title.

    Returns:
      :class:`Plot`. Axes 0 holds one scatter per width (offsets: eta * lambda0,
      lambda_final / lambda0 of the non-divergent runs), axes 1 the same for
      loss_peak.
    """
    _check_runs(runs)
    col = _columns(runs, "width", "eta_lambda0", "lambda_final", "lambda0")
    col |= _columns(runs, "loss_peak", "diverged")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_lam, ax_loss = fig.subplots(1, 2, sharex=True)
    widths = sorted(set(col["width"].tolist()))
    colours = _width_colours(len(widths))
    lam_ratio = col["lambda_final"] / col["lambda0"]
    peak = col["loss_peak"]
    top = np.nanmax(peak[~col["diverged"]], initial=1.0) * 3
    for w, c in zip(widths, colours, strict=True):
        sel = col["width"] == w
        alive = sel & ~col["diverged"]
        ax_lam.scatter(col["eta_lambda0"][alive], lam_ratio[alive], s=12, color=c, label=f"n={w}")
        ax_loss.scatter(col["eta_lambda0"][alive], peak[alive], s=12, color=c)
        dead = sel & col["diverged"]
        if dead.any():
            ax_loss.scatter(col["eta_lambda0"][dead], np.full(dead.sum(), top), marker="x", color=c)
        for ax, y in ((ax_lam, lam_ratio), (ax_loss, peak)):
            xs, med = _medians(col["eta_lambda0"][alive], y[alive])
            ax.plot(xs, med, color=c, lw=1)
    eta_max = expected_eta_max(runs)
    for ax in (ax_lam, ax_loss):
        for x in (2.0, eta_max):
            if x is not None:
                ax.axvline(x, color="grey", ls="--", lw=1)
        ax.set_xlabel(r"$\eta\,\lambda_0$")
    ax_lam.set_ylabel(r"$\lambda_T / \lambda_0$")
    ax_loss.set_ylabel("peak loss (O(n) in the catapult phase)")
    ax_loss.set_yscale("log")
    ax_lam.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return Plot(fig, _save(fig, path))


def plot_phase_diagram(
    runs: pa.Table, boundaries: pa.Table | None, path: str | Path, *, title: str = ""
) -> Plot:
    """Width against eta * lambda0, runs coloured by phase, located boundaries on top.

    Args:
      runs: rows in RECORD_SCHEMA.
      boundaries: output of :func:`ntk_dist.boundaries.estimate_boundaries` (or None).
      path: output path without suffix; ``path.png`` and ``path.pdf`` are written.
      title: figure title.

    Returns:
      :class:`Plot`. The axes hold one scatter per phase present (offsets:
      eta * lambda0, width), then one error bar container per located boundary row.
    """
    _check_runs(runs)
    col = _columns(runs, "width", "eta_lambda0")
    labels = np.asarray(label_runs(runs).to_pylist())
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for phase in PHASES:
        sel = labels == phase
        if sel.any():
            ax.scatter(
                col["eta_lambda0"][sel],
                col["width"][sel],
                s=14,
                color=PHASE_COLOURS[phase],
                label=phase,
            )
    if boundaries is not None:
        for row in boundaries.to_pylist():
            if not np.isfinite(row["eta_lambda0"]):
                continue
            x, w = row["eta_lambda0"], row["width"]
            ax.errorbar(
                [x],
                [w],
                xerr=[[x - row["ci_low"]], [row["ci_high"] - x]],
                fmt="k|",
                capsize=4,
                ms=14,
            )
            ax.fill_betweenx(
                [w / 1.15, w * 1.15],
                row["region_low"],
                row["region_high"],
                color="k",
                alpha=0.15,
                lw=0,
            )
    for x in (2.0, expected_eta_max(runs)):
        if x is not None:
            ax.axvline(x, color="grey", ls="--", lw=1)
    ax.set_yscale("log", base=2)
    ax.set_xlabel(r"$\eta\,\lambda_0$")
    ax.set_ylabel("width n")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        fig.suptitle(title)
    return Plot(fig, _save(fig, path))


def _check_runs(runs):
    if not isinstance(runs, pa.Table) or runs.num_rows == 0:
        raise ValueError("runs must be a non-empty pyarrow Table of RECORD_SCHEMA rows")


def _columns(runs, *names):
    missing = [n for n in names if n not in runs.column_names]
    if missing:
        raise ValueError(f"runs is missing column(s) {missing}; pass RECORD_SCHEMA rows")
    return {n: runs.column(n).to_numpy(zero_copy_only=False) for n in names}


def _medians(x, y):
    xs = np.unique(x)
    return xs, np.array(
        [np.nanmedian(y[x == v]) if np.isfinite(y[x == v]).any() else np.nan for v in xs]
    )


def _width_colours(k):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.0, 0.85, k)]


def _save(fig, path) -> tuple[Path, ...]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in FORMATS:
        target = path.with_name(f"{path.name}.{fmt}")
        tmp = target.with_name(f".{target.name}.tmp")
        fig.savefig(tmp, format=fmt, dpi=150)
        tmp.replace(target)  # atomic: never a half-written figure
        out.append(target)
    return tuple(out)
