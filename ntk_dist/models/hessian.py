"""Hessian sharpness of the training loss, and the choice between the two sharpnesses.

lambda^H = the largest algebraic eigenvalue of the Hessian of
L(theta) = 1/(2m) sum_alpha ||f(x_alpha; theta) - y_alpha||^2 with respect to every
trainable parameter (docs/theory.md §3, §7), the sharpness of Cohen et al. 2021
(arXiv 2103.00065) and Kalra & Barkeshli 2023 (arXiv 2302.12250). For MSE,
H = J^T J / m + sum_alpha (f_alpha - y_alpha) . d^2 f_alpha / m: the first (Gauss-Newton)
term has the NTK sharpness as its top eigenvalue; the residual term can make H
indefinite, and the value returned is the largest algebraic eigenvalue (what both
papers use), not the largest in magnitude.

Methods:

- ``"lanczos"`` (and ``"auto"``): :func:`ntk_dist.models.lanczos.lanczos_top` on
  Hessian-vector products v -> H v = jvp of grad L (forward-over-reverse: about 3-4
  gradient evaluations each), never forming H; memory O(num_iters * P) for P
  parameters, ``num_iters`` HVPs. Exact up to rounding when num_iters >= P.
- ``"dense"``: ``jax.hessian`` of L over the flattened parameters and ``eigvalsh``:
  O(P^2) memory and O(P^3) time, for small networks only.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ntk_dist.core import validate
from ntk_dist.models.empirical import apply_fn, sharpness
from ntk_dist.models.lanczos import lanczos_top
from ntk_dist.models.methods import SHARPNESS_DEFINITIONS, SHARPNESS_METHODS

#: Lanczos steps of the Hessian sharpness (capped at P). Kalra & Barkeshli use 20 power
#: iterations; Lanczos converges faster than power iteration for the same count.
HESSIAN_ITERS = 32


def hessian_sharpness(
    model, params, x, y, *, method: str = "auto", num_iters: int = HESSIAN_ITERS, key=None
):
    """lambda^H = largest algebraic eigenvalue of the Hessian of the training loss.

    Args:
      model: :class:`ntk_dist.FCNetwork`, :class:`ntk_dist.CatapultToy`, or
        ``apply(params, x) -> (N, k)``.
      params: parameter pytree (the Hessian is over all its leaves).
      x: training inputs, shape (m, d).
      y: training targets, shape (m, k).
      method: ``"auto"``/``"lanczos"`` or ``"dense"`` (module docstring).
      num_iters: Lanczos steps (capped at the parameter count P).
      key: PRNG key for the Lanczos start vector (fixed default).

    Returns:
      Scalar array, dtype of the parameters. Jittable.
    """
    validate.choice(method, "method", SHARPNESS_METHODS)
    validate.inputs(x, "x")
    fn = apply_fn(model)
    n_params = sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
    num_iters = min(validate.positive_int(num_iters, "num_iters"), n_params)
    key = jax.random.PRNGKey(0) if key is None else key
    return _hessian_top(fn, method == "dense", num_iters, params, x, y, key)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _hessian_top(fn, dense: bool, num_iters: int, params, x, y, key):
    flat, unravel = ravel_pytree(params)
    loss = lambda v: 0.5 * jnp.sum((fn(unravel(v), x) - y) ** 2) / x.shape[0]
    if dense:
        return jnp.linalg.eigvalsh(jax.hessian(loss)(flat))[-1]
    grad = jax.grad(loss)
    hvp = lambda q: jax.jvp(grad, (flat,), (q,))[1]
    return lanczos_top(hvp, jax.random.normal(key, flat.shape, flat.dtype), num_iters)


def measured_sharpness(definition: str, model, params, x, y, *, method: str = "auto"):
    """The sharpness lambda of ``definition`` (docs/theory.md §3, §7).

    Args:
      definition: ``"ntk"`` (top eigenvalue of Theta_hat(X, X) / m,
        :func:`ntk_dist.models.empirical.sharpness`) or ``"hessian"`` (largest algebraic
        eigenvalue of the Hessian of L, :func:`hessian_sharpness`).
      model, params, x, y: the network, its parameters and the training set (y is
        unused for ``"ntk"``).
      method: passed on (``"auto"``, ``"dense"`` or ``"lanczos"``).

    Returns:
      Scalar array. Jittable.
    """
    validate.choice(definition, "sharpness", SHARPNESS_DEFINITIONS)
    if definition == "hessian":
        return hessian_sharpness(model, params, x, y, method=method)
    return sharpness(model, params, x, method=method)
