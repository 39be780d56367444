"""What every figure module shares: the saved-figure record, the file formats, colours
and the checks on a runs table (:mod:`ntk_dist.analysis.plots`,
:mod:`ntk_dist.analysis.phase_plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ntk_dist.core.files import save_figure_atomic

FORMATS = ("png", "pdf")


class Plot(NamedTuple):
    """A saved figure: the matplotlib Figure and the files written (PNG, PDF)."""

    figure: Figure
    paths: tuple[Path, ...]


def check_runs(runs):
    """ValueError unless ``runs`` is a non-empty pyarrow Table."""
    if not isinstance(runs, pa.Table) or runs.num_rows == 0:
        raise ValueError("runs must be a non-empty pyarrow Table of RECORD_SCHEMA rows")


def run_columns(runs, *names):
    """The columns ``names`` of ``runs`` as NumPy arrays (ValueError naming any missing)."""
    missing = [n for n in names if n not in runs.column_names]
    if missing:
        raise ValueError(f"runs is missing column(s) {missing}; pass RECORD_SCHEMA rows")
    return {n: runs.column(n).to_numpy(zero_copy_only=False) for n in names}


def width_colours(k):
    """``k`` colours of the viridis map, one per width (or line)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.0, 0.85, k)]


def save_plot(fig, path) -> tuple[Path, ...]:
    """Write ``fig`` as ``path.png`` and ``path.pdf`` atomically; the paths written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is not None:
        # Lay the figure out once for every format: each savefig would run the
        # constrained layout again (about a third of the drawing time).
        fig.get_layout_engine().execute(fig)
        fig.set_layout_engine("none")
    return tuple(
        save_figure_atomic(fig, path.with_name(f"{path.name}.{fmt}"), fmt=fmt) for fmt in FORMATS
    )
