"""The dynamics of linearised networks: outputs along training and learning rates.

The infinite-width predictions (NNGP posterior, NTK-GP) live in
:mod:`ntk_dist.theory.gp`; they share the conventions below and this module's
building blocks (the decay D(t), time and matrix checks, the regulariser).

Conventions (docs/theory.md §3-4): the loss over m training points is
L = 1/(2m) sum_alpha ||f(x_alpha) - y_alpha||^2 and gradient descent is
theta <- theta - eta grad L, so function space moves with eta' = eta / m:

    gradient flow:     df/dt = -eta' Theta (f - Y)            decay D(t) = exp(-eta' Theta t)
    gradient descent:  f_{t+1} = f_t - eta' Theta (f_t - Y)   decay D(t) = (I - eta' Theta)^t

Lee et al. 2019 (arXiv 1902.06720) give the flow form; the discrete form is exact
for gradient descent on the linearised model. Flow time t and step count t are on
the same scale (t steps of size eta ~ time t).

Kernels are given as matrices; nothing here computes a kernel. Infinite-width
kernels (:func:`ntk_dist.ntk_gp`, :func:`ntk_dist.nngp_posterior`) are scalar, shape (m, m), and act
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

Regulariser: ``diag_reg`` adds ``diag_reg * mean(diag(A))`` to the diagonal of the
kernel A that is solved with (Theta(X, X) in the linearised and NTK-GP dynamics, where
K(X, X) enters the covariance unregularised; K(X, X) in the NNGP posterior) before
anything else; it is relative,
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

from ntk_dist.core import validate
from ntk_dist.theory import numerics

#: ``dynamics`` values: continuous gradient flow or discrete gradient descent.
DYNAMICS = ("flow", "gd")


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
    theta = as_kernel(theta_train, "theta_train")
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
# Outputs of the linearised network along training


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
      ts: times or step counts, as in :func:`ntk_dist.ntk_gp`.
      theta_test_train: Theta_hat_0(x*, X), shape (N k, m k); ``None`` for train only.
      f0_test: f(x*; theta_0), shape (N, k); required with ``theta_test_train``.
      lr: learning rate eta > 0 of our loss.
      dynamics: ``"flow"`` or ``"gd"``.
      diag_reg: relative diagonal regulariser of Theta_hat_0(X, X) (module docstring).

    Returns:
      :class:`Trajectory` with train ``(*T, m, k)`` and test ``(*T, N, k)`` (or None).
    """
    lr, diag_reg = check_options(lr, dynamics, diag_reg)
    theta = as_kernel(theta_train, "theta_train")
    y = as_matrix(y_train, "y_train")
    m, k = y.shape
    if theta.shape[0] != m * k:
        raise ValueError(
            f"theta_train has shape {tuple(theta.shape)} but y_train {tuple(y.shape)} needs "
            f"({m * k}, {m * k}) = (m k, m k); build it with ntk_matrix(empirical_ntk(...))"
        )
    f0 = as_matrix(f0_train, "f0_train", rows=m, cols=k)
    if (theta_test_train is None) != (f0_test is None):
        raise ValueError("theta_test_train and f0_test go together: pass both or neither")
    theta_tx = f0_t = None
    if theta_test_train is not None:
        theta_tx = as_matrix(theta_test_train, "theta_test_train", cols=m * k)
        if theta_tx.shape[0] % k:
            raise ValueError(
                f"theta_test_train has {theta_tx.shape[0]} rows, not a multiple of k={k}; "
                "pass ntk_matrix(empirical_ntk(model, params, x_test, x_train))"
            )
        f0_t = as_matrix(f0_test, "f0_test", rows=theta_tx.shape[0] // k, cols=k)
    times = check_times(ts, dynamics)

    args = (theta, f0, y, theta_tx, f0_t, times, lr / m)
    train, test = solve_in_eigenbasis(_linearized_core, args, diag_reg, dynamics)
    shape = np.shape(ts)
    train = train.reshape(shape + (m, k))
    return Trajectory(train, None if test is None else test.reshape(shape + f0_t.shape))


@functools.partial(jax.jit, static_argnames="dynamics")
def _linearized_core(theta, f0, y, theta_tx, f0_t, times, lr_eff, diag_reg, dynamics):
    eigs, vecs = jnp.linalg.eigh(regularise(theta, diag_reg))
    decay, ratio = mode_decay(eigs, times, lr_eff, dynamics)  # (T, m k)
    resid = vecs.T @ (f0 - y).reshape(-1)  # V^T (f_0 - Y), (m k,)
    train = y.reshape(-1) + (decay * resid) @ vecs.T  # (T, m k)
    if theta_tx is None:
        return eigs, train, None
    return eigs, train, f0_t.reshape(-1) - (ratio * resid) @ (theta_tx @ vecs).T  # (T, N k)


# ---------------------------------------------------------------------------------
# Building blocks, shared with ntk_dist.theory.gp


def mode_decay(eigs, times, lr_eff, dynamics: str):
    """Per-mode decay d_i(t) and (1 - d_i(t)) / s_i for eigenvalues s_i of Theta.

    Returns two arrays of shape (T, m). Accurate for small s_i: expm1/log1p keep
    (1 - d) / s at relative precision, and s_i = 0 takes the limit eta' t. At
    t = inf, d = 0 and the ratio is 1 / s_i; the caller checks that this limit
    exists (:func:`check_converges`).
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


def solve_in_eigenbasis(
    core, args: tuple, diag_reg: float, dynamics: str, name: str = "theta_train"
) -> tuple:
    """Run ``core(*args, diag_reg, dynamics)`` (returning ``(eigs, *results)`` for the
    kernel ``args[0]``, times ``args[-2]`` and rate eta / m ``args[-1]``); when a time is
    infinite, add the regulariser a singular kernel needs (:func:`inf_regulariser`) and
    check that the dynamics converge, naming the kernel ``name`` in warnings and errors.
    Returns ``results``."""
    theta, times, rate = args[0], args[-2], args[-1]
    eigs, *results = core(*args, diag_reg, dynamics)
    if np.any(np.isinf(times)):
        extra = inf_regulariser(np.asarray(eigs), theta, name)
        if extra:
            eigs, *results = core(*args, diag_reg + extra, dynamics)
        check_converges(np.asarray(eigs), rate, dynamics, name)
    return tuple(results)


def inf_regulariser(eigs: np.ndarray, theta, name: str) -> float:
    """Extra relative diag_reg that makes ``theta`` well conditioned for t = inf, with a
    :class:`NumericalWarning`; 0 when it already is, or when it is indefinite beyond
    rounding (then :func:`check_converges` refuses it)."""
    lam_min, lam_max = float(eigs.min()), float(eigs.max())
    if not numerics.ill_conditioned(lam_min, lam_max, eigs.dtype):
        return 0.0
    mean_diag = float(np.trace(np.asarray(theta))) / eigs.size
    r = numerics.jitter(eigs.sum(), eigs.dtype)
    if mean_diag <= 0 or lam_min < -r:
        return 0.0
    numerics.warn_regularised(name, numerics.condition(lam_min, lam_max), r, mean_diag, eigs.dtype)
    return r / mean_diag


def check_options(lr, dynamics: str, diag_reg) -> tuple[float, float]:
    """The validated ``(lr, diag_reg)`` of a training-dynamics prediction; ValueError
    naming ``lr``, ``dynamics`` or ``diag_reg``."""
    lr = validate.positive_float(lr, "lr")
    validate.choice(dynamics, "dynamics", DYNAMICS)
    return lr, validate.nonnegative_float(diag_reg, "diag_reg")


def check_converges(eigs: np.ndarray, lr_eff: float, dynamics: str, name: str) -> None:
    """Refuse a t = inf request whose limit does not exist (ValueError naming ``name``):
    a singular or indefinite kernel, or gradient descent with lr' lambda_max >= 2."""
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


def check_times(ts, dynamics: str) -> np.ndarray:
    """``ts`` as a 1-D float64 array of times >= 0 (``inf`` allowed; integers for gd)."""
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


def as_matrix(a, name: str, *, rows: int | None = None, cols: int | None = None):
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


def as_kernel(a, name: str, *, size: int | None = None):
    """A finite, square matrix, symmetric to sqrt(eps) of its largest entry.

    The tolerance admits the rounding of Gram matrices summed over many parameters
    in float32 (J J^T is not bitwise symmetric) and still catches a cross kernel
    passed in place of a training kernel. The cores symmetrise before use.
    """
    arr = as_matrix(a, name, rows=size, cols=size)
    host = np.asarray(arr)
    if host.shape[0] != host.shape[1]:
        raise ValueError(f"{name} must be square, got shape {host.shape}")
    tol = np.sqrt(np.finfo(host.dtype).eps) * max(float(np.abs(host).max()), 1e-300)
    if np.abs(host - host.T).max() > tol:
        raise ValueError(f"{name} must be symmetric (a kernel Gram matrix of the training set)")
    return arr


def symmetrise(a):
    """(a + a^T) / 2 over the last two axes."""
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def regularise(a, diag_reg):
    """Symmetrise, then add diag_reg * mean(diag(a)) to the diagonal (exact no-op at 0)."""
    n = a.shape[0]
    return symmetrise(a) + diag_reg * jnp.trace(a) / n * jnp.eye(n, dtype=a.dtype)
