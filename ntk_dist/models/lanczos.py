"""Lanczos iteration for the largest eigenvalue of a symmetric linear operator.

Used by the NTK sharpness (operator v -> Theta_hat v / m) and the Hessian sharpness
(v -> H v), both matrix-free (docs/theory.md §3).

Returns the **largest algebraic** Ritz value, which converges to the largest algebraic
eigenvalue lambda_max(A) (not the eigenvalue of largest magnitude; the two differ for an
indefinite operator such as a Hessian with a negative eigenvalue below -lambda_max). The
Ritz values interlace the spectrum, so every iterate is a lower bound on lambda_max and
the error falls geometrically in sqrt of the relative gap to the next eigenvalue.
Full reorthogonalisation keeps the basis orthogonal to rounding error: memory
O(num_iters * size), cost ``num_iters`` operator applications.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def lanczos_top(matvec, q0, num_iters: int):
    """Largest algebraic Ritz value of ``matvec`` after ``num_iters`` Lanczos steps.

    Args:
      matvec: symmetric linear map, flat vector (size,) -> (size,); jax-traceable.
      q0: start vector, shape (size,), not zero (normalised here).
      num_iters: Krylov dimension (static), 1 <= num_iters <= size; at ``size`` the
        result is exact up to rounding.

    Returns:
      Scalar of q0's dtype. Traceable (call it inside ``jax.jit``).
    """
    dtype, size = q0.dtype, q0.shape[0]
    q0 = q0 / jnp.linalg.norm(q0)
    basis = jnp.zeros((num_iters, size), dtype).at[0].set(q0)
    alphas = jnp.zeros(num_iters, dtype)
    betas = jnp.zeros(num_iters, dtype)

    def step(i, carry):
        basis, alphas, betas = carry
        w = matvec(basis[i])
        alpha = jnp.dot(w, basis[i])
        # Full reorthogonalisation (twice is enough, Parlett): keeps Ritz values clean.
        mask = (jnp.arange(num_iters) <= i)[:, None]
        for _ in range(2):
            w = w - (basis * mask).T @ ((basis * mask) @ w)
        beta = jnp.linalg.norm(w)
        nxt = jnp.where(beta > 0, w / jnp.where(beta > 0, beta, 1), 0)
        basis = jax.lax.cond(i + 1 < num_iters, lambda b: b.at[i + 1].set(nxt), lambda b: b, basis)
        return basis, alphas.at[i].set(alpha), betas.at[i].set(beta)

    _, alphas, betas = jax.lax.fori_loop(0, num_iters, step, (basis, alphas, betas))
    tri = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    return jnp.linalg.eigvalsh(tri)[-1]
