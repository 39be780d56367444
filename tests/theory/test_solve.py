"""Kernel regression: CG against dense solves, Nystrom exactness, validation."""

import numpy as np
import pytest
from scipy.linalg import solve

from ntk_dist import fc_kernel, kernel_regression
from ntk_dist.theory.numerics import NumericalWarning
from ntk_dist.theory.solve import (
    dense_solve,
    kernel_matvec,
    nystrom_factor,
    nystrom_preconditioner,
    pcg,
)

CFG = dict(depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1)


def _spd(n, cond, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1, 1 / cond, n)) @ q.T


def test_pcg_solves_spd_system_and_reports_residuals():
    a = _spd(80, 1e4)
    b = np.random.default_rng(1).normal(size=(80, 3))
    res = pcg(lambda v: a @ v, b, tol=1e-10, maxiter=500)
    assert res.converged and res.iterations == len(res.residuals)
    assert res.residuals[-1] <= 1e-10
    np.testing.assert_allclose(a @ res.x, b, atol=1e-8)


@pytest.mark.parametrize("block", [128, 1000])
def test_symmetric_matvec_equals_dense_product(block):
    # Blocks i <= j applied to both sides; ragged edge (N = 611 not a multiple of 128).
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(611, 6)), rng.normal(size=(611, 3))
    kern = dict(get=("ntk",), **CFG)
    want = np.asarray(fc_kernel(x, **kern).ntk) @ v
    got = kernel_matvec(x, block_bytes=128 * block**2, **kern)(v)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_preconditioner_cuts_iterations():
    # K + r I with a steep spectrum: a good low-rank preconditioner needs far fewer iterations.
    x = np.random.default_rng(0).normal(size=(400, 5))
    kern = dict(get=("ntk",), **CFG)
    k = np.asarray(fc_kernel(x, **kern).ntk)
    shift = 1e-4 * np.mean(np.diag(k))
    y = np.sin(x[:, 0])
    plain = pcg(lambda v: k @ v + shift * v, y, tol=1e-8, maxiter=2000)
    pre = nystrom_preconditioner(nystrom_factor(x, 100, **kern), shift)
    fast = pcg(lambda v: k @ v + shift * v, y, precond=pre, tol=1e-8, maxiter=2000)
    assert fast.converged and fast.iterations < plain.iterations / 2
    np.testing.assert_allclose(fast.x, solve(k + shift * np.eye(400), y), rtol=1e-5, atol=1e-6)


def test_nystrom_preconditioner_with_all_landmarks_is_a_scaled_inverse():
    # L L^T = K (to the rounding of K_mm^{-1}), so P^{-1} (K + r I) = (lam_min + r) I and one
    # CG step solves the system.
    x = np.random.default_rng(0).normal(size=(60, 4))
    kern = dict(get=("ntk",), **CFG)
    k = np.asarray(fc_kernel(x, **kern).ntk)
    shift = 1e-3 * np.mean(np.diag(k))
    pre = nystrom_preconditioner(nystrom_factor(x, 60, **kern), shift)
    b = np.random.default_rng(1).normal(size=(60, 2))
    res = pcg(lambda v: k @ v + shift * v, b, precond=pre, tol=1e-10)
    assert res.converged and res.residuals[0] < 1e-6


def test_nystrom_with_all_landmarks_is_exact():
    x = np.random.default_rng(0).normal(size=(60, 4))
    kern = dict(get=("nngp",), **CFG)
    low = nystrom_factor(x, 60, **kern)
    np.testing.assert_allclose(low @ low.T, fc_kernel(x, **kern).nngp, atol=1e-8)


def test_matrix_free_matches_dense():
    # Acceptance: relative residual 1e-6; the N = 20,000 case is bench/bench_gram_solve.py.
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(500, 32)), rng.normal(size=(50, 32))
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], axis=1)
    args = dict(kind="ntk", diag_reg=1e-6, **CFG)
    dense = kernel_regression(x, y, xt, method="dense", **args)
    cg = kernel_regression(x, y, xt, method="cg", rank=200, tol=1e-9, block_bytes=2**24, **args)
    assert cg.method == "cg" and cg.iterations > 0 and cg.residual <= 1e-9
    k = np.asarray(fc_kernel(x, **CFG).ntk)
    shift = 1e-6 * np.mean(np.diag(k))
    for alpha in (dense.alpha, cg.alpha):
        resid = np.linalg.norm(k @ alpha + shift * alpha - y) / np.linalg.norm(y)
        assert resid <= 1e-6
    np.testing.assert_allclose(cg.mean, dense.mean, rtol=1e-5, atol=1e-6 * np.abs(dense.mean).max())


def test_dense_solve_regularises_input_indefinite_by_rounding():
    k = np.diag([1.0, 2.0, -1e-14])
    with pytest.warns(NumericalWarning, match="ill-conditioned"):
        alpha = dense_solve(k, np.ones((3, 1)), shift=0.0)
    assert np.all(np.isfinite(alpha))
    np.testing.assert_allclose(alpha[:2, 0], [1.0, 0.5])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="cov"), "kind must be one of"),
        (dict(method="lu"), "method must be one of"),
        (dict(diag_reg=-1.0), "diag_reg must be >= 0"),
        (dict(method="cg", diag_reg=0.0), "needs diag_reg > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    x = np.ones((5, 3))
    with pytest.raises(ValueError, match=match):
        kernel_regression(x, np.ones(5), **{**CFG, **kwargs})


def test_bad_shapes():
    with pytest.raises(ValueError, match="y_train must have shape"):
        kernel_regression(np.ones((5, 3)), np.ones(4), **CFG)
    with pytest.raises(ValueError, match="same feature dimension"):
        kernel_regression(np.ones((5, 3)), np.ones(5), np.ones((2, 4)), **CFG)
