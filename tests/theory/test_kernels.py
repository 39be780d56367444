"""Infinite-width kernels against physics: Monte Carlo over finite networks, quadrature,
symmetry and positive semi-definiteness, dtype handling, and rejected inputs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_dist import FC, Activation, FCNetwork, fc_kernel, get_activation, monte_carlo_kernel
from ntk_dist.theory.kernels import DEFAULT_TILE

# Three inputs with different norms, one nearly anti-aligned with another.
X = np.array([[1.0, 0.5, -0.3, 0.2], [-0.9, -0.4, 0.5, 0.1], [0.3, -1.2, 0.8, 1.5]])

SIGMAS = [(1.5, 0.05), (math.sqrt(2), 0.1)]
WIDTH, DRAWS, OUTPUTS = 512, 160, 32


def _assert_matches_monte_carlo(kern, net, seed):
    """The analytic NNGP and NTK ``kern`` of X against :func:`ntk_dist.monte_carlo_kernel`
    of the finite ``net`` (DRAWS initialisations), entrywise within 4 standard errors."""
    mc = monte_carlo_kernel(
        net, X, key=jax.random.PRNGKey(seed), n_samples=DRAWS, dtype=jnp.float64
    )
    for name in ("nngp", "ntk"):
        z = np.abs(getattr(mc, name) - np.asarray(getattr(kern, name))) / getattr(mc, f"{name}_se")
        assert z.max() < 4, f"{name}: z-scores {np.round(z, 2)}"


def _shared_net(activation, depth, sigma_w, sigma_b):
    return FCNetwork.make(
        depth=depth,
        width=WIDTH,
        out_dim=OUTPUTS,
        activation=activation,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
    )


# Each closed form (smooth erf, kinked relu, linear identity) at one hidden layer (no
# Theta recursion through phi') and at more (depth 2 or 3: the same recursion), each
# at both scale pairs; the recursion does not depend on the depth beyond 2.
MC_CASES = [
    ("erf", 1, *SIGMAS[0]),
    ("erf", 3, *SIGMAS[1]),
    ("relu", 1, *SIGMAS[1]),
    ("relu", 3, *SIGMAS[0]),
    ("identity", 1, *SIGMAS[1]),
    ("identity", 2, *SIGMAS[0]),
]


@pytest.mark.parametrize("activation, depth, sigma_w, sigma_b", MC_CASES)
def test_analytic_kernels_match_monte_carlo_within_4_standard_errors(
    activation, depth, sigma_w, sigma_b
):
    kern = fc_kernel(X, depth=depth, activation=activation, sigma_w=sigma_w, sigma_b=sigma_b)
    net = _shared_net(activation, depth, sigma_w, sigma_b)
    _assert_matches_monte_carlo(kern, net, depth * 7 + int(10 * sigma_w))


def test_leaky_relu_matches_monte_carlo():
    act = "leaky_relu:0.3"
    kern = fc_kernel(X, depth=2, activation=act, sigma_w=1.4, sigma_b=0.1)
    _assert_matches_monte_carlo(kern, _shared_net(act, 2, 1.4, 0.1), 2 * 7 + 14)


# One kinked (relu) and one smooth (gelu) activation: the quadrature path does not
# depend on which; tests/theory/test_closed_forms.py checks it against every closed form.
@pytest.mark.parametrize("name", ["relu", "gelu"])
@pytest.mark.parametrize("scale", [1.0, 6.0])  # K(x, x) ~ 2 and ~ 80 (S = 16)
def test_quadrature_matches_closed_forms(name, scale):
    x = scale * np.random.default_rng(0).normal(size=(5, 5))
    kw = dict(depth=3, sigma_w=1.5, sigma_b=0.05)
    closed = fc_kernel(x, activation=name, **kw)
    quad = fc_kernel(x, activation=Activation.from_fn(get_activation(name).fn), **kw)
    for kind in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(quad, kind), getattr(closed, kind), rtol=1e-9)
    dq = fc_kernel(x, activation=Activation.from_fn(get_activation(name).fn), diagonal=True, **kw)
    np.testing.assert_allclose(dq.ntk, np.diag(closed.ntk), rtol=1e-9)


@pytest.mark.parametrize("activation", ["erf", "relu", "identity", "tanh"])
def test_gram_is_symmetric_psd_and_diagonal_mode_agrees(activation):
    x = np.random.default_rng(1).normal(size=(40, 6))
    x[5] = x[4]  # a duplicate point: the Gram is singular but must stay PSD
    kern = fc_kernel(x, depth=3, activation=activation, sigma_w=1.5, sigma_b=0.05)
    diag = fc_kernel(x, depth=3, activation=activation, sigma_w=1.5, sigma_b=0.05, diagonal=True)
    for kind in ("nngp", "ntk"):
        k = np.asarray(getattr(kern, kind))
        np.testing.assert_array_equal(k, k.T)
        eig = np.linalg.eigvalsh(k)
        assert eig[0] >= -1e-9 * eig[-1]
        np.testing.assert_allclose(np.diag(k), getattr(diag, kind), rtol=1e-12)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_tiled_gram_equals_one_block(activation):
    n = DEFAULT_TILE + 37  # ragged last tile
    x = np.random.default_rng(2).normal(size=(n, 3))
    kw = dict(depth=2, activation=activation, sigma_w=1.3, sigma_b=0.2)
    tiled = fc_kernel(x, tile=128, **kw)
    whole = fc_kernel(x, tile=n, **kw)
    cross_tiled = fc_kernel(x, x[:200], tile=64, **kw)
    cross_whole = fc_kernel(x, x[:200], tile=n, **kw)
    # Tiles and the one block are differently fused XLA programs, equal to rounding: 1e-12
    # of the matrix's scale. An entrywise bound fails where K = sw^2 E[phi phi] + sb^2
    # cancels to ~1e-5 (the sum's rounding, ~1e-17 absolute, is then 1e-12 relative).
    for kind in ("nngp", "ntk"):
        for got, want in ((tiled, whole), (cross_tiled, cross_whole)):
            want = np.asarray(getattr(want, kind))
            np.testing.assert_allclose(
                getattr(got, kind), want, rtol=1e-12, atol=1e-12 * np.abs(want).max()
            )


def test_tiled_quadrature_gram_equals_one_block():
    # Quadrature (through Activation.from_fn) at a ragged tiling: pairs are integrated
    # with their variances in a fixed order, so mirrored tiles equal the one block. One
    # smooth activation: the tiling does not depend on which function is integrated.
    x = np.random.default_rng(4).normal(size=(37, 3))
    kw = dict(depth=2, activation=Activation.from_fn(get_activation("gelu").fn), sigma_w=1.3)
    tiled, whole = fc_kernel(x, tile=16, **kw), fc_kernel(x, tile=64, **kw)
    for kind in ("nngp", "ntk"):
        want = np.asarray(getattr(whole, kind))
        np.testing.assert_allclose(
            getattr(tiled, kind), want, rtol=1e-12, atol=1e-12 * np.abs(want).max()
        )


PER_LAYER = dict(
    depth=2, activation=["erf", "relu"], sigma_w=[1.2, 1.6, 0.9], sigma_b=[0.1, 0.0, 0.3]
)


def test_per_layer_settings_match_the_recursion_by_hand():
    # By hand (docs/theory.md §2.1-§2.2): erf then relu, each dense layer its own scales.
    kern = fc_kernel(X, **PER_LAYER)
    sw, sb = PER_LAYER["sigma_w"], PER_LAYER["sigma_b"]
    k = sw[0] ** 2 * X @ X.T / X.shape[1] + sb[0] ** 2
    theta = k
    d = np.diag(k)
    s = 2 * k / np.sqrt(np.outer(1 + 2 * d, 1 + 2 * d))
    e = 2 / np.pi * np.arcsin(s)
    ed = 4 / np.pi / np.sqrt(np.outer(1 + 2 * d, 1 + 2 * d) - 4 * k**2)
    k = sw[1] ** 2 * e + sb[1] ** 2
    theta = k + sw[1] ** 2 * ed * theta
    d = np.diag(k)
    c = np.clip(k / np.sqrt(np.outer(d, d)), -1, 1)
    t = np.arccos(c)
    e = np.sqrt(np.outer(d, d)) * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi)
    k = sw[2] ** 2 * e + sb[2] ** 2
    theta = k + sw[2] ** 2 * (np.pi - t) / (2 * np.pi) * theta
    np.testing.assert_allclose(kern.nngp, k, rtol=1e-10)
    np.testing.assert_allclose(kern.ntk, theta, rtol=1e-10)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_per_layer_finite_networks_match_the_kernels_within_4_standard_errors(parameterization):
    # Three activations, every dense layer its own scales (readout included), a layer
    # without bias, unequal widths.
    widths = [WIDTH, 3 * WIDTH // 4, WIDTH // 2]
    layers = dict(
        activation=["erf", "relu", "tanh"],
        sigma_w=[1.2, 1.6, 0.9, 1.1],
        sigma_b=[0.1, 0.0, 0.3, 0.2],
    )
    arch = FC(depth=3, parameterization=parameterization, widths=widths, **layers)
    net = FCNetwork.from_arch(arch, out_dim=OUTPUTS)
    assert net.widths == tuple(widths) and net.parameterization == parameterization
    _assert_matches_monte_carlo(fc_kernel(X, arch=arch), net, 11)


def test_standard_parameterisation_ntk_grows_with_width_and_keeps_the_nngp():
    kw = dict(depth=2, activation="relu", sigma_w=1.4, sigma_b=0.2)
    ntk_param = fc_kernel(X, **kw)
    std = fc_kernel(X, parameterization="standard", widths=[50, 80], **kw)
    np.testing.assert_allclose(std.nngp, ntk_param.nngp, rtol=1e-12)
    # By hand: Theta^1 = <x, x'> + 1, Theta^{l+1} = n_l E + 1 + sw^2 E' Theta^l.
    sw, sb = 1.4, 0.2
    k = sw**2 * X @ X.T / X.shape[1] + sb**2
    theta = X @ X.T + 1
    for n in (50, 80):
        d = np.diag(k)
        c = np.clip(k / np.sqrt(np.outer(d, d)), -1, 1)
        t = np.arccos(c)
        e = np.sqrt(np.outer(d, d)) * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi)
        theta = n * e + 1 + sw**2 * (np.pi - t) / (2 * np.pi) * theta
        k = sw**2 * e + sb**2
    np.testing.assert_allclose(std.ntk, theta, rtol=1e-10)
    with pytest.raises(ValueError, match="widths"):
        fc_kernel(X, parameterization="standard", **kw)


def test_dtype_follows_inputs_and_get_selects():
    x = np.random.default_rng(3).normal(size=(6, 3))
    k32 = fc_kernel(x.astype(np.float32), depth=2, activation="erf", sigma_w=1.5, sigma_b=0.05)
    k64 = fc_kernel(x, depth=2, activation="erf", sigma_w=1.5, sigma_b=0.05)
    assert k32.ntk.dtype == jnp.float32 and k64.ntk.dtype == jnp.float64
    np.testing.assert_allclose(k32.ntk, k64.ntk, rtol=1e-5)
    only = fc_kernel(x, depth=2, activation="erf", sigma_w=1.5, sigma_b=0.05, get="nngp")
    assert only.ntk is None
    np.testing.assert_array_equal(only.nngp, k64.nngp)


def test_depth_one_identity_is_the_linear_kernel():
    # Written out by hand from docs/theory.md §2: two layers of K -> sw^2 K + sb^2.
    sw, sb = 1.3, 0.4
    k1 = sw**2 * X @ X.T / X.shape[1] + sb**2
    k2 = sw**2 * k1 + sb**2
    kern = fc_kernel(X, depth=1, activation="identity", sigma_w=sw, sigma_b=sb)
    np.testing.assert_allclose(kern.nngp, k2, rtol=1e-12)
    np.testing.assert_allclose(kern.ntk, k2 + sw**2 * k1, rtol=1e-12)


GOOD = dict(depth=2, activation="erf", sigma_w=1.5, sigma_b=0.05)


@pytest.mark.parametrize(
    "x1, x2, kwargs, field",
    [
        (X, np.ones((2, 3)), {}, "feature dimension"),
        (np.array([[1.0, np.nan]]), None, {}, "x1"),
        (X, np.array([[np.inf, 0, 0, 0]]), {}, "x2"),
        (X, None, {"depth": 0}, "depth"),
        (X, None, {"sigma_w": 0.0}, "sigma_w"),
        (X, None, {"sigma_b": -0.1}, "sigma_b"),
        (X, None, {"activation": "swish9"}, "activation"),
        (X, None, {"get": ("nngp", "cka")}, "get"),
        (X, None, {"tile": 0}, "tile"),
    ],
)
def test_bad_input_is_rejected_naming_the_argument(x1, x2, kwargs, field):
    with pytest.raises(ValueError, match=field):
        fc_kernel(x1, x2, **{**GOOD, **kwargs})
