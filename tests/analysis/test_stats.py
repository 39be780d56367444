"""Ensemble statistics against answers known by construction (ntk_dist.analysis.stats)."""

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from ntk_dist.analysis.stats import (
    SCALING_QUANTITIES,
    compare_to_gp,
    ensemble_stats,
    fit_power_law,
    group_stats,
    width_scaling,
)


def _binomial_tol(p, n, k=3.0):
    return k * math.sqrt(p * (1 - p) / n)


def test_ensemble_stats_match_numpy_and_bootstrap_intervals_cover():
    rng = np.random.default_rng(1)
    m, p = 100, 2000
    mu, sigma = rng.normal(size=p), rng.uniform(0.5, 2.0, size=p)
    v = mu + sigma * rng.normal(size=(m, p))
    t = ensemble_stats(v, n_boot=500, seed=3).to_pydict()
    np.testing.assert_allclose(t["mean"], v.mean(0), rtol=1e-12)
    np.testing.assert_allclose(t["var"], v.var(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(t["se"], v.std(0, ddof=1) / 10, rtol=1e-12)
    assert t["index"] == list(range(p)) and set(t["n"]) == {m}
    lo, hi = np.array(t["mean_ci_low"]), np.array(t["mean_ci_high"])
    assert (lo <= np.array(t["mean"])).all() and (np.array(t["mean"]) <= hi).all()
    # Independent points: coverage of the truth is a binomial proportion around 0.95
    # (the percentile bootstrap under-covers by ~1/M, hence the small allowance).
    cover_mean = np.mean((lo <= mu) & (mu <= hi))
    assert abs(cover_mean - 0.95) < _binomial_tol(0.95, p) + 0.01, cover_mean
    slo, shi = np.array(t["std_ci_low"]), np.array(t["std_ci_high"])
    cover_std = np.mean((slo <= sigma) & (sigma <= shi))
    assert abs(cover_std - 0.95) < _binomial_tol(0.95, p) + 0.02, cover_std
    # Deterministic for a seed; rejects a one-member ensemble.
    again = ensemble_stats(v, n_boot=500, seed=3)
    assert again.column("std_ci_low").to_pylist() == t["std_ci_low"]
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_stats(v[:1])


def test_compare_to_gp_accepts_draws_from_the_gp_and_rejects_shifts():
    rng = np.random.default_rng(2)
    m, p = 100, 400
    gp_mean, gp_var = np.linspace(-1, 1, p), np.linspace(0.01, 0.2, p)
    v = gp_mean + np.sqrt(gp_var) * rng.normal(size=(m, p))
    c = compare_to_gp(v, gp_mean, gp_var)
    z = (v.mean(0) - gp_mean) / (v.std(0, ddof=1) / math.sqrt(m))
    np.testing.assert_allclose(c.points.column("z").to_numpy(), z, rtol=1e-12)
    assert c.frac_mean_within >= 0.98  # P(|z| <= 3) = 0.997
    assert c.frac_std_within == 1.0  # sample std ratio ~ 1 +/- 0.07 at M = 100
    p2 = stats.norm.cdf(2) - stats.norm.cdf(-2)
    assert abs(c.coverage - p2) < _binomial_tol(p2, m * p, 4) + 0.005, c.coverage
    assert c.n_members == m
    # An ensemble shifted by one GP std or twice as wide fails the matching test.
    shifted = compare_to_gp(v + np.sqrt(gp_var), gp_mean, gp_var)
    assert shifted.frac_mean_within < 0.05 and shifted.coverage < 0.85
    wide = compare_to_gp(gp_mean + 2 * (v - gp_mean), gp_mean, gp_var)
    assert wide.frac_std_within < 0.05
    np.testing.assert_allclose(
        wide.points.column("std_ratio").to_numpy(),
        2 * v.std(0, ddof=1) / np.sqrt(gp_var),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="gp_mean must have one value per point"):
        compare_to_gp(v, gp_mean[:-1], gp_var)


def test_group_stats_equal_a_direct_computation():
    rng = np.random.default_rng(3)
    n = 60
    table = pa.table(
        {
            "width": rng.choice([64, 256, 1024], n),
            "eta_lambda0": rng.choice([0.5, 1.0], n),
            "seed": np.arange(n) % 5,
            "loss": rng.normal(size=n),
        }
    )
    loss = table.column("loss").to_numpy().copy()
    loss[[0, 7]] = np.nan  # diverged runs are left out and counted
    table = table.set_column(3, "loss", pa.array(loss))
    g = group_stats(table, "loss", by=("width", "eta_lambda0"), confidence=0.9).to_pylist()
    assert len(g) == 6
    assert [(r["width"], r["eta_lambda0"]) for r in g] == sorted(
        (r["width"], r["eta_lambda0"]) for r in g
    )
    w, e = table.column("width").to_numpy(), table.column("eta_lambda0").to_numpy()
    for row in g:
        sel = (w == row["width"]) & (e == row["eta_lambda0"])
        vals = loss[sel][np.isfinite(loss[sel])]
        se = vals.std(ddof=1) / math.sqrt(len(vals))
        half = stats.t.ppf(0.95, len(vals) - 1) * se
        assert row["n"] == len(vals) and row["n_nan"] == int(np.isnan(loss[sel]).sum())
        np.testing.assert_allclose(
            [row["mean"], row["se"], row["ci_low"], row["ci_high"]],
            [vals.mean(), se, vals.mean() - half, vals.mean() + half],
            rtol=1e-12,
        )
    (everything,) = group_stats(table, "loss", by=()).to_pylist()
    assert everything["n"] == n - 2 and everything["mean"] == pytest.approx(np.nanmean(loss))
    assert len(group_stats(table, "loss", by="seed")) == 5
    with pytest.raises(ValueError, match=r"missing column\(s\) \['nope'\]"):
        group_stats(table, "nope")


def test_power_law_fit_recovers_the_exponent_and_its_interval_covers():
    widths = 2.0 ** np.arange(6, 14)
    exact = fit_power_law(widths, 3.0 * widths**-0.5)
    assert exact.exponent == pytest.approx(-0.5, abs=1e-12)
    assert exact.prefactor == pytest.approx(3.0, rel=1e-10)
    assert exact.ci_high - exact.ci_low < 1e-10 and exact.n_points == 8
    # Log-normal scatter: the t-interval is exact, so it covers -1 in ~95% of replicates.
    rng = np.random.default_rng(4)
    reps = 400
    hits = 0
    for _ in range(reps):
        fit = fit_power_law(widths, 2.0 * widths**-1.0 * np.exp(0.2 * rng.normal(size=8)))
        hits += fit.ci_low <= -1.0 <= fit.ci_high
    assert abs(hits / reps - 0.95) < _binomial_tol(0.95, reps), hits / reps
    with pytest.raises(ValueError, match="at least 2 points with distinct positive x"):
        fit_power_law([64, 64], [1.0, 2.0])


def _scaling_runs(kind, widths, seeds, rng):
    rows = []
    for w in widths:
        for s in seeds:
            noise = np.exp(0.05 * rng.normal(size=4))
            theta0 = np.array([[2.0, 0.5], [0.5, 1.0]]).ravel()
            d_ntk = 0.7 * w**-0.5 * noise[2]
            rows.append(
                dict(
                    width=w,
                    seed=s,
                    model_kind=kind,
                    sup_lin_gap=0.3 * w**-0.5 * noise[0],
                    param_change=5.0 * w**-0.5 * noise[1],
                    # Theta_T = Theta_0 (1 + d): relative Frobenius change d.
                    probe_ntk=[list(theta0), list(theta0 * 1.1), list(theta0 * (1 + d_ntk))],
                    lambda0=2.0,
                    lambda_final=2.0 * (1 - 4.0 / w * noise[3]),
                )
            )
    return pa.Table.from_pylist(rows)


def test_width_scaling_fits_known_exponents():
    rng = np.random.default_rng(5)
    widths = [64, 128, 256, 512, 1024, 2048]
    runs = _scaling_runs("toy", widths, range(3), rng)
    ws = width_scaling(runs)
    fits = {r["quantity"]: r for r in ws.fits.to_pylist()}
    assert tuple(fits) == SCALING_QUANTITIES
    expected = {"sup_lin_gap": -0.5, "param_change": -0.5, "ntk_change": -0.5, "lambda_change": -1}
    for q, p in expected.items():
        assert fits[q]["ci_low"] <= p <= fits[q]["ci_high"], (q, fits[q])
        assert fits[q]["ci_high"] - fits[q]["ci_low"] < 0.1 and fits[q]["n_points"] == 6
    assert fits["lambda_change"]["published"] == -1.0  # the toy: O(1/n), Lewkowycz et al.
    assert fits["sup_lin_gap"]["published"] == -0.5
    # ntk_change is the first-vs-last relative Frobenius change of probe_ntk.
    lam = ws.per_run.column("lambda_change").to_numpy()
    np.testing.assert_allclose(
        lam,
        np.abs(runs.column("lambda_final").to_numpy() - 2.0) / 2.0,
    )
    per_width = ws.per_width.filter(pa.compute.equal(ws.per_width["quantity"], "ntk_change"))
    assert per_width.column("width").to_pylist() == widths
    assert set(per_width.column("n").to_pylist()) == {3}
    fc = width_scaling(_scaling_runs("fc", widths, range(2), rng))
    assert fc.fits.column("published").to_pylist()[-1] == -0.5
