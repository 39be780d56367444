"""NNGP and NTK-GP predictions, and the dynamics of linearised networks.

Conventions (docs/theory.md §3-4): the loss over m training points is
L = 1/(2m) sum_alpha ||f(x_alpha) - y_alpha||^2 and gradient descent is
theta <- theta - eta grad L, so function space moves with eta' = eta / m:

    gradient flow:     df/dt = -eta' Theta (f - Y)            decay D(t) = exp(-eta' Theta t)
    gradient descent:  f_{t+1} = f_t - eta' Theta (f_t - Y)   decay D(t) = (I - eta' Theta)^t

Lee et al. 2019 (arXiv 1902.06720) give the flow form; the discrete form is exact
for gradient descent on the linearised model. Flow time t and step count t are on
the same scale (t steps of size eta ~ time t).

Kernels are given as matrices; nothing here computes a kernel. Infinite-width
kernels (:func:`ntk_gp`, :func:`nngp_posterior`) are scalar, shape (m, m), and act
identically on each of the k output columns. Empirical kernels
(:func:`linearized_predict`) are the (m k, m k) sample-major matrices of
:func:`ntk_dist.models.empirical.ntk_matrix`, with functions stored as (m, k).

Linear algebra: the training NTK is eigendecomposed once, Theta = V diag(s) V^T
(O(m^3) time, O(m^2) memory, for (m k)^3 with empirical k-output kernels), so any
number of times costs O(T (N m + m^2)) more for the means and O(T N m^2) for the
covariances. The only quantity that needs Theta^{-1} is
Theta^{-1} (I - D(t)) = V diag((1 - d_i(t)) / s_i) V^T, which is finite for every
s_i >= 0 at finite t (its s -> 0 limit is eta' t) and needs s_i > 0 at t = inf.
The NNGP posterior uses a Cholesky factorisation of K + s^2 I. Neither forms an
explicit inverse.

Regulariser: ``diag_reg`` adds ``diag_reg * mean(diag(A))`` to the diagonal of each
training kernel A (Theta(X, X) and K(X, X)) before anything else; it is relative,
so one value suits kernels of any scale (neural-tangents' ``diag_reg`` with
``diag_reg_absolute_scale=False``). It changes the dynamics it regularises: leave
it at 0 to reproduce gradient descent exactly, and raise it (1e-10 .. 1e-4) when a
t = inf prediction reports a singular kernel.

Singular kernels (duplicated or nearly collinear inputs): where a solve is needed (the
NNGP posterior; the NTK-GP and linearised predictions at t = inf) and the kernel's
condition number exceeds 1 / sqrt(eps) of its dtype (``ntk_dist.theory.numerics``),
the smallest regulariser that fixes it is added on top of ``diag_reg`` and a
:class:`ntk_dist.NumericalWarning` says so (with advice to use float64 for a float32
kernel), so the result is finite, never NaN (``ntk_dist.theory.numerics``).
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

#: ``dynamics`` values: continuous gradient flow or discrete gradient descent.
DYNAMICS = ("flow", "gd")


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


class Trajectory(NamedTuple):
    """Outputs of the linearised network along training.

    Attributes:
      train: f_lin(X, t), shape ``(*T, m, k)``.
      test: f_lin(x*, t), shape ``(*T, N, k)``; ``None`` when no test points were given.
    """

    train: jnp.ndarray
    test: jnp.ndarray | None


# ---------------------------------------------------------------------------------
# Learning rates in our convention


def max_learning_rate(theta_train, *, num_outputs: int = 1) -> float:
    """Largest learning rate at which the linearised network converges: 2 / lambda_max.

    lambda_max is the top eigenvalue of Theta(X, X) / m (docs/theory.md §3), so under
    gradient descent on our loss, modes decay as (1 - eta lambda_i)^t and all of
    them shrink iff eta < 2 / lambda_max. Cost: one O((m k)^3) eigvalsh.

    Args:
      theta_train: training NTK, shape (m, m) (infinite width) or (m k, m k)
        (empirical, :func:`ntk_dist.models.empirical.ntk_matrix` layout).
      num_outputs: k, the number of output columns the rows of ``theta_train`` cover.

    Returns:
      eta_max_linear as a Python float.
    """
    _, lam_max = _extreme_sharpness(theta_train, num_outputs)
    return 2.0 / lam_max


def critical_learning_rate(theta_train, *, num_outputs: int = 1) -> float:
    """Lee et al.'s eta_critical = 2 / (lambda_min + lambda_max), in our convention.

    Lee et al. 2019 state it for df/dt = -eta Theta (f - Y) (no 1/m); with our loss
    their eta is ours divided by m, so here lambda are eigenvalues of Theta(X, X) / m.
    It is the step that minimises the slowest mode's contraction max_i |1 - eta lambda_i|
    (the two extreme modes then shrink at the same rate); the linearised model still
    converges up to :func:`max_learning_rate`.

    Args:
      theta_train: as in :func:`max_learning_rate`; must be positive definite.
      num_outputs: as in :func:`max_learning_rate`.

    Returns:
      eta_critical (ours) as a Python float.
    """
    lam_min, lam_max = _extreme_sharpness(theta_train, num_outputs)
    return 2.0 / (lam_min + lam_max)


def _extreme_sharpness(theta_train, num_outputs: int) -> tuple[float, float]:
    k = validate.positive_int(num_outputs, "num_outputs")
    theta = _kernel(theta_train, "theta_train")
    rows = theta.shape[0]
    if rows % k:
        raise ValueError(
            f"theta_train has {rows} rows, not a multiple of num_outputs={k}; pass the "
            "(m k, m k) ntk_matrix layout or the right num_outputs"
        )
    host = np.asarray(theta, dtype=np.float64)
    eigs = np.linalg.eigvalsh(0.5 * (host + host.T)) / (rows // k)
    if eigs[-1] <= 0:
        raise ValueError("theta_train has no positive eigenvalue; it is not an NTK Gram matrix")
    return float(eigs[0]), float(eigs[-1])


# ---------------------------------------------------------------------------------
# Predictions


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
    k_train = _kernel(k_train, "k_train")
    m = k_train.shape[0]
    y = _matrix(y_train, "y_train", rows=m)
    k_tx = _matrix(k_test_train, "k_test_train", cols=m)
    n = k_tx.shape[0]
    k_tt = _matrix(k_test_test, "k_test_test", rows=n, cols=n)

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
    a = _regularise(k_train, diag_reg) + noise_var * jnp.eye(m, dtype=k_train.dtype)
    chol = cho_factor(a, lower=True)
    mean = k_tx @ cho_solve(chol, y)
    half = solve_triangular(chol[0], k_tx.T, lower=True)  # L^{-1} K(X, x*), (m, N)
    pivots = jnp.diagonal(chol[0]) ** 2
    return jnp.all(jnp.isfinite(chol[0])), mean, _symmetrise(k_tt - half.T @ half), pivots


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
      diag_reg: relative diagonal regulariser of Theta(X, X) and K(X, X) (module docstring).

    Returns:
      :class:`GaussianPrediction` with mean ``(*T, N, k)`` and cov ``(*T, N, N)``.

    Raises:
      ValueError: naming the argument on bad shapes, non-finite entries, negative or
        (for gd) non-integer times, or a t = inf request that does not converge.
    """
    lr = validate.positive_float(lr, "lr")
    validate.choice(dynamics, "dynamics", DYNAMICS)
    diag_reg = validate.nonnegative_float(diag_reg, "diag_reg")
    theta = _kernel(theta_train, "theta_train")
    m = theta.shape[0]
    k_x = _kernel(k_train, "k_train", size=m)
    y = _matrix(y_train, "y_train", rows=m)
    theta_tx = _matrix(theta_test_train, "theta_test_train", cols=m)
    n = theta_tx.shape[0]
    k_tx = _matrix(k_test_train, "k_test_train", rows=n, cols=m)
    k_tt = _matrix(k_test_test, "k_test_test", rows=n, cols=n)
    times = _times(ts, dynamics)

    args = (theta, theta_tx, k_x, k_tx, k_tt, y, times, lr / m)
    eigs, mean, cov = _ntk_gp_core(*args, diag_reg, dynamics)
    if np.any(np.isinf(times)):
        extra = _inf_regulariser(np.asarray(eigs), theta, "theta_train")
        if extra:
            eigs, mean, cov = _ntk_gp_core(*args, diag_reg + extra, dynamics)
        _check_converges(np.asarray(eigs), lr / m, dynamics, "theta_train")
    shape = np.shape(ts)
    return GaussianPrediction(
        mean.reshape(shape + mean.shape[1:]), cov.reshape(shape + cov.shape[1:])
    )


@functools.partial(jax.jit, static_argnames="dynamics")
def _ntk_gp_core(theta, theta_tx, k_x, k_tx, k_tt, y, times, lr_eff, diag_reg, dynamics):
    eigs, vecs = jnp.linalg.eigh(_regularise(theta, diag_reg))
    k_x = _regularise(k_x, diag_reg)
    _, ratio = _decay(eigs, times, lr_eff, dynamics)  # (T, m)
    proj = theta_tx @ vecs  # Theta(x*, X) V, (N, m)
    a = jnp.einsum("nj,tj,ij->tni", proj, ratio, vecs)  # A(t), (T, N, m)
    cross = a @ k_tx.T  # A K(X, x*), (T, N, N)
    cov = k_tt + a @ k_x @ jnp.swapaxes(a, -1, -2) - cross - jnp.swapaxes(cross, -1, -2)
    return eigs, a @ y, _symmetrise(cov)


def linearized_predict(
    theta_train,
    f0_train,
    y_train,
    ts,
    theta_test_train=None,
    f0_test=None,
    *,
    lr: float,
    dynamics: str = "flow",
    diag_reg: float = 0.0,
) -> Trajectory:
    """Outputs of the network linearised at theta_0, trained on our loss (docs/theory.md §4).

    With the empirical NTK Theta_0 = Theta_hat(X, X) at init, eta' = lr / m and D(t)
    the decay of the module docstring (Lee et al. 2019)::

        f_lin(X, t)  = Y + D(t) (f_0(X) - Y)
        f_lin(x*, t) = f_0(x*) + Theta_0(x*, X) Theta_0^{-1} (I - D(t)) (Y - f_0(X))

    For discrete gradient descent (``dynamics="gd"``) these are the exact outputs of
    t gradient steps on the linearised model.

    Cost: one eigendecomposition of the (m k, m k) kernel, O((m k)^3); then
    O(T (m k)^2 + T N k m k) for T times.

    Args:
      theta_train: Theta_hat_0(X, X) in the sample-major (m k, m k) layout of
        :func:`ntk_dist.models.empirical.ntk_matrix`.
      f0_train: f(X; theta_0), shape (m, k).
      y_train: targets, shape (m, k).
      ts: times or step counts, as in :func:`ntk_gp`.
      theta_test_train: Theta_hat_0(x*, X), shape (N k, m k); ``None`` for train only.
      f0_test: f(x*; theta_0), shape (N, k); required with ``theta_test_train``.
      lr: learning rate eta > 0 of our loss.
      dynamics: ``"flow"`` or ``"gd"``.
      diag_reg: relative diagonal regulariser of Theta_hat_0(X, X) (module docstring).

    Returns:
      :class:`Trajectory` with train ``(*T, m, k)`` and test ``(*T, N, k)`` (or None).
    """
    lr = validate.positive_float(lr, "lr")
    validate.choice(dynamics, "dynamics", DYNAMICS)
    diag_reg = validate.nonnegative_float(diag_reg, "diag_reg")
    theta = _kernel(theta_train, "theta_train")
    y = _matrix(y_train, "y_train")
    m, k = y.shape
    if theta.shape[0] != m * k:
        raise ValueError(
            f"theta_train has shape {tuple(theta.shape)} but y_train {tuple(y.shape)} needs "
            f"({m * k}, {m * k}) = (m k, m k); build it with ntk_matrix(empirical_ntk(...))"
        )
    f0 = _matrix(f0_train, "f0_train", rows=m, cols=k)
    if (theta_test_train is None) != (f0_test is None):
        raise ValueError("theta_test_train and f0_test go together: pass both or neither")
    theta_tx = f0_t = None
    if theta_test_train is not None:
        theta_tx = _matrix(theta_test_train, "theta_test_train", cols=m * k)
        if theta_tx.shape[0] % k:
            raise ValueError(
                f"theta_test_train has {theta_tx.shape[0]} rows, not a multiple of k={k}; "
                "pass ntk_matrix(empirical_ntk(model, params, x_test, x_train))"
            )
        f0_t = _matrix(f0_test, "f0_test", rows=theta_tx.shape[0] // k, cols=k)
    times = _times(ts, dynamics)

    args = (theta, f0, y, theta_tx, f0_t, times, lr / m)
    eigs, train, test = _linearized_core(*args, diag_reg, dynamics)
    if np.any(np.isinf(times)):
        extra = _inf_regulariser(np.asarray(eigs), theta, "theta_train")
        if extra:
            eigs, train, test = _linearized_core(*args, diag_reg + extra, dynamics)
        _check_converges(np.asarray(eigs), lr / m, dynamics, "theta_train")
    shape = np.shape(ts)
    train = train.reshape(shape + (m, k))
    return Trajectory(train, None if test is None else test.reshape(shape + f0_t.shape))


@functools.partial(jax.jit, static_argnames="dynamics")
def _linearized_core(theta, f0, y, theta_tx, f0_t, times, lr_eff, diag_reg, dynamics):
    eigs, vecs = jnp.linalg.eigh(_regularise(theta, diag_reg))
    decay, ratio = _decay(eigs, times, lr_eff, dynamics)  # (T, m k)
    resid = vecs.T @ (f0 - y).reshape(-1)  # V^T (f_0 - Y), (m k,)
    train = y.reshape(-1) + (decay * resid) @ vecs.T  # (T, m k)
    if theta_tx is None:
        return eigs, train, None
    return eigs, train, f0_t.reshape(-1) - (ratio * resid) @ (theta_tx @ vecs).T  # (T, N k)


# ---------------------------------------------------------------------------------
# Helpers


def _decay(eigs, times, lr_eff, dynamics: str):
    """Per-mode decay d_i(t) and (1 - d_i(t)) / s_i for eigenvalues s_i of Theta.

    Returns two arrays of shape (T, m). Accurate for small s_i: expm1/log1p keep
    (1 - d) / s at relative precision, and s_i = 0 takes the limit eta' t. At
    t = inf, d = 0 and the ratio is 1 / s_i; the caller checks that this limit
    exists (:func:`_check_converges`).
    """
    dtype = eigs.dtype
    s = eigs[None, :]
    t = times.astype(dtype)[:, None]
    finite = jnp.isfinite(t)
    t0 = jnp.where(finite, t, 0.0)  # keeps inf out of the arithmetic below
    a = lr_eff * s
    if dynamics == "flow":
        one_minus = -jnp.expm1(-a * t0)
    else:
        base = 1.0 - a
        smooth = -jnp.expm1(t0 * jnp.log1p(-jnp.minimum(a, 0.5)))
        odd = jnp.mod(t0, 2.0) == 1.0
        sign = jnp.where((base < 0) & odd, -1.0, 1.0)
        one_minus = jnp.where(a < 0.5, smooth, 1.0 - sign * jnp.abs(base) ** t0)
    safe_s = jnp.where(s == 0, 1.0, s)
    ratio = jnp.where(s == 0, lr_eff * t0, one_minus / safe_s)
    ratio = jnp.where(finite, ratio, 1.0 / safe_s)
    one_minus = jnp.where(finite, one_minus, 1.0)
    return (1.0 - one_minus).astype(dtype), ratio.astype(dtype)


def _inf_regulariser(eigs: np.ndarray, theta, name: str) -> float:
    """Extra relative diag_reg that makes ``theta`` well conditioned for t = inf, with a
    :class:`NumericalWarning`; 0 when it already is, or when it is indefinite beyond
    rounding (then :func:`_check_converges` refuses it)."""
    lam_min, lam_max = float(eigs.min()), float(eigs.max())
    if not numerics.ill_conditioned(lam_min, lam_max, eigs.dtype):
        return 0.0
    mean_diag = float(np.trace(np.asarray(theta))) / eigs.size
    r = numerics.jitter(eigs.sum(), eigs.dtype)
    if mean_diag <= 0 or lam_min < -r:
        return 0.0
    numerics.warn_regularised(name, numerics.condition(lam_min, lam_max), r, mean_diag, eigs.dtype)
    return r / mean_diag


def _check_converges(eigs: np.ndarray, lr_eff: float, dynamics: str, name: str) -> None:
    # Numerical rank cut-off as in numpy.linalg.matrix_rank.
    cutoff = eigs.size * np.finfo(eigs.dtype).eps * max(abs(eigs).max(), 1e-300)
    if eigs.min() <= cutoff:
        raise ValueError(
            f"{name} is singular or indefinite (smallest eigenvalue {eigs.min():.3g}), so t = inf "
            "has no unique limit; pass diag_reg > 0 (e.g. 1e-8) or finite times"
        )
    if dynamics == "gd" and lr_eff * eigs.max() >= 2:
        raise ValueError(
            f"lr * lambda_max = {lr_eff * eigs.max():.6g} >= 2 (lambda of {name} / m), so "
            "gradient descent diverges and t = inf has no limit; use lr < "
            "max_learning_rate(theta_train) or finite times"
        )


def _times(ts, dynamics: str) -> np.ndarray:
    arr = np.asarray(ts)
    if arr.ndim > 1 or not np.issubdtype(arr.dtype, np.number) or arr.size == 0:
        raise ValueError(f"ts must be a number or a non-empty 1-D array of times, got {ts!r}")
    arr = np.atleast_1d(arr).astype(np.float64)
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError(f"ts must be >= 0 (inf allowed), got {ts!r}")
    if dynamics == "gd":
        fin = arr[np.isfinite(arr)]
        if np.any(fin != np.round(fin)):
            raise ValueError(
                f"ts are step counts for dynamics='gd' and must be integers (or inf), got {ts!r}; "
                "use dynamics='flow' for continuous time"
            )
    return arr


def _matrix(a, name: str, *, rows: int | None = None, cols: int | None = None):
    """Check a finite 2-D array on the host; return it as a floating JAX array."""
    host = np.asarray(a)
    if host.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array, got shape {host.shape}; "
            "reshape targets or outputs to (m, k)"
        )
    if rows is not None and host.shape[0] != rows or cols is not None and host.shape[1] != cols:
        want = f"({rows if rows is not None else '*'}, {cols if cols is not None else '*'})"
        raise ValueError(
            f"{name} has shape {host.shape}, expected {want} to match the other arguments"
        )
    if not np.issubdtype(host.dtype, np.floating):
        host = host.astype(jnp.result_type(float))
    if not np.all(np.isfinite(host)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return jnp.asarray(a, dtype=host.dtype)


def _kernel(a, name: str, *, size: int | None = None):
    """A finite, square matrix, symmetric to sqrt(eps) of its largest entry.

    The tolerance admits the rounding of Gram matrices summed over many parameters
    in float32 (J J^T is not bitwise symmetric) and still catches a cross kernel
    passed in place of a training kernel. The cores symmetrise before use.
    """
    arr = _matrix(a, name, rows=size, cols=size)
    host = np.asarray(arr)
    if host.shape[0] != host.shape[1]:
        raise ValueError(f"{name} must be square, got shape {host.shape}")
    tol = np.sqrt(np.finfo(host.dtype).eps) * max(float(np.abs(host).max()), 1e-300)
    if np.abs(host - host.T).max() > tol:
        raise ValueError(f"{name} must be symmetric (a kernel Gram matrix of the training set)")
    return arr


def _symmetrise(a):
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def _regularise(a, diag_reg):
    """Symmetrise, then add diag_reg * mean(diag(a)) to the diagonal (exact no-op at 0)."""
    n = a.shape[0]
    return _symmetrise(a) + diag_reg * jnp.trace(a) / n * jnp.eye(n, dtype=a.dtype)
