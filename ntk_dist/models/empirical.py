"""Empirical NTK of finite networks and the sharpness lambda.

Theta_hat(x, x')_{ab} = sum over trainable scalars p of df_a(x)/dp * df_b(x')/dp
(docs/theory.md §2, no normalisation). Results have shape (N1, N2, k, k); use
:func:`ntk_matrix` for the (N1 k, N2 k) matrix.

Implementations (all exact; they differ in cost):

- ``"jacobian"``: materialise J = df/dtheta for both input sets and contract.
  Memory O((N1 + N2) k P) for P parameters; fastest when that fits.
- ``"ntvp"``: NTK-vector products. For each point x' and output b, the cotangent
  J(x')^T e_b (one backward pass) is pushed forward through f(X1) (one jvp).
  Memory O(N1 k + P); cost O(N2 k) forward+backward passes over X1.
- ``"structured"``: dense layers only (:class:`FCNetwork`). With x^{l-1} the layer
  inputs and delta^l = df/dh^l the backpropagated output sensitivities,
  Theta = sum_l (a_l^2 <x^{l-1}, x'^{l-1}> + c_l^2) <delta^l, delta'^l>, where
  a_l^2 = s_l^2 / n_{l-1}, c_l^2 = sigma_b^2 of layer l in NTK parameterisation and
  a_l = 1, c_l = 1 (0 without a bias) in the standard one (:meth:`FCNetwork.multipliers`),
  and each hidden layer backpropagates through its own phi_l' (the dense-layer form of
  Novak et al. 2022, "Fast finite width NTK").
  Memory O(N k n), cost O(N1 N2 k^2 sum_l n_l); never forms J.

Sharpness (docs/theory.md §3): lambda = top eigenvalue of Theta_hat(X, X) / m, with the
(mk x mk) matrix for k outputs. ``"dense"`` builds the matrix and calls eigvalsh;
``"lanczos"`` runs Lanczos with full reorthogonalisation on v -> J (J^T v) / m
(a vjp and a jvp, never forming Theta), for large m.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ntk_dist.core import validate
from ntk_dist.models.lanczos import lanczos_top
from ntk_dist.models.methods import IMPLEMENTATIONS, SHARPNESS_METHODS
from ntk_dist.models.networks import CatapultToy, FCNetwork, param_count

# "auto" materialises Jacobians only while they stay below this many bytes.
_JACOBIAN_BYTES = 512 * 2**20


def apply_fn(model) -> Callable:
    if isinstance(model, (FCNetwork, CatapultToy)):
        return model.apply
    if callable(model):
        return model
    raise ValueError(
        f"model must be an FCNetwork, a CatapultToy or a function apply(params, x); got {model!r}"
    )


def _check_pair(x1, x2):
    validate.inputs(x1, "x1")
    if x2 is None:
        return x1
    validate.inputs(x2, "x2")
    validate.same_features(x1, x2)
    return x2


def empirical_ntk(model, params, x1, x2=None, *, implementation: str = "auto"):
    """Empirical NTK Theta_hat(x1, x2) of a finite network.

    Args:
      model: :class:`FCNetwork`, :class:`CatapultToy`, or ``apply(params, x) -> (N, k)``.
      params: parameter pytree of that model (no ensemble axis; vmap for ensembles).
      x1: inputs, shape (N1, d).
      x2: inputs, shape (N2, d); ``None`` means x1.
      implementation: one of ``IMPLEMENTATIONS``; ``"auto"`` picks ``"structured"`` for
        FCNetwork, else ``"jacobian"`` when the Jacobians fit in 512 MiB, else ``"ntvp"``.

    Returns:
      Array of shape (N1, N2, k, k), dtype of the outputs.
    """
    validate.choice(implementation, "implementation", IMPLEMENTATIONS)
    x2 = _check_pair(x1, x2)
    if implementation == "auto":
        implementation = _auto_implementation(model, params, x1, x2)
    if implementation == "structured":
        if not isinstance(model, FCNetwork):
            raise ValueError(
                "implementation='structured' needs an FCNetwork; use 'jacobian' or 'ntvp'"
            )
        return _ntk_structured(model, params, x1, x2)
    fn = apply_fn(model)
    if implementation == "jacobian":
        return _ntk_jacobian(fn, params, x1, x2)
    return _ntk_ntvp(fn, params, x1, x2)


def _auto_implementation(model, params, x1, x2) -> str:
    if isinstance(model, FCNetwork):
        return "structured"
    k = jax.eval_shape(apply_fn(model), params, x1[:1]).shape[-1]
    itemsize = jnp.dtype(jax.tree_util.tree_leaves(params)[0].dtype).itemsize
    size = (x1.shape[0] + x2.shape[0]) * k * param_count(params) * itemsize
    return "jacobian" if size <= _JACOBIAN_BYTES else "ntvp"


@jax.jit(static_argnums=0)
def _ntk_jacobian(fn, params, x1, x2):
    def flat_jac(x):
        jac = jax.jacrev(fn)(params, x)  # leaves (N, k, *shape)
        n, k = jax.eval_shape(fn, params, x).shape
        return jnp.concatenate(
            [j.reshape(n, k, -1) for j in jax.tree_util.tree_leaves(jac)], axis=-1
        )

    j1 = flat_jac(x1)
    j2 = j1 if x2 is x1 else flat_jac(x2)
    return jnp.einsum("iap,jbp->ijab", j1, j2)


@jax.jit(static_argnums=0)
def _ntk_ntvp(fn, params, x1, x2):
    k = jax.eval_shape(fn, params, x1[:1]).shape[-1]
    f1 = lambda p: fn(p, x1)

    def column(x_b):
        # J(x')^T e_b for each output b, then J(X1) times that vector.
        _, vjp = jax.vjp(lambda p: fn(p, x_b[None])[0], params)
        basis = jnp.eye(k, dtype=x1.dtype)
        cots = jax.vmap(lambda e: vjp(e)[0])(basis)  # pytree with leading axis k
        return jax.vmap(lambda t: jax.jvp(f1, (params,), (t,))[1])(cots)  # (k, N1, k)

    cols = jax.lax.map(column, x2)  # (N2, k_b, N1, k_a)
    return jnp.transpose(cols, (2, 0, 3, 1))


@jax.jit(static_argnums=0)
def _ntk_structured(model: FCNetwork, params, x1, x2):
    derivs = [jax.vmap(jax.vmap(jax.grad(act.fn))) for act in model.layer_activations]
    mults = model.multipliers(x1.shape[1])

    def features(x):
        xs, hs = model.forward(params, x)
        k = model.out_dim
        # delta^{L+1} = identity over outputs: shape (N, k, k).
        delta = jnp.broadcast_to(jnp.eye(k, dtype=x.dtype), (x.shape[0], k, k))
        deltas = [delta]
        for layer_idx in range(len(params) - 1, 0, -1):
            w = params[layer_idx]["w"]
            back = mults[layer_idx][0] * jnp.einsum("nkj,ij->nki", deltas[0], w)
            deltas.insert(0, back * derivs[layer_idx - 1](hs[layer_idx - 1])[:, None, :])
        return xs, deltas

    xs1, d1 = features(x1)
    xs2, d2 = (xs1, d1) if x2 is x1 else features(x2)
    theta = 0.0
    for (a, c), x_a, x_b, da, db in zip(mults, xs1, xs2, d1, d2, strict=True):
        # d h / d p_w = a_l x^{l-1}, d h / d p_b = c_l: a_l^2 = s_l^2 / n_{l-1} (NTK) or 1 (SP).
        gram_in = a * a * (x_a @ x_b.T) + c * c
        theta = theta + gram_in[:, :, None, None] * jnp.einsum("iak,jbk->ijab", da, db)
    return theta


def ntk_matrix(theta):
    """Reshape a (N1, N2, k, k) NTK to the (N1 k, N2 k) matrix, sample-major."""
    n1, n2, k1, k2 = theta.shape
    return jnp.transpose(theta, (0, 2, 1, 3)).reshape(n1 * k1, n2 * k2)


# "auto" switches to Lanczos above this many rows (m k) of Theta_hat(X, X).
_DENSE_MAX_ROWS = 2048


def sharpness(
    model,
    params,
    x,
    *,
    method: str = "auto",
    num_iters: int = 64,
    key=None,
):
    """lambda = top eigenvalue of Theta_hat(X, X) / m (docs/theory.md §3).

    Args:
      model: as in :func:`empirical_ntk`.
      params: parameter pytree.
      x: training inputs, shape (m, d).
      method: ``"dense"`` (eigvalsh of the (mk x mk) matrix: O((mk)^2) memory,
        O((mk)^3) time), ``"lanczos"`` (matrix-free: ``num_iters`` NTK-vector
        products, O(num_iters * mk) memory) or ``"auto"`` (dense up to 2048 rows).
      num_iters: Lanczos iterations (capped at mk); the top Ritz value converges
        geometrically in the gap to the second eigenvalue.
      key: PRNG key for the Lanczos start vector (fixed default).

    Returns:
      Scalar array, same dtype as the outputs. Jittable.
    """
    validate.choice(method, "method", SHARPNESS_METHODS)
    validate.inputs(x, "x")
    fn = apply_fn(model)
    m = x.shape[0]
    k = jax.eval_shape(fn, params, x[:1]).shape[-1]
    if method == "auto":
        method = "dense" if m * k <= _DENSE_MAX_ROWS else "lanczos"
    if method == "dense":
        theta = ntk_matrix(empirical_ntk(model, params, x, x))
        return jnp.linalg.eigvalsh(theta)[-1] / m
    num_iters = min(validate.positive_int(num_iters, "num_iters"), m * k)
    key = jax.random.PRNGKey(0) if key is None else key
    return _lanczos_top(fn, params, x, num_iters, key) / m


def ntk_vector_product(fn, params, x, v):
    """Theta_hat(X, X) v for v of shape (m, k), without forming Theta: J (J^T v)."""
    out, vjp = jax.vjp(lambda p: fn(p, x), params)
    (cot,) = vjp(v.astype(out.dtype))
    return jax.jvp(lambda p: fn(p, x), (params,), (cot,))[1]


@jax.jit(static_argnums=(0, 3))
def _lanczos_top(fn, params, x, num_iters, key):
    out_shape = jax.eval_shape(fn, params, x)
    size = math.prod(out_shape.shape)
    matvec = lambda q: ntk_vector_product(fn, params, x, q.reshape(out_shape.shape)).ravel()
    return lanczos_top(matvec, jax.random.normal(key, (size,), out_shape.dtype), num_iters)
