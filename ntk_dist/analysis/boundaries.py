"""Located critical learning rates with confidence intervals, from a table of runs.

Per group (width, depth, activation), three critical values of c = eta * lambda0
(docs/theory.md §7; Kalra & Barkeshli 2023), each the edge between the runs "below"
and "above" it, with the labels of :func:`ntk_dist.analysis.phases.classify_runs`:

- ``c_loss``: smallest c with a loss catapult; above = ``loss_catapult`` or
  ``divergent`` (a divergent run's loss rises too).
- ``c_sharp``: smallest c with a sharpness catapult; above = ``sharpness_catapult`` or
  ``divergent`` (lambda of a divergent run grows without bound, so c_sharp <= c_max).
- ``c_max``: largest c that does not diverge; above = ``divergent``.

Results written before these definitions named two boundaries, mapped on read
(:data:`LEGACY_BOUNDARIES`): ``lazy_catapult`` (lazy vs not lazy, where "catapult" also
counted sharpness reduction past 2 / eta, so it is <= c_loss) is ``c_loss``, and
``catapult_divergent`` is ``c_max`` (the same divergence rule).

Method, with each run's own measured c as its coordinate x (docs/theory.md §3):

- **estimate**: the threshold t minimising the number of runs on the wrong side
  (below-runs with x > t plus above-runs with x < t). Candidate thresholds
  are the geometric midpoints between consecutive distinct x; among equally good ones
  the middle one is taken. With cleanly separated labels this is the geometric
  midpoint of the bracket (last run below, first run above).
- **confidence interval**: a percentile bootstrap over runs (``n_boot`` resamples with
  a fixed seed, so the result is deterministic; resamples without both sides are
  skipped), widened to contain the bracket around the estimate, because the
  boundary can lie anywhere between two sampled points (the resolution limit). The
  reported value is therefore always inside its interval.
- **transition region**: where labels are mixed, from the lowest x of an above-run
  to the highest x of a below-run. If no mixing is seen, the labels switch
  within the bracket and the region is reported as that bracket (an upper bound set by
  the sampling resolution); ``mixed`` says which.

``coordinate="learning_rate"`` uses the absolute eta instead of eta * lambda0: at a
fixed eta, whether a run catapults depends on its own lambda0, which fluctuates
O(n^{-1/2}) (docs/theory.md §2), so in this coordinate the region of mixed labels is real
and narrows with width. In eta * lambda0 the toy's transitions are sharp at every
width (the edges are the exact linear stability bounds: c_loss = 2, c_sharp = c_max = 4).

Cost: O(G * n_boot * R log R) for G groups of R runs.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from ntk_dist.analysis.phases import classify_runs
from ntk_dist.core import validate

BOUNDARIES = ("c_loss", "c_sharp", "c_max")
#: Boundary names of results written before the published definitions (module docstring).
LEGACY_BOUNDARIES = {"lazy_catapult": "c_loss", "catapult_divergent": "c_max"}
COORDINATES = ("eta_lambda0", "learning_rate")
_GROUP = ("width", "depth", "activation")

BOUNDARY_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), False, {"doc": "sweep name"}),
        pa.field("width", pa.int64(), False, {"doc": "hidden width n"}),
        pa.field("depth", pa.int64(), False, {"doc": "hidden layers L"}),
        pa.field("activation", pa.string(), False, {"doc": "activation name"}),
        pa.field(
            "boundary", pa.string(), False, {"doc": "'c_loss', 'c_sharp' or 'c_max' (theory §7)"}
        ),
        pa.field("coordinate", pa.string(), False, {"doc": "'eta_lambda0' or 'learning_rate'"}),
        pa.field("eta_lambda0", pa.float64(), True, {"doc": "estimate (NaN: not located)"}),
        pa.field("ci_low", pa.float64(), True, {"doc": "lower end of the confidence interval"}),
        pa.field("ci_high", pa.float64(), True, {"doc": "upper end of the confidence interval"}),
        pa.field("region_low", pa.float64(), True, {"doc": "transition region, lower end"}),
        pa.field("region_high", pa.float64(), True, {"doc": "transition region, upper end"}),
        pa.field("mixed", pa.bool_(), False, {"doc": "labels mixed inside the region"}),
        pa.field("n_runs", pa.int64(), False, {"doc": "runs of this group"}),
        pa.field("n_below", pa.int64(), False, {"doc": "runs on the low side's phase(s)"}),
        pa.field("n_above", pa.int64(), False, {"doc": "runs on the high side's phase(s)"}),
    ]
)


def estimate_boundaries(
    runs: pa.Table,
    *,
    sweep: str,
    confidence: float = 0.95,
    n_boot: int = 400,
    seed: int = 0,
    coordinate: str = "eta_lambda0",
    early_steps: int | None = None,
) -> pa.Table:
    """c_loss, c_sharp and c_max per (width, depth, activation), with CIs (module docstring).

    Args:
      runs: rows in :data:`ntk_dist.engine.records.RECORD_SCHEMA`.
      sweep: sweep name copied to every row.
      confidence: level of the bootstrap interval, in (0, 1).
      n_boot: bootstrap resamples (>= 1).
      seed: bootstrap seed.
      coordinate: ``"eta_lambda0"`` (each run's measured eta * lambda0) or
        ``"learning_rate"`` (absolute eta).
      early_steps: the labels' window T_early (``training.early_steps``; None: the
        whole budget), see :func:`ntk_dist.analysis.phases.classify_runs`.

    Returns:
      pa.Table in :data:`BOUNDARY_SCHEMA`, one row per group and boundary, sorted by
      (depth, activation, width, boundary). A boundary without runs on both sides has
      NaN estimate, interval and region.
    """
    if not isinstance(sweep, str) or not sweep:
        raise ValueError(f"sweep must be a non-empty string, got {sweep!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n_boot = validate.positive_int(n_boot, "n_boot")
    validate.choice(coordinate, "coordinate", COORDINATES)
    missing = [c for c in (*_GROUP, coordinate) if c not in runs.column_names]
    if missing:
        raise ValueError(f"runs is missing column(s) {missing}; pass RECORD_SCHEMA rows")
    sides = boundary_sides(runs, early_steps=early_steps)
    x_all = runs.column(coordinate).to_numpy(zero_copy_only=False).astype(float)
    keys = list(zip(*(runs.column(c).to_pylist() for c in _GROUP), strict=True))
    rows = []
    for width, depth, activation in sorted(set(keys), key=lambda k: (k[1], k[2], k[0])):
        idx = np.array([i for i, k in enumerate(keys) if k == (width, depth, activation)])
        for boundary in BOUNDARIES:
            above = sides[boundary][idx]
            est = _locate(x_all[idx], above, confidence, n_boot, seed)
            rows.append(
                dict(
                    sweep=sweep,
                    width=int(width),
                    depth=int(depth),
                    activation=str(activation),
                    boundary=boundary,
                    coordinate=coordinate,
                    **est,
                    n_runs=len(idx),
                    n_below=int((~above).sum()),
                    n_above=int(above.sum()),
                )
            )
    return pa.Table.from_pylist(rows, schema=BOUNDARY_SCHEMA)


def boundary_sides(runs: pa.Table, *, early_steps: int | None = None) -> dict[str, np.ndarray]:
    """Per boundary of :data:`BOUNDARIES`, a bool array: which runs lie above it."""
    labels = classify_runs(runs, early_steps=early_steps)
    return sides_of(
        labels.column("phase").to_pylist(), labels.column("sharpness_catapult").to_pylist()
    )


def sides_of(phases, sharpness_catapult) -> dict[str, np.ndarray]:
    """The sides of :data:`BOUNDARIES` (module docstring) from phase labels and
    sharpness-catapult flags (sequences of equal length)."""
    phase = np.asarray(list(phases), dtype=object)
    sharp = np.asarray(list(sharpness_catapult), bool)
    divergent = phase == "divergent"
    return {
        "c_loss": divergent | (phase == "loss_catapult"),
        "c_sharp": divergent | sharp,
        "c_max": divergent,
    }


def legacy_boundaries(table: pa.Table) -> bool:
    """Whether a boundary table uses the names of :data:`LEGACY_BOUNDARIES`."""
    return bool(set(table.column("boundary").to_pylist()) & set(LEGACY_BOUNDARIES))


def _threshold(x: np.ndarray, above: np.ndarray) -> tuple[float, int, np.ndarray]:
    """Minimum-misclassification threshold; returns (t, index of t's bracket, distinct x)."""
    u = np.unique(x)
    # errors(t between u[j] and u[j+1]) = above-runs with x <= u[j] + below-runs with x > u[j]
    le = x[None, :] <= u[:-1, None]
    errors = (le & above).sum(1) + (~le & ~above).sum(1)
    best = np.flatnonzero(errors == errors.min())
    j = int(best[len(best) // 2])
    return math.sqrt(u[j] * u[j + 1]), j, u


def _locate(x, above, confidence, n_boot, seed) -> dict:
    nan = dict(
        eta_lambda0=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        region_low=math.nan,
        region_high=math.nan,
        mixed=False,
    )
    if above.all() or not above.any():
        return nan
    t, j, u = _threshold(x, above)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(x), len(x))
        xs, ys = x[pick], above[pick]
        if ys.any() and not ys.all() and len(np.unique(xs)) > 1:
            boot.append(_threshold(xs, ys)[0])
    tail = 50 * (1 - confidence)
    lo, hi = np.percentile(boot, [tail, 100 - tail]) if boot else (t, t)
    first_above, last_below = x[above].min(), x[~above].max()
    mixed = bool(first_above < last_below)
    region = (first_above, last_below) if mixed else (u[j], u[j + 1])
    return dict(
        eta_lambda0=t,
        ci_low=float(min(lo, u[j])),
        ci_high=float(max(hi, u[j + 1])),
        region_low=float(region[0]),
        region_high=float(region[1]),
        mixed=mixed,
    )
