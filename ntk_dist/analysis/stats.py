"""Ensemble statistics over the Parquet results: pure NumPy/pyarrow, no Ray, no files.

Every function takes arrays or a runs table (:data:`ntk_dist.study.results.RUN_SCHEMA` rows)
and returns a tidy ``pyarrow.Table`` (one row per test point, group or quantity; the
columns are listed in each docstring) or a NamedTuple of such tables and scalars.

Intervals, and which assumption each one rests on:

- :func:`ensemble_stats`: percentile bootstrap over ensemble members (resampled
  with replacement, ``n_boot`` times, fixed seed, so results are deterministic) for the
  mean and the std at each point.
- :func:`group_stats`: Student-t interval mean +/- t_{n-1} * SE over the rows of a
  group (exact for Gaussian values; seeds are few, where a bootstrap under-covers).
- :func:`fit_power_law`: ordinary least squares of log y on log x with the t-interval
  of the slope (n - 2 degrees of freedom; exact for log-normal scatter around the law).
  :func:`width_scaling` fits the log of the per-width mean over seeds.

Conventions (docs/theory.md §3-§5): loss 1/(2m) sum ||f - y||^2, lambda = top eigenvalue of
Theta_hat(X, X) / m; the NTK-GP mean and variance are those of docs/theory.md §4.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from ntk_dist.core import validate

#: Exponents of the width-scaling quantities from the literature (docs/theory.md §4): the
#: O(n^{-1/2}) upper bounds of Lee et al. 2019, and O(1/n) for the toy's lambda in the
#: lazy phase (Lewkowycz et al. 2020, Thm 1).
PUBLISHED_EXPONENTS = {"sup_lin_gap": -0.5, "param_change": -0.5, "ntk_change": -0.5}
TOY_LAMBDA_EXPONENT = -1.0
SCALING_QUANTITIES = ("sup_lin_gap", "param_change", "ntk_change", "lambda_change")


def ensemble_stats(
    values, *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> pa.Table:
    """Per-point ensemble statistics with percentile-bootstrap intervals.

    The bootstrap draws multinomial member counts (n_boot, M), so each resample's mean
    and variance are two matrix products: cost O(n_boot * M * P), memory O(n_boot * P).

    Args:
      values: (M, P) array, M >= 2 ensemble members (rows) at P points (columns).
      confidence: interval level in (0, 1).
      n_boot: bootstrap resamples (>= 1).
      seed: bootstrap seed.

    Returns:
      Table with one row per point: ``index`` (int64, column of ``values``), ``n``
      (members M), ``mean``, ``var`` (ddof = 1), ``std``, ``se`` (std / sqrt(M)),
      ``mean_ci_low``, ``mean_ci_high``, ``std_ci_low``, ``std_ci_high`` (float64).
    """
    v = _members(values, "values")
    _check_confidence(confidence)
    n_boot = validate.positive_int(n_boot, "n_boot")
    m = v.shape[0]
    mean, var = v.mean(0), v.var(0, ddof=1)
    centred = v - mean  # resample the centred values: no cancellation in E[x^2] - E[x]^2
    counts = np.random.default_rng(seed).multinomial(m, np.full(m, 1.0 / m), size=n_boot)
    b_mean = counts @ centred / m
    b_var = (counts @ centred**2 - m * b_mean**2) / (m - 1)
    tail = 50 * (1 - confidence)
    mean_lo, mean_hi = np.percentile(b_mean, [tail, 100 - tail], axis=0) + mean
    std_lo, std_hi = np.percentile(np.sqrt(np.clip(b_var, 0, None)), [tail, 100 - tail], axis=0)
    std = np.sqrt(var)
    return pa.table(
        {
            "index": np.arange(v.shape[1], dtype=np.int64),
            "n": np.full(v.shape[1], m, np.int64),
            "mean": mean,
            "var": var,
            "std": std,
            "se": std / math.sqrt(m),
            "mean_ci_low": mean_lo,
            "mean_ci_high": mean_hi,
            "std_ci_low": std_lo,
            "std_ci_high": std_hi,
        }
    )


class GPComparison(NamedTuple):
    """An ensemble against the NTK-GP (:func:`compare_to_gp`).

    Attributes:
      points: per point: ``index``, ``ens_mean``, ``ens_std``, ``se`` (ens_std /
        sqrt(M)), ``gp_mean``, ``gp_std``, ``z`` ((ens_mean - gp_mean) / se),
        ``std_ratio`` (ens_std / gp_std), ``band_coverage`` (fraction of members inside
        gp_mean +/- band * gp_std).
      frac_mean_within: fraction of points with |z| <= ``n_se``.
      frac_std_within: fraction of points with 1/``std_factor`` <= std_ratio <= ``std_factor``.
      coverage: fraction of all (member, point) values inside the band (0.954 for
        band = 2 when the members are draws from the NTK-GP).
      n_members: M.
    """

    points: pa.Table
    frac_mean_within: float
    frac_std_within: float
    coverage: float
    n_members: int


def compare_to_gp(
    values,
    gp_mean,
    gp_var,
    *,
    n_se: float = 3.0,
    std_factor: float = 1.5,
    band: float = 2.0,
) -> GPComparison:
    """Compare an ensemble of network outputs with the NTK-GP's mean and variance.

    Args:
      values: (M, P) outputs f(x_p) of M >= 2 networks at P points.
      gp_mean: (P,) NTK-GP mean at the same points (and the same step).
      gp_var: (P,) NTK-GP variance (>= 0; tiny negative round-off is clipped).
      n_se: a point's ensemble mean agrees if within ``n_se`` standard errors.
      std_factor: a point's std agrees if the ratio is within this factor (> 1).
      band: half-width of the GP band in GP standard deviations.

    Returns:
      :class:`GPComparison`.
    """
    v = _members(values, "values")
    p = v.shape[1]
    mu = _vector(gp_mean, "gp_mean", p)
    var = _vector(gp_var, "gp_var", p)
    if (var < -1e-12 * max(1.0, float(np.abs(var).max()))).any():
        raise ValueError("gp_var must be >= 0 (it is a variance); got negative entries")
    n_se = validate.positive_float(n_se, "n_se")
    band = validate.positive_float(band, "band")
    if not validate.positive_float(std_factor, "std_factor") > 1:
        raise ValueError(f"std_factor must be > 1, got {std_factor!r}")
    m = v.shape[0]
    gp_std = np.sqrt(np.clip(var, 0, None))
    ens_mean, ens_std = v.mean(0), v.std(0, ddof=1)
    se = ens_std / math.sqrt(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (ens_mean - mu) / se
        ratio = ens_std / gp_std
    inside = np.abs(v - mu) <= band * gp_std
    points = pa.table(
        {
            "index": np.arange(p, dtype=np.int64),
            "ens_mean": ens_mean,
            "ens_std": ens_std,
            "se": se,
            "gp_mean": mu,
            "gp_std": gp_std,
            "z": z,
            "std_ratio": ratio,
            "band_coverage": inside.mean(0),
        }
    )
    return GPComparison(
        points=points,
        frac_mean_within=float(np.mean(np.abs(z) <= n_se)),
        frac_std_within=float(np.mean((ratio >= 1 / std_factor) & (ratio <= std_factor))),
        coverage=float(inside.mean()),
        n_members=m,
    )


def group_stats(
    table: pa.Table,
    column: str,
    *,
    by=("width",),
    confidence: float = 0.95,
) -> pa.Table:
    """Mean, SE and t-interval of one scalar column per group of rows.

    Non-finite values (NaN of diverged runs) are left out and counted in ``n_nan``.

    Args:
      table: runs (any table with the columns named).
      column: numeric column to summarise.
      by: grouping columns (e.g. ``("width",)``, ``("width", "target_eta_lambda0")``,
        ``("seed",)``); ``()`` summarises the whole table in one row. Groups are exact
        matches: ``eta_lambda0`` is each run's own measured value (its lambda0
        fluctuates), so pool seeds by the requested ``target_eta_lambda0`` instead.
      confidence: interval level in (0, 1).

    Returns:
      Table sorted by the group keys: the ``by`` columns, ``n`` (finite values),
      ``n_nan``, ``mean``, ``std`` (ddof = 1), ``se``, ``ci_low``, ``ci_high``
      (NaN where n < 2).
    """
    by = (by,) if isinstance(by, str) else tuple(by)
    _check_confidence(confidence)
    _require(table, column, *by)
    y = table.column(column).to_numpy(zero_copy_only=False).astype(float)
    keys = (
        list(zip(*(table.column(c).to_pylist() for c in by), strict=True))
        if by
        else [()] * table.num_rows
    )
    rows = []
    for key in sorted(set(keys)):
        sel = np.array([k == key for k in keys], bool)
        vals = y[sel]
        finite = vals[np.isfinite(vals)]
        n = len(finite)
        mean = float(finite.mean()) if n else math.nan
        std = float(finite.std(ddof=1)) if n > 1 else math.nan
        se = std / math.sqrt(n) if n > 1 else math.nan
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * se if n > 1 else math.nan
        rows.append(
            dict(zip(by, key, strict=True))
            | dict(
                n=n,
                n_nan=int(len(vals) - n),
                mean=mean,
                std=std,
                se=se,
                ci_low=mean - half,
                ci_high=mean + half,
            )
        )
    schema = pa.schema(
        [table.schema.field(c) for c in by]
        + [pa.field("n", pa.int64()), pa.field("n_nan", pa.int64())]
        + [pa.field(c, pa.float64()) for c in ("mean", "std", "se", "ci_low", "ci_high")]
    )
    return pa.Table.from_pylist(rows, schema=schema)


class PowerLaw(NamedTuple):
    """y = prefactor * x ** exponent, fitted on log-log axes (:func:`fit_power_law`).

    Attributes:
      exponent: fitted slope p of log y on log x.
      ci_low, ci_high: t-interval for p (NaN with fewer than 3 points).
      se: standard error of p.
      prefactor: a = exp(intercept).
      n_points: points used (positive, finite x and y).
      confidence: interval level.
    """

    exponent: float
    ci_low: float
    ci_high: float
    se: float
    prefactor: float
    n_points: int
    confidence: float


def fit_power_law(x, y, *, confidence: float = 0.95) -> PowerLaw:
    """OLS fit of log y = log a + p log x, with the t-interval of p (n - 2 dof).

    Points with a non-positive or non-finite x or y are left out (they have no log).

    Args:
      x: (N,) positive abscissae (e.g. widths).
      y: (N,) positive values.
      confidence: interval level in (0, 1).

    Returns:
      :class:`PowerLaw`.

    Raises:
      ValueError: fewer than 2 usable points, or fewer than 2 distinct x.
    """
    _check_confidence(confidence)
    x = np.asarray(x, float).ravel()
    y = np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = int(ok.sum())
    if n < 2 or len(np.unique(lx)) < 2:
        raise ValueError(
            f"a power-law fit needs at least 2 points with distinct positive x, got {n} usable "
            f"of {x.size}; run more widths"
        )
    sxx = np.sum((lx - lx.mean()) ** 2)
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    if n > 2:
        resid = ly - intercept - slope * lx
        se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
        half = stats.t.ppf(0.5 + confidence / 2, n - 2) * se
    else:
        se = half = math.nan
    return PowerLaw(slope, slope - half, slope + half, se, math.exp(intercept), n, confidence)


class WidthScaling(NamedTuple):
    """Width-scaling study (:func:`width_scaling`).

    Attributes:
      per_run: one row per run: ``width``, ``seed``, and the quantities of
        :data:`SCALING_QUANTITIES` (float64; NaN where not recorded).
      per_width: :func:`group_stats` of each quantity by width, stacked: ``quantity``,
        ``width``, ``n``, ``n_nan``, ``mean``, ``std``, ``se``, ``ci_low``, ``ci_high``.
      fits: one row per quantity: ``quantity``, the :class:`PowerLaw` fields
        (``exponent``, ``ci_low``, ``ci_high``, ``se``, ``prefactor``, ``n_points`` =
        widths fitted, ``confidence``) and ``published`` (literature exponent).
    """

    per_run: pa.Table
    per_width: pa.Table
    fits: pa.Table


def width_scaling(runs: pa.Table, *, confidence: float = 0.95) -> WidthScaling:
    """Per-width relative changes and their fitted power laws in the width n.

    Quantities per run (docs/theory.md §4; Lee et al. 2019, Lewkowycz et al. 2020):

    - ``sup_lin_gap``: sup_t ||f_t(X) - f_lin,t(X)||_F (the record column).
    - ``param_change``: ||theta_T - theta_0|| / ||theta_0|| (the record column).
    - ``ntk_change``: ||Theta_T - Theta_0||_F / ||Theta_0||_F on the probe points, from
      ``probe_ntk`` at the first and last record step.
    - ``lambda_change``: |lambda_T - lambda0| / lambda0.

    Each exponent is the OLS slope of log(per-width mean over seeds) on log n, with a
    t-interval (n_widths - 2 dof). Diverged runs (NaN) are left out of the means.

    Args:
      runs: RUN_SCHEMA rows of one model (lazy phase), several widths and seeds.
      confidence: interval level.

    Returns:
      :class:`WidthScaling`.
    """
    _require(runs, "width", "seed", "model_kind", "sup_lin_gap", "param_change")
    _require(runs, "probe_ntk", "lambda0", "lambda_final")
    if runs.num_rows == 0:
        raise ValueError("runs is empty; pass the runs of a width-scaling experiment")
    col = lambda name: runs.column(name).to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
    lam0 = col("lambda0")
    per_run = pa.table(
        {
            "width": runs.column("width"),
            "seed": runs.column("seed"),
            "sup_lin_gap": col("sup_lin_gap"),
            "param_change": col("param_change"),
            "ntk_change": [_relative_change(p) for p in runs.column("probe_ntk").to_pylist()],
            "lambda_change": np.abs(col("lambda_final") - lam0) / lam0,
        }
    )
    toy = set(runs.column("model_kind").to_pylist()) == {"toy"}
    published = PUBLISHED_EXPONENTS | {"lambda_change": TOY_LAMBDA_EXPONENT if toy else -0.5}
    stacked, fits = [], []
    for q in SCALING_QUANTITIES:
        g = group_stats(per_run, q, by=("width",), confidence=confidence)
        stacked.append(g.add_column(0, "quantity", pa.array([q] * g.num_rows)))
        w, mean = g.column("width").to_numpy(), g.column("mean").to_numpy()
        usable = np.isfinite(mean) & (mean > 0)
        fit = (
            fit_power_law(w, mean, confidence=confidence)
            if len(np.unique(w[usable])) >= 2
            else PowerLaw(math.nan, math.nan, math.nan, math.nan, math.nan, 0, confidence)
        )
        fits.append({"quantity": q, **fit._asdict(), "published": published[q]})
    return WidthScaling(per_run, pa.concat_tables(stacked), pa.Table.from_pylist(fits))


def gp_expected_loss(reference: pa.Table) -> pa.Table:
    """The NTK-GP's expected loss per step and split, from a reference table.

    E[1/(2m) sum_alpha (f(x_alpha) - y_alpha)^2] = mean_alpha ((gp_mean - y)^2 + gp_var) / 2
    over the points of the split, f ~ N(gp_mean, gp_var) (docs/theory.md §3-§4).

    Args:
      reference: long table with ``step``, ``split``, ``y``, ``gp_mean``, ``gp_var``
        (``reference.parquet`` of the finite_vs_infinite and ensemble experiments).

    Returns:
      Table sorted by (split, step): ``split``, ``step`` (int64), ``loss`` (float64).
    """
    _require(reference, "step", "split", "y", "gp_mean", "gp_var")
    sq = pc.add(pc.power(pc.subtract(reference["gp_mean"], reference["y"]), 2), reference["gp_var"])
    t = pa.table({"split": reference["split"], "step": reference["step"], "sq": sq})
    out = t.group_by(["split", "step"]).aggregate([("sq", "mean")])
    loss = pc.divide(out["sq_mean"], 2.0)
    return pa.table(
        {"split": out["split"], "step": out["step"].cast(pa.int64()), "loss": loss}
    ).sort_by([("split", "ascending"), ("step", "ascending")])


def ntk_convergence(theta: dict, analytic) -> pa.Table:
    """Empirical NTK across initialisations against the analytic Theta, per width.

    Args:
      theta: ``{width: (S, 2, P) array}``: per seed, Theta_hat(x0, x_p) at the first and
        last record step (initialisation and after training).
      analytic: (P,) infinite-width Theta(x0, x_p).

    Returns:
      Table sorted by width: ``width``, ``n_seeds``; ``std_init`` and ``std_final`` (the
      std across seeds (ddof = 1), averaged over the P points); ``mean_err_init`` and
      ``mean_err_final`` (max_p |mean over seeds - Theta| / max_p |Theta|, the relative
      sup-norm error of the seed mean); ``rel_change`` (mean over seeds of
      ||Theta_hat_T - Theta_hat_0|| / ||Theta_hat_0||, 2-norms over the P points) and
      ``rel_change_se``.
    """
    ref = np.asarray(analytic, float).ravel()
    scale = np.abs(ref).max()
    rows = []
    for w in sorted(theta):
        a = np.asarray(theta[w], float)
        if a.ndim != 3 or a.shape[1] != 2 or a.shape[2] != ref.size or a.shape[0] < 2:
            raise ValueError(
                f"theta[{w}] must have shape (seeds >= 2, 2, {ref.size}), got {a.shape}"
            )
        change = np.linalg.norm(a[:, 1] - a[:, 0], axis=1) / np.linalg.norm(a[:, 0], axis=1)
        rows.append(
            dict(
                width=int(w),
                n_seeds=a.shape[0],
                std_init=float(a[:, 0].std(0, ddof=1).mean()),
                std_final=float(a[:, 1].std(0, ddof=1).mean()),
                mean_err_init=float(np.abs(a[:, 0].mean(0) - ref).max() / scale),
                mean_err_final=float(np.abs(a[:, 1].mean(0) - ref).max() / scale),
                rel_change=float(change.mean()),
                rel_change_se=float(change.std(ddof=1) / math.sqrt(len(change))),
            )
        )
    return pa.Table.from_pylist(rows)


def _relative_change(trajectory) -> float:
    """||A_last - A_first||_F / ||A_first||_F of a per-step list of flattened matrices."""
    if not trajectory or trajectory[0] is None or trajectory[-1] is None:
        return math.nan
    first, last = np.asarray(trajectory[0], float), np.asarray(trajectory[-1], float)
    return float(np.linalg.norm(last - first) / np.linalg.norm(first))


def _members(values, name) -> np.ndarray:
    v = np.asarray(values, float)
    if v.ndim != 2 or v.shape[0] < 2 or v.shape[1] < 1:
        raise ValueError(
            f"{name} must be a (members, points) array with at least 2 members, got shape {v.shape}"
        )
    if not np.isfinite(v).all():
        raise ValueError(f"{name} has non-finite entries; drop diverged members first")
    return v


def _vector(x, name, p) -> np.ndarray:
    v = np.asarray(x, float).ravel()
    if v.shape != (p,):
        raise ValueError(f"{name} must have one value per point ({p}), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} has non-finite entries")
    return v


def _check_confidence(confidence) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _require(table, *names) -> None:
    if not isinstance(table, pa.Table):
        raise ValueError(f"expected a pyarrow Table, got {type(table).__name__}")
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ValueError(f"table is missing column(s) {missing}; pass RUN_SCHEMA rows")
