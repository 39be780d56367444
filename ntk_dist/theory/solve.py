"""Kernel regression (NNGP / NTK-GP posterior means) at scale.

Both paths solve the same regularised system

    (K + r I) alpha = y,   r = diag_reg * mean(diag K)

(a relative ridge, as neural-tangents' ``diag_reg`` with
``diag_reg_absolute_scale=False``; ``diag_reg = 0`` gives the exact
interpolating NTK-GP mean when K is well conditioned), and predict
``mean = K(x_test, X) alpha`` (Lee et al. 2019, Eq. 16 at t -> infinity).

- ``"dense"``: builds K (N^2 memory), Cholesky in O(N^3 / 3) flops; falls back
  to ``eigh`` (eigenvalues clipped at r) when K + r I is not numerically
  positive definite.
- ``"cg"``: matrix-free. Each product K V recomputes K in B x B blocks of at most
  ``block_bytes``, only the blocks i <= j, each applied to both sides
  (K_ij V_j and K_ij^T V_i): N^2 / 2 kernel entries, O(N^2 (d + L) / 2) flops per
  product, O(B^2 + N m) memory, K never stored. Preconditioned conjugate gradients
  with a preconditioner built from the rank-``rank`` Nystrom approximation
  K ~= K_nm K_mm^{-1} K_mn on uniformly drawn landmarks (Williams & Seeger 2001)
  in the form of Frangella, Tropp & Udell 2023 (:func:`nystrom_preconditioner`),
  O(N rank) per iteration.

Choosing ``rank``: on inputs in d dimensions the FC kernels' large eigenvalues
come in spherical-harmonic groups of sizes 1, d, d (d + 1) / 2 - 1, ... (degrees
0, 1, 2); a rank beyond the first three groups (560 for d = 32) leaves a flat tail,
and CG then needs a few tens of iterations instead of a few hundred
(bench/RESULTS.md: N = 20,000, d = 32, rank 2000: 21 iterations to 1e-7).
``tol`` is CG's own (recursive) residual; it tracks the true residual
||y - (K + r I) alpha|| / ||y|| to rounding, so a target residual t is met with
``tol = t / 10`` (the margin covers recursion drift and the rounding of
recomputed kernel entries).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ntk_dist.core import validate
from ntk_dist.core.dtypes import require_x64
from ntk_dist.core.tiling import tile_for_bytes, tiles
from ntk_dist.theory import numerics
from ntk_dist.theory.architecture import FC, resolve
from ntk_dist.theory.kernels import fc_kernel

METHODS = ("auto", "dense", "cg")
#: "auto" uses the dense path up to this many training points.
DENSE_MAX = 8192


class CGResult(NamedTuple):
    """Result of :func:`pcg`.

    Attributes:
      x: solution, shape of b.
      iterations: CG iterations run.
      residuals: relative residual ||b - A x|| / ||b|| after each iteration (worst column).
      converged: whether the last residual is <= tol.
    """

    x: np.ndarray
    iterations: int
    residuals: np.ndarray
    converged: bool


class Regression(NamedTuple):
    """Result of :func:`kernel_regression`.

    Attributes:
      mean: posterior mean at x_test, shape (N_test, m), or None without x_test.
      alpha: (K + r I)^{-1} y, shape (N, m).
      method: "dense" or "cg".
      iterations: CG iterations (0 for dense).
      residual: final relative residual ||y - (K + r I) alpha|| / ||y|| (CG: its own
        recursion's estimate; dense: not computed, nan).
      residuals: per-iteration residuals of CG (empty for dense).
    """

    mean: np.ndarray | None
    alpha: np.ndarray
    method: str
    iterations: int
    residual: float
    residuals: np.ndarray


def pcg(matvec, b, *, precond=None, tol: float = 1e-8, maxiter: int = 1000) -> CGResult:
    """Preconditioned conjugate gradients for a symmetric positive definite A.

    Args:
      matvec: V -> A V for V of shape (N, m).
      b: right-hand sides, shape (N,) or (N, m); the m columns run together
        (one A V product per iteration for all of them).
      precond: V -> P^{-1} V, or None.
      tol: stop when every column's relative residual is <= tol.
      maxiter: most iterations.

    Returns:
      :class:`CGResult`.
    """
    b = np.asarray(b, dtype=np.float64)
    vec = b.ndim == 1
    b2 = b[:, None] if vec else b
    precond = precond or (lambda v: v)
    bnorm = np.linalg.norm(b2, axis=0)
    bnorm[bnorm == 0] = 1.0
    x = np.zeros_like(b2)
    r = b2.copy()
    z = precond(r)
    p = z.copy()
    rz = np.sum(r * z, axis=0)
    history = []
    it = 0
    while it < maxiter:
        res = np.max(np.linalg.norm(r, axis=0) / bnorm)
        if res <= tol:
            break
        ap = matvec(p)
        step = rz / np.sum(p * ap, axis=0)
        x += step * p
        r -= step * ap
        z = precond(r)
        rz_new = np.sum(r * z, axis=0)
        p = z + (rz_new / rz) * p
        rz = rz_new
        it += 1
        history.append(np.max(np.linalg.norm(r, axis=0) / bnorm))
    residuals = np.asarray(history)
    final = residuals[-1] if it else np.max(np.linalg.norm(r, axis=0) / bnorm)
    return CGResult(x[:, 0] if vec else x, it, residuals, bool(final <= tol))


def nystrom_factor(
    x, rank: int, arch: FC | None = None, *, get, seed: int = 0, **fields
) -> np.ndarray:
    """Nystrom factor L with K ~= L L^T = K_nm K_mm^{-1} K_mn on ``rank`` random landmarks.

    Args:
      x: inputs, shape (N, d).
      rank: number of landmarks m (uniform without replacement, ``seed``).
      arch, **fields: the architecture, as in :func:`ntk_dist.fc_kernel`.
      get: the kernel, one kind: ``("ntk",)`` or ``("nngp",)``.

    Returns:
      L, shape (N, r), r <= m (directions of K_mm below 1e-12 of its top eigenvalue
      are dropped). Cost: one N x m kernel block plus O(N m^2) flops.
    """
    arch = resolve(arch, fields)
    (kind,) = get
    n = x.shape[0]
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(rank, n), replace=False))
    k_nm = np.asarray(getattr(fc_kernel(x, x[idx], arch, get=get), kind), dtype=np.float64)
    w, v = np.linalg.eigh(k_nm[idx])
    keep = w > 1e-12 * w.max()
    return k_nm @ (v[:, keep] / np.sqrt(w[keep]))


def nystrom_preconditioner(low_rank: np.ndarray, shift: float):
    """V -> P^{-1} V for the Nystrom preconditioner of K + shift I, O(N r) per call.

    With L L^T = U diag(lam) U^T (U orthonormal, N x r; lam sorted, smallest lam_r),
    P = U diag(lam + shift) U^T / (lam_r + shift) + (I - U U^T), so

        P^{-1} = (lam_r + shift) U diag(lam + shift)^{-1} U^T + (I - U U^T)

    (Frangella, Tropp & Udell 2023, "Randomized Nystrom preconditioning"). Off
    range(U), K + shift I is scaled by 1 / (lam_r + shift) rather than by 1 / shift
    as with P = L L^T + shift I, so the preconditioned spectrum lies in about
    [(lam_min + shift) / (lam_r + shift), 1 + ...] instead of spreading up to
    (lam_{r+1} + shift) / shift (relu NTK, N = 6000, d = 32, rank 1500,
    diag_reg 1e-6: 19 PCG iterations instead of 29).

    Args:
      low_rank: L, shape (N, r), e.g. from :func:`nystrom_factor`.
      shift: ridge r > 0 of the system.

    Returns:
      ``apply(v)`` for v of shape (N, m). Memory: U, N x r float64.
    """
    lam, v = np.linalg.eigh(low_rank.T @ low_rank)
    keep = lam > 1e-14 * lam.max()
    lam, v = lam[keep], v[:, keep]
    u = low_rank @ (v / np.sqrt(lam))
    scale = (lam.min() + shift) / (lam + shift) - 1.0

    def apply(r):
        return r + u @ (scale[:, None] * (u.T @ r))

    return apply


def kernel_matvec(x, arch: FC | None = None, *, get, block_bytes: float = 2**28, **fields):
    """V -> K(x, x) V computed in symmetric blocks, K never stored.

    Args:
      x: inputs, shape (N, d).
      arch, **fields: the architecture, as in :func:`ntk_dist.fc_kernel`.
      get: the kernel, one kind: ``("ntk",)`` or ``("nngp",)``.
      block_bytes: memory for one B x B block's kernel values and intermediates
        (B = sqrt(block_bytes / 128); 2**28 gives B = 1448).

    Returns:
      ``matvec(v)`` for v of shape (N, m), float64. Each call computes the blocks
      K_ij, i <= j, once (N^2 / 2 entries, O(N^2 (d + L) / 2) flops) and adds
      K_ij V_j to rows i and K_ij^T V_i to rows j; diagonal blocks are computed as
      square Grams, so the result equals ``fc_kernel(x) @ v`` to rounding.
    """
    arch = resolve(arch, fields)
    b = tile_for_bytes(block_bytes)

    def matvec(v):
        out = np.zeros((x.shape[0], v.shape[1]))
        for ri, rj, k in symmetric_blocks(x, b, arch, get=get):
            out[ri] += k @ v[rj]
            if ri != rj:
                out[rj] += k.T @ v[ri]
        return out

    return matvec


def symmetric_blocks(x, b: int, arch: FC | None = None, *, get, **fields):
    """The blocks i <= j of K(x, x), one at a time.

    Args:
      x: inputs, shape (N, d).
      b: block edge B (the last block row/column is ragged).
      arch, **fields: the architecture, as in :func:`ntk_dist.fc_kernel`.
      get: the kernel, one kind: ``("ntk",)`` or ``("nngp",)``.

    Yields:
      (rows_i, rows_j, K_ij): two slices of range(N) and the block, shape (|rows_i|,
      |rows_j|), float64 ndarray; diagonal blocks are square Grams (diagonal pinned to the
      diagonal recursion), as in ``fc_kernel(x)``.
    """
    arch = resolve(arch, fields)
    (kind,) = get
    n = x.shape[0]
    for i, j in tiles(n, n, b, square=True):
        ri, rj = slice(i * b, (i + 1) * b), slice(j * b, (j + 1) * b)
        block = fc_kernel(x[ri], None if i == j else x[rj], arch, get=get)
        yield ri, rj, np.asarray(getattr(block, kind))


def kernel_regression(
    x_train,
    y_train,
    x_test=None,
    arch: FC | None = None,
    *,
    kind: str = "ntk",
    method: str = "auto",
    diag_reg: float = 1e-6,
    tol: float = 1e-8,
    maxiter: int = 1000,
    rank: int = 256,
    block_bytes: float = 2**28,
    **fields,
) -> Regression:
    """NNGP or NTK-GP posterior mean from the infinite-width kernel.

    Args:
      x_train: shape (N, d). y_train: shape (N,) or (N, m). x_test: shape (N_test, d) or None.
      arch, **fields: the architecture, an :class:`ntk_dist.FC` or its fields as keywords,
        as in :func:`ntk_dist.fc_kernel`.
      kind: "nngp" or "ntk".
      method: "dense", "cg" (matrix-free), or "auto" (dense up to ``DENSE_MAX`` points).
      diag_reg: relative ridge r / mean(diag K) >= 0 (see module docstring).
      tol, maxiter: CG stopping rule (relative residual of every column).
      rank: Nystrom preconditioner rank (landmarks); memory N * rank * 8 bytes. Take it
        above 1 + d + d (d + 1) / 2 (see module docstring).
      block_bytes: memory of one B x B block in matrix-free products (:func:`kernel_matvec`).

    Returns:
      :class:`Regression` in float64.
    """
    require_x64("kernel_regression")  # it works in float64 throughout (core.dtypes)
    arch = resolve(arch, fields)
    validate.choice(kind, "kind", ("nngp", "ntk"))
    validate.choice(method, "method", METHODS)
    diag_reg = validate.nonnegative_float(diag_reg, "diag_reg")
    x = np.asarray(validate.inputs(x_train, "x_train"), dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y_train must have shape (N,) or (N, m) with N = {x.shape[0]} rows of x_train, "
            f"got {np.shape(y_train)}"
        )
    if x_test is not None:
        x_test = np.asarray(validate.inputs(x_test, "x_test"), dtype=np.float64)
        validate.same_features(x, x_test, ("x_train", "x_test"))
    kernel = dict(arch=arch, get=(kind,))
    diag = np.asarray(getattr(fc_kernel(x, diagonal=True, **kernel), kind))
    shift = diag_reg * diag.mean()
    if method == "auto":
        method = "dense" if x.shape[0] <= DENSE_MAX else "cg"
    if method == "dense":
        k = getattr(fc_kernel(x, **kernel), kind)
        alpha = dense_solve(np.asarray(k), y, shift, dtype=k.dtype)
        iterations, residuals = 0, np.zeros(0)
        residual = float("nan")
    else:
        if shift == 0:
            raise ValueError("method='cg' needs diag_reg > 0 for its preconditioner; e.g. 1e-6")
        base = kernel_matvec(x, block_bytes=block_bytes, **kernel)

        res = pcg(
            lambda v: base(v) + shift * v,
            y,
            precond=nystrom_preconditioner(nystrom_factor(x, rank, **kernel), shift),
            tol=tol,
            maxiter=maxiter,
        )
        alpha, iterations, residuals = res.x, res.iterations, res.residuals
        residual = float(residuals[-1]) if iterations else 0.0
    mean = None
    if x_test is not None:
        mean = np.asarray(getattr(fc_kernel(x_test, x, **kernel), kind)) @ alpha
    return Regression(mean, alpha, method, iterations, residual, residuals)


def dense_solve(k, y, shift: float = 0.0, *, dtype=np.float64) -> np.ndarray:
    """(K + shift I)^{-1} y by Cholesky, regularised when K + shift I is ill-conditioned.

    When the factorisation fails or cond(K + shift I) exceeds 1 / sqrt(eps(dtype))
    (duplicated or nearly collinear inputs, ``ntk_dist.theory.numerics``), the
    regulariser of ``ntk_dist.theory.numerics`` is added and a ``NumericalWarning`` issued.
    The condition number is estimated from the Cholesky pivots (a lower bound).

    Args:
      k: symmetric (N, N). y: (N, m). shift: ridge >= 0.
      dtype: the dtype K was computed in; a float32 kernel held in float64 still has
        float32 rounding, so its epsilon sets the rule.

    Returns:
      alpha, shape (N, m), float64. Cost O(N^3 / 3) per factorisation (at most four).

    Raises:
      ValueError: K is indefinite beyond rounding (no small regulariser factors it).
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    a = np.array(k, dtype=np.float64)
    n = a.shape[0]
    mean_diag = np.trace(a) / n
    r = numerics.jitter(np.trace(a) + n * shift, dtype)
    cond = float("inf")
    for extra in (0.0, r, 10 * r, 100 * r):
        try:
            factor = cho_factor(a + (shift + extra) * np.eye(n), lower=True)
        except LinAlgError:
            continue
        pivots = np.diag(factor[0]) ** 2
        if extra == 0.0:
            cond = numerics.condition(pivots.min(), pivots.max())
            if numerics.ill_conditioned(pivots.min(), pivots.max(), dtype):
                continue
        else:
            numerics.warn_regularised("K(x_train, x_train)", cond, extra, mean_diag, dtype)
        return cho_solve(factor, y)
    raise ValueError(
        "K(x_train, x_train) is not positive semi-definite (Cholesky fails even with a "
        "regulariser); check the kernel and its arguments"
    )
