"""Hessian sharpness: matrix-free Lanczos against a dense eigendecomposition (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntk_dist.models.empirical import sharpness
from ntk_dist.models.hessian import hessian_sharpness, measured_sharpness
from ntk_dist.models.lanczos import lanczos_top
from ntk_dist.models.networks import CatapultToy, FCNetwork


def _problem(net, d=3, m=6, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(m, d)), rng.normal(size=(m, net.out_dim))
    return net.init(jax.random.PRNGKey(seed), d, jnp.float64), x, y


def _dense_top(net, params, x, y):
    """numpy.linalg.eigvalsh of jax.hessian of L = 1/(2m) sum ||f - y||^2: the top value."""
    flat, unravel = ravel_pytree(params)
    loss = lambda v: 0.5 * jnp.sum((net.apply(unravel(v), x) - y) ** 2) / x.shape[0]
    return np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(loss))(flat)))[-1]


@pytest.mark.parametrize(
    "net",
    [
        FCNetwork((8, 6), 2, "tanh", 1.4, 0.3),
        FCNetwork((8, 6), 2, "relu", 2**0.5, 0.0, parameterization="standard", readout_sigma_w=1.0),
        CatapultToy(10),
    ],
    ids=["ntk-tanh", "sp-relu-nobias", "toy"],
)
def test_lanczos_matches_dense_eigvalsh_of_the_hessian(net):
    params, x, y = _problem(net)
    want = _dense_top(net, params, x, y)
    got = float(hessian_sharpness(net, params, x, y))  # default iterations, not P
    assert abs(got - want) <= 1e-6 * abs(want)


def test_returns_largest_algebraic_not_largest_magnitude():
    # Spectrum {-10, 1, 2, 3}: the largest algebraic eigenvalue is 3, the largest |.| is 10.
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    a = jnp.asarray(q @ np.diag([-10.0, 1.0, 2.0, 3.0]) @ q.T)
    got = lanczos_top(lambda v: a @ v, jnp.ones(4), 4)
    np.testing.assert_allclose(got, 3.0, rtol=1e-12)


def test_hessian_at_a_global_minimum_equals_the_ntk_sharpness():
    # With f = y the residual term of H vanishes: H = J^T J / m, whose top eigenvalue is
    # that of Theta_hat / m (docs/theory.md §7).
    net = FCNetwork((7,), 1, "erf", 1.3, 0.2)
    params, x, _ = _problem(net, seed=2)
    y = np.asarray(net.apply(params, x))
    np.testing.assert_allclose(
        hessian_sharpness(net, params, x, y), sharpness(net, params, x), rtol=1e-8
    )


def test_dense_method_matches_lanczos():
    net = FCNetwork((5,), 1, "tanh", 1.2, 0.1, parameterization="standard")
    params, x, y = _problem(net, seed=3)
    np.testing.assert_allclose(
        hessian_sharpness(net, params, x, y, method="dense"),
        hessian_sharpness(net, params, x, y),
        rtol=1e-10,
    )


def test_definition_is_validated():
    net = CatapultToy(4)
    params, x, y = _problem(net)
    with pytest.raises(ValueError, match="sharpness"):
        measured_sharpness("gauss", net, params, x, y)
