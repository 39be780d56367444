"""The catapult toy f(x) = v^T u x / sqrt(n) in the training loop: closed forms, row layout.

The toy (docs/theory.md §5) is linear in u and in v, so its gradient and its empirical
NTK are short matrix products: no autodiff, no Jacobian. With C = U^T V (d, k),
F = X C / sqrt(n) (m, k), residuals R = diag(w) (F - Y) and M = X^T R / sqrt(n) (d, k):

    dL/dU = V M^T,    dL/dV = U M

for L = 1/2 sum_i w_i ||f_i - y_i||^2 (one pass over the 2n parameters for C, one for
the update: O(n d k + m d k), no (m, n) hidden activations), and, with H = X U^T,

    Theta_hat(X, X) = (H H^T / n) (x) I_k + (X X^T / n) (x) (V^T V)

as an (m k x m k) matrix, sample-major (the layout of
:func:`ntk_dist.models.empirical.ntk_matrix`). For one point and one output this is
the scalar (|u x|^2 + |v|^2 |x|^2) / n. Both equal what autodiff gives to rounding.

The training loop holds the toy's parameters transposed, as rows ``{"u": U^T (d, n),
"v": V^T (k, n)}`` (:func:`to_rows`): a toy step is a few passes over 2n numbers,
memory-bound, and XLA:CPU runs its elementwise loops over (n, 1) columns several times
slower than over (1, n) rows (bench/RESULTS.md). The functions below take rows.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ntk_dist.models.networks import CatapultToy

#: Largest m k for which the sharpness is the top eigenvalue of the dense Theta_hat;
#: the same bound as :func:`ntk_dist.models.empirical.sharpness` with ``method="auto"``.
DENSE_MAX_ROWS = 2048


def has_closed_form(model, sharpness: str, method: str, m: int, k: int) -> bool:
    """Whether :func:`ntk_sharpness` gives the sharpness the record asks for: the toy's
    NTK sharpness by the dense method (``"dense"``, or ``"auto"`` up to
    :data:`DENSE_MAX_ROWS` rows)."""
    if not isinstance(model, CatapultToy) or sharpness != "ntk":
        return False
    return method == "dense" or (method == "auto" and m * k <= DENSE_MAX_ROWS)


def to_rows(params) -> dict:
    """``{"u": (n, d), "v": (n, k)}`` -> the row layout ``{"u": (d, n), "v": (k, n)}``."""
    return {"u": params["u"].T, "v": params["v"].T}


def from_rows(rows) -> dict:
    """The inverse of :func:`to_rows`: the toy's own parameter layout."""
    return {"u": rows["u"].T, "v": rows["v"].T}


def value_and_grad(model: CatapultToy, rows, x, y, weights):
    """Weighted-loss gradient of the toy, with its outputs.

    Args:
      model: the toy (its width n).
      rows: parameters in the row layout, ``{"u": (d, n), "v": (k, n)}``.
      x, y: inputs (m, d) and targets (m, k).
      weights: (m,) per-point weights w_i of L = 1/2 sum_i w_i ||f_i - y_i||^2.

    Returns:
      (F, grads): outputs F = f(X), shape (m, k), and the gradient of L in the row
      layout.
    """
    scale = 1.0 / math.sqrt(model.width)
    u, v = rows["u"], rows["v"]
    f = x @ (u @ v.T) * scale
    grad_c = x.T @ (weights[:, None] * (f - y)) * scale
    return f, {"u": grad_c @ v, "v": grad_c.T @ u}


def ntk_sharpness(model: CatapultToy, rows, x):
    """lambda = top eigenvalue of Theta_hat(X, X) / m for the toy (docs/theory.md §3).

    Args:
      model: the toy.
      rows: parameters in the row layout, ``{"u": (d, n), "v": (k, n)}``.
      x: training inputs, shape (m, d).

    Returns:
      Scalar array. Cost O(n m (d + m) + n k^2), plus a dense eigvalsh of the
      (m k x m k) matrix when m k > 1.
    """
    n, m = model.width, x.shape[0]
    u, v = rows["u"], rows["v"]
    k = v.shape[0]
    h = x @ u
    if m * k == 1:
        return (jnp.sum(h**2) + jnp.sum(v**2) * jnp.sum(x**2)) / n
    theta = jnp.kron(h @ h.T, jnp.eye(k, dtype=h.dtype)) + jnp.kron(x @ x.T, v @ v.T)
    return jnp.linalg.eigvalsh(theta / n)[-1] / m
