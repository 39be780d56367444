"""Infinite-width predictions: the NNGP posterior, the NTK-GP and the NNGP dynamics of
readout-only training (docs/theory.md §4).

All take the infinite-width kernels as matrices (:func:`ntk_dist.fc_kernel` computes
them); they are scalar, shape (m, m), and act identically on each of the k output
columns. The conventions (loss, eta' = eta / m, the decay D(t) of gradient flow and
gradient descent), the relative regulariser ``diag_reg`` and the rule for singular
kernels are those of :mod:`ntk_dist.theory.predict`, whose building blocks these
functions share.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve, solve_triangular

from ntk_dist.core import validate
from ntk_dist.theory import numerics
from ntk_dist.theory.predict import (
    as_kernel,
    as_matrix,
    check_options,
    check_times,
    mode_decay,
    regularise,
    solve_in_eigenbasis,
    symmetrise,
)


class GaussianPrediction(NamedTuple):
    """Mean and covariance of a Gaussian over function values at N test points.

    Attributes:
      mean: shape ``(*T, N, k)``; ``*T`` is the shape of the requested times
        (empty for the NNGP posterior or a scalar time).
      cov: shape ``(*T, N, N)``, shared by all k output columns (the infinite-width
        kernels are diagonal in the outputs).
    """

    mean: jnp.ndarray
    cov: jnp.ndarray


def nngp_posterior(
    k_train,
    k_test_train,
    k_test_test,
    y_train,
    *,
    noise_var: float = 0.0,
    diag_reg: float = 0.0,
) -> GaussianPrediction:
    """Exact Bayesian (NNGP) posterior with Gaussian observation noise (docs/theory.md §4).

    mean = K(x*, X) (K + s^2 I)^{-1} Y,  cov = K(x*, x*) - K(x*, X) (K + s^2 I)^{-1} K(X, x*).

    Cholesky of K + s^2 I (+ the relative ``diag_reg``, module docstring):
    O(m^3 + N m^2 + N^2 m) time, O(m^2 + N m + N^2) memory.

    Args:
      k_train: K(X, X), shape (m, m), symmetric PSD.
      k_test_train: K(x*, X), shape (N, m).
      k_test_test: K(x*, x*), shape (N, N).
      y_train: targets, shape (m, k).
      noise_var: s^2 >= 0, the label-noise variance (0: interpolate).
      diag_reg: relative diagonal regulariser >= 0 (module docstring).

    Returns:
      :class:`GaussianPrediction` with mean (N, k) and cov (N, N) of the latent f(x*)
      (add s^2 I to cov for noisy observations).
    """
    noise_var = validate.nonnegative_float(noise_var, "noise_var")
    diag_reg = validate.nonnegative_float(diag_reg, "diag_reg")
    k_train = as_kernel(k_train, "k_train")
    m = k_train.shape[0]
    y = as_matrix(y_train, "y_train", rows=m)
    k_tx = as_matrix(k_test_train, "k_test_train", cols=m)
    n = k_tx.shape[0]
    k_tt = as_matrix(k_test_test, "k_test_test", rows=n, cols=n)

    factored, mean, cov, pivots = _nngp_core(k_train, k_tx, k_tt, y, noise_var, diag_reg)
    # diag(L)^2 of the Cholesky factor lies within A's eigenvalue range: a cheap lower
    # bound on cond(A) (NaN when the factorisation failed).
    lam = np.asarray(pivots)
    dtype = lam.dtype
    if not factored or numerics.ill_conditioned(lam.min(), lam.max(), dtype):
        mean_diag = float(np.trace(np.asarray(k_train))) / m
        r = numerics.jitter(m * (mean_diag * (1 + diag_reg) + noise_var), dtype)
        for extra in (r, 10 * r, 100 * r) if mean_diag > 0 else ():
            factored, mean, cov, _ = _nngp_core(
                k_train, k_tx, k_tt, y, noise_var, diag_reg + extra / mean_diag
            )
            if factored:
                cond = numerics.condition(lam.min(), lam.max())
                numerics.warn_regularised("k_train", cond, extra, mean_diag, dtype)
                break
    if not factored:
        raise ValueError(
            "k_train + noise_var * I is not positive definite; pass noise_var > 0 or diag_reg > 0"
        )
    return GaussianPrediction(mean, cov)


@jax.jit
def _nngp_core(k_train, k_tx, k_tt, y, noise_var, diag_reg):
    m = k_train.shape[0]
    a = regularise(k_train, diag_reg) + noise_var * jnp.eye(m, dtype=k_train.dtype)
    chol = cho_factor(a, lower=True)
    mean = k_tx @ cho_solve(chol, y)
    half = solve_triangular(chol[0], k_tx.T, lower=True)  # L^{-1} K(X, x*), (m, N)
    pivots = jnp.diagonal(chol[0]) ** 2
    return jnp.all(jnp.isfinite(chol[0])), mean, symmetrise(k_tt - half.T @ half), pivots


def ntk_gp(
    theta_train,
    theta_test_train,
    k_train,
    k_test_train,
    k_test_test,
    y_train,
    ts,
    *,
    lr: float,
    dynamics: str = "flow",
    diag_reg: float = 0.0,
) -> GaussianPrediction:
    """NTK-GP: distribution over random init of infinite-width networks trained for time t.

    With eta' = lr / m and D(t) the decay of the module docstring (docs/theory.md §4,
    Lee et al. 2019)::

        A(t)    = Theta(x*, X) Theta^{-1} (I - D(t))
        mean(t) = A(t) Y
        cov(t)  = K(x*, x*) + A(t) K A(t)^T - (A(t) K(X, x*) + transpose)

    t = 0 gives the prior (mean 0, cov K(x*, x*)); t = inf gives kernel regression
    with the NTK (D = 0 for flow, and for gd when 0 < lr lambda_i < 2). The same
    formulas evaluated at x* = X give the training-set distribution.

    Cost: one eigendecomposition of Theta(X, X), then O(T N m^2 + T N^2 m) time and
    O(T N (m + N)) memory for T times.

    Args:
      theta_train: Theta(X, X), shape (m, m), symmetric PSD.
      theta_test_train: Theta(x*, X), shape (N, m).
      k_train: NNGP K(X, X), shape (m, m).
      k_test_train: K(x*, X), shape (N, m).
      k_test_test: K(x*, x*), shape (N, N).
      y_train: targets, shape (m, k).
      ts: times, a scalar or 1-D array of values >= 0, ``inf`` allowed; for
        ``dynamics="gd"`` they are step counts (non-negative integers or ``inf``).
      lr: learning rate eta > 0 of our loss (docs/theory.md §3).
      dynamics: ``"flow"`` (gradient flow) or ``"gd"`` (discrete gradient descent).
      diag_reg: relative diagonal regulariser of Theta(X, X) only, as neural-tangents'
        ``diag_reg`` in ``gradient_descent_mse_ensemble`` (module docstring); K(X, X)
        enters the covariance unregularised.

    Returns:
      :class:`GaussianPrediction` with mean ``(*T, N, k)`` and cov ``(*T, N, N)``.

    Raises:
      ValueError: naming the argument on bad shapes, non-finite entries, negative or
        (for gd) non-integer times, or a t = inf request that does not converge.
    """
    lr, diag_reg = check_options(lr, dynamics, diag_reg)
    theta = as_kernel(theta_train, "theta_train")
    m = theta.shape[0]
    k_x = as_kernel(k_train, "k_train", size=m)
    y = as_matrix(y_train, "y_train", rows=m)
    theta_tx = as_matrix(theta_test_train, "theta_test_train", cols=m)
    n = theta_tx.shape[0]
    k_tx = as_matrix(k_test_train, "k_test_train", rows=n, cols=m)
    k_tt = as_matrix(k_test_test, "k_test_test", rows=n, cols=n)
    return _trained_gp(theta, theta_tx, k_x, k_tx, k_tt, y, ts, lr, dynamics, diag_reg)


def nngp_gp(
    k_train,
    k_test_train,
    k_test_test,
    y_train,
    ts,
    *,
    lr: float,
    dynamics: str = "flow",
    diag_reg: float = 0.0,
) -> GaussianPrediction:
    """NNGP dynamics: infinite-width networks whose readout layer alone is trained.

    neural-tangents' ``gradient_descent_mse_ensemble(..., get='nngp')``. Training only
    the readout (weights and bias) of an infinitely wide network is gradient descent on
    a linear model whose tangent kernel is the NNGP K itself, so this is :func:`ntk_gp`
    with Theta replaced by K (docs/theory.md §4)::

        mean(t) = K(x*, X) K^{-1} (I - D(t)) Y
        cov(t)  = K(x*, x*) - K(x*, X) K^{-1} (I - D(t)^2) K(X, x*)

    with D(t) = exp(-eta' K t) (flow) or (I - eta' K)^t (gd), eta' = lr / m. t = 0
    gives the prior; t = inf the NNGP posterior without noise (:func:`nngp_posterior`).

    Cost: one eigendecomposition of K(X, X), then as :func:`ntk_gp`.

    Args:
      k_train: K(X, X), shape (m, m), symmetric PSD.
      k_test_train: K(x*, X), shape (N, m).
      k_test_test: K(x*, x*), shape (N, N).
      y_train: targets, shape (m, k).
      ts: times as in :func:`ntk_gp` (step counts for ``dynamics="gd"``).
      lr: learning rate eta > 0 of our loss (docs/theory.md §3).
      dynamics: ``"flow"`` or ``"gd"``.
      diag_reg: relative diagonal regulariser of K(X, X) >= 0, in both of its roles
        (the dynamics and the covariance), as neural-tangents' ``diag_reg`` with
        ``get='nngp'``; at t = inf the result is then
        ``nngp_posterior(..., diag_reg=diag_reg)``.

    Returns:
      :class:`GaussianPrediction` with mean ``(*T, N, k)`` and cov ``(*T, N, N)``.

    Raises:
      ValueError: as :func:`ntk_gp`, naming the ``k_*`` arguments.
    """
    lr, diag_reg = check_options(lr, dynamics, diag_reg)
    k_x = as_kernel(k_train, "k_train")
    m = k_x.shape[0]
    y = as_matrix(y_train, "y_train", rows=m)
    k_tx = as_matrix(k_test_train, "k_test_train", cols=m)
    n = k_tx.shape[0]
    k_tt = as_matrix(k_test_test, "k_test_test", rows=n, cols=n)
    k_reg = regularise(k_x, diag_reg)
    return _trained_gp(k_x, k_tx, k_reg, k_tx, k_tt, y, ts, lr, dynamics, diag_reg, "k_train")


def _trained_gp(
    theta, theta_tx, k_x, k_tx, k_tt, y, ts, lr, dynamics, diag_reg, name="theta_train"
):
    """The NTK-GP at times ``ts`` of checked matrices (docs/theory.md §4)."""
    times = check_times(ts, dynamics)
    args = (theta, theta_tx, k_x, k_tx, k_tt, y, times, lr / theta.shape[0])
    mean, cov = solve_in_eigenbasis(_ntk_gp_core, args, diag_reg, dynamics, name)
    shape = np.shape(ts)
    return GaussianPrediction(
        mean.reshape(shape + mean.shape[1:]), cov.reshape(shape + cov.shape[1:])
    )


@functools.partial(jax.jit, static_argnames="dynamics")
def _ntk_gp_core(theta, theta_tx, k_x, k_tx, k_tt, y, times, lr_eff, diag_reg, dynamics):
    eigs, vecs = jnp.linalg.eigh(regularise(theta, diag_reg))
    k_x = symmetrise(k_x)
    _, ratio = mode_decay(eigs, times, lr_eff, dynamics)  # (T, m)
    proj = theta_tx @ vecs  # Theta(x*, X) V, (N, m)
    a = jnp.einsum("nj,tj,ij->tni", proj, ratio, vecs)  # A(t), (T, N, m)
    cross = a @ k_tx.T  # A K(X, x*), (T, N, N)
    cov = k_tt + a @ k_x @ jnp.swapaxes(a, -1, -2) - cross - jnp.swapaxes(cross, -1, -2)
    return eigs, a @ y, symmetrise(cov)
