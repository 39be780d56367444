"""Empirical NTK and sharpness: implementations against each other and hand-derived forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntk_dist.models.empirical import empirical_ntk, ntk_matrix, ntk_vector_product, sharpness
from ntk_dist.models.networks import CatapultToy, FCNetwork
from tests.models.numpy_nets import sp_forward, standard_tanh_net


def _points(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d))


def _assert_close(a, b, rtol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


# ---------------------------------------------------------------------------------
# The three implementations agree (one contract, run against each)


# Depths 1-3, one and three outputs, smooth and kinked: each case is its own compiled
# programs, and tests/models/test_contract_ntk.py runs the contract on three more.
@pytest.mark.parametrize(
    "activation, depth, k", [("erf", 1, 1), ("relu", 2, 3), ("leaky_relu:0.2", 3, 1)]
)
def test_implementations_agree_on_fc_networks(activation, depth, k):
    net = FCNetwork.make(
        depth=depth, width=12, out_dim=k, activation=activation, sigma_w=1.4, sigma_b=0.3
    )
    params = net.init(jax.random.PRNGKey(depth), 3, jnp.float64)
    x1, x2 = _points(5, 3, 0), _points(4, 3, 1)
    ref = empirical_ntk(net, params, x1, x2, implementation="jacobian")
    assert ref.shape == (5, 4, k, k)
    for impl in ("ntvp", "structured", "auto"):
        _assert_close(empirical_ntk(net, params, x1, x2, implementation=impl), ref)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_implementations_agree_with_per_layer_settings(parameterization):
    # Each hidden layer backpropagates through its own phi'; the SP middle layer has no bias.
    net = FCNetwork(
        (7, 5, 6),
        2,
        ["erf", "relu", "tanh"],
        [1.2, 1.6, 0.9, 0.7],
        [0.1, 0.0, 0.3, 0.2],
        parameterization=parameterization,
    )
    params = net.init(jax.random.PRNGKey(8), 3, jnp.float64)
    x1, x2 = _points(4, 3, 8), _points(3, 3, 9)
    ref = empirical_ntk(net, params, x1, x2, implementation="jacobian")
    for impl in ("ntvp", "structured"):
        _assert_close(empirical_ntk(net, params, x1, x2, implementation=impl), ref)


def test_jacobian_matches_explicit_sum_over_parameters():
    # Theta_hat(x, x') = sum_p df(x)/dp df(x')/dp; Jacobian columns from one jvp per parameter.
    net = FCNetwork(widths=(6, 5), out_dim=2, activation="erf", sigma_w=1.2, sigma_b=0.4)
    params = net.init(jax.random.PRNGKey(3), 2, jnp.float64)
    x1, x2 = _points(3, 2, 2), _points(2, 2, 3)
    flat, unravel = ravel_pytree(params)
    basis = np.eye(flat.size)
    column = lambda x, e: jax.jvp(lambda p: net.apply(unravel(p), x), (flat,), (e,))[1]
    jac = jax.jit(lambda x: jax.vmap(lambda e: column(x, e))(basis))  # (P, N, k)
    want = np.einsum("pia,pjb->ijab", jac(x1), jac(x2))
    _assert_close(empirical_ntk(net, params, x1, x2, implementation="structured"), want)


def test_toy_ntk_matches_its_closed_form():
    # f = v^T u x / sqrt(n): Theta_ab(x, x') = (x^T u^T u x' delta_ab + v_a . v_b x . x') / n.
    toy = CatapultToy(width=9, out_dim=2)
    params = toy.init(jax.random.PRNGKey(4), 3, jnp.float64)
    u, v = np.asarray(params["u"]), np.asarray(params["v"])
    x1, x2 = _points(4, 3, 4), _points(3, 3, 5)
    want = (
        np.einsum("id,jd->ij", x1 @ u.T, x2 @ u.T)[:, :, None, None] * np.eye(2)
        + (x1 @ x2.T)[:, :, None, None] * (v.T @ v)[None, None]
    ) / 9
    for impl in ("jacobian", "ntvp", "auto"):
        _assert_close(empirical_ntk(toy, params, x1, x2, implementation=impl), want)


def test_jacobian_and_ntvp_agree_on_a_custom_apply_function():
    def apply(p, x):
        h = jnp.tanh(x @ p["a"] + p["c"])
        return jnp.stack([h @ p["b"], jnp.sin(h) @ p["b"] * p["c"][0]], axis=-1)

    ks = jax.random.split(jax.random.PRNGKey(5), 3)
    params = {
        "a": jax.random.normal(ks[0], (3, 7), jnp.float64),
        "b": jax.random.normal(ks[1], (7,), jnp.float64),
        "c": jax.random.normal(ks[2], (7,), jnp.float64),
    }
    x1, x2 = _points(5, 3, 6), _points(3, 3, 7)
    ref = empirical_ntk(apply, params, x1, x2, implementation="jacobian")
    assert ref.shape == (5, 3, 2, 2)
    _assert_close(empirical_ntk(apply, params, x1, x2, implementation="ntvp"), ref)


def test_ntk_matrix_is_sample_major_and_matches_the_vector_product():
    net = FCNetwork.make(depth=2, width=10, out_dim=3, activation="erf", sigma_w=1.5)
    params = net.init(jax.random.PRNGKey(6), 2, jnp.float64)
    x = _points(4, 2, 8)
    theta = empirical_ntk(net, params, x)
    mat = ntk_matrix(theta)
    assert mat.shape == (12, 12)
    assert mat[1 * 3 + 2, 3 * 3 + 0] == theta[1, 3, 2, 0]
    v = _points(4, 3, 9)
    product = jax.jit(ntk_vector_product, static_argnums=0)(net.apply, params, x, v)
    _assert_close(product.ravel(), mat @ v.ravel())


# ---------------------------------------------------------------------------------
# Sharpness


@pytest.mark.parametrize(
    "model, m, k",
    [
        (FCNetwork.make(depth=2, width=16, out_dim=2, activation="relu", sigma_w=1.3), 20, 2),
        (CatapultToy(width=20, out_dim=1), 8, 1),
    ],
)
def test_lanczos_sharpness_matches_dense_eigvalsh(model, m, k):
    params = model.init(jax.random.PRNGKey(m), 3, jnp.float64)
    x = _points(m, 3, m)
    dense = np.linalg.eigvalsh(np.asarray(ntk_matrix(empirical_ntk(model, params, x))))[-1] / m
    np.testing.assert_allclose(sharpness(model, params, x, method="dense"), dense, rtol=1e-12)
    lanczos = sharpness(model, params, x, method="lanczos", num_iters=min(30, m * k))
    np.testing.assert_allclose(lanczos, dense, rtol=1e-6)


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_toy_sharpness_is_norms_over_width(method):
    # docs/theory.md §5: at x = 1 (d = 1, m = 1), lambda = (|u|^2 + |v|^2) / n.
    toy = CatapultToy(width=50)
    params = toy.init(jax.random.PRNGKey(12), 1, jnp.float64)
    want = (np.sum(np.asarray(params["u"]) ** 2) + np.sum(np.asarray(params["v"]) ** 2)) / 50
    got = sharpness(toy, params, np.ones((1, 1)), method=method)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_float32_matches_float64():
    net = FCNetwork.make(depth=2, width=64, activation="erf", sigma_w=1.5, sigma_b=0.05)
    p64 = net.init(jax.random.PRNGKey(13), 2, jnp.float64)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), p64)
    x = _points(6, 2, 13)
    t32 = empirical_ntk(net, p32, x.astype(np.float32))
    assert t32.dtype == jnp.float32
    _assert_close(t32, empirical_ntk(net, p64, x), rtol=1e-4)


# ---------------------------------------------------------------------------------
# Bad input

_NET = FCNetwork.make(depth=1, width=4, activation="erf", sigma_w=1.0)
_PARAMS = _NET.init(jax.random.PRNGKey(0), 2, jnp.float64)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: empirical_ntk(_NET, _PARAMS, np.ones((3, 2)), np.ones((2, 5))), "feature dim"),
        (lambda: empirical_ntk(_NET, _PARAMS, np.array([[1.0, np.nan]])), "x1 contains non-finite"),
        (lambda: empirical_ntk(_NET, _PARAMS, np.ones((2, 2)), np.full((1, 2), np.inf)), "x2"),
        (lambda: empirical_ntk(_NET, _PARAMS, np.ones(3)), "x1 must be a 2-D"),
        (lambda: empirical_ntk(_NET, _PARAMS, np.ones((2, 2)), implementation="fast"), "impl"),
        (
            lambda: empirical_ntk(
                CatapultToy(4),
                {"u": np.ones((4, 2)), "v": np.ones((4, 1))},
                np.ones((2, 2)),
                implementation="structured",
            ),
            "structured",
        ),
        (lambda: empirical_ntk("net", _PARAMS, np.ones((2, 2)), implementation="ntvp"), "model"),
        (lambda: sharpness(_NET, _PARAMS, np.ones((2, 2)), method="power"), "method"),
        (lambda: sharpness(_NET, _PARAMS, np.ones((2, 2)), method="lanczos", num_iters=0), "iters"),
        (lambda: sharpness(_NET, _PARAMS, np.full((2, 2), np.nan)), "x contains non-finite"),
    ],
)
def test_bad_input_is_rejected_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------
# Standard parameterisation: Theta_hat = sum over (W, b) of df/dp df/dp, by finite
# differences of an independent NumPy forward pass (docs/theory.md §1-§2).


def _fd_jacobian(layers, x, eps=1e-5):
    """(N, k, P): central differences over every stored scalar, in float64."""
    cols = []
    for layer in layers:
        for name in sorted(layer):
            arr = layer[name]
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + eps
                up = sp_forward(layers, x, np.tanh)
                arr[idx] = old - eps
                down = sp_forward(layers, x, np.tanh)
                arr[idx] = old
                cols.append((up - down) / (2 * eps))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("sigma_b", [0.0, 0.4])
def test_standard_parameterisation_ntk_matches_finite_differences(sigma_b):
    net, params, layers = standard_tanh_net((5, 4), sigma_b, 0.8, in_dim=3, seed=5)
    x1, x2 = _points(4, 3, 6), _points(3, 3, 7)
    j1, j2 = _fd_jacobian(layers, x1), _fd_jacobian(layers, x2)
    assert j1.shape[-1] == net.n_params(3)
    want = np.einsum("iap,jbp->ijab", j1, j2)
    for impl in ("jacobian", "ntvp", "structured"):
        _assert_close(empirical_ntk(net, params, x1, x2, implementation=impl), want, rtol=1e-7)
