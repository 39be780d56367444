"""Finite networks: the forward pass follows docs/theory.md §1 written out by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_dist.models.networks import CatapultToy, FCNetwork, param_count
from ntk_dist.theory.architecture import FC
from tests.models.numpy_nets import sp_forward, standard_tanh_net


def test_fc_forward_matches_handwritten_ntk_parameterisation():
    net = FCNetwork(widths=(7, 5), out_dim=2, activation="relu", sigma_w=1.3, sigma_b=0.2)
    params = net.init(jax.random.PRNGKey(0), 3, jnp.float64)
    x = np.random.default_rng(0).normal(size=(4, 3))
    h = x
    for i, layer in enumerate(params):
        w, b = np.asarray(layer["w"]), np.asarray(layer["b"])
        h = h @ (1.3 / np.sqrt(w.shape[0]) * w) + 0.2 * b
        if i < len(params) - 1:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(net.apply(params, x), h, rtol=1e-12)
    assert param_count(params) == 3 * 7 + 7 + 7 * 5 + 5 + 5 * 2 + 2


PER_LAYER = dict(
    activation=["erf", "relu", "tanh"], sigma_w=[1.2, 1.6, 0.9, 0.7], sigma_b=[0.1, 0.0, 0.3, 0.2]
)
PHIS = [lambda h: np.vectorize(math.erf)(h), lambda h: np.maximum(h, 0), np.tanh]


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_per_layer_forward_matches_handwritten(parameterization):
    net = FCNetwork((7, 5, 6), 2, parameterization=parameterization, **PER_LAYER)
    params = net.init(jax.random.PRNGKey(5), 3, jnp.float64)
    x = np.random.default_rng(4).normal(size=(4, 3))
    ntk_params = FCNetwork((7, 5, 6), 2, **PER_LAYER).init(jax.random.PRNGKey(5), 3, jnp.float64)
    h = x
    sws, sbs = PER_LAYER["sigma_w"], PER_LAYER["sigma_b"]
    for i, layer in enumerate(ntk_params):
        w, b = np.asarray(layer["w"]), np.asarray(layer["b"])
        h = h @ (sws[i] / np.sqrt(w.shape[0]) * w) + sbs[i] * b
        if i < len(ntk_params) - 1:
            h = PHIS[i](h)
    np.testing.assert_allclose(net.apply(params, x), h, rtol=1e-12)
    assert param_count(params) == net.n_params(3)
    if parameterization == "standard":
        # SP: a layer with sigma_b = 0 has no bias.
        assert ["b" in layer for layer in params] == [True, False, True, True]
        assert net.n_params(3) == 3 * 7 + 7 + 7 * 5 + 5 * 6 + 6 + 6 * 2 + 2


def test_per_layer_settings_round_trip_through_the_architecture():
    arch = FC(depth=3, **PER_LAYER)
    net = FCNetwork.from_arch(arch, [7, 5, 6], 2)
    assert net.arch == arch and net.widths == (7, 5, 6) and net.readout_sigma_w == 0.7
    assert net.weight_scales() == (1.2, 1.6, 0.9, 0.7)
    assert FCNetwork.from_arch(FC(depth=2, widths=[4, 3]), None).widths == (4, 3)
    sp = FCNetwork.from_arch(FC(depth=1, parameterization="standard", widths=[9]))
    assert sp.parameterization == "standard" and sp.widths == (9,)
    # The shared form is stored as before: one value each, readout_sigma_w apart.
    shared = FCNetwork.from_arch(FC(depth=2, sigma_w=1.5), 8, readout_sigma_w=0.5)
    assert (shared.sigma_w, shared.readout_sigma_w) == (1.5, 0.5)
    assert shared == FCNetwork((8, 8), 1, "relu", 1.5, 0.0, readout_sigma_w=0.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: FCNetwork((4, 4), activation=["erf"]), "activation must be one value or a list"),
        (lambda: FCNetwork((4,), sigma_w=[1.0]), "sigma_w must be one value or a list of 2"),
        (lambda: FCNetwork((4,), sigma_b=[0.1, -1.0]), r"sigma_b\[1\]"),
        (lambda: FCNetwork((4,), sigma_w=[1.0, 2.0], readout_sigma_w=1.0), r"sigma_w\[-1\]"),
        (lambda: FCNetwork.from_arch(FC(depth=2), [4]), "list of 2"),
        (lambda: FCNetwork.from_arch(FC(depth=2)), "widths"),
    ],
)
def test_per_layer_settings_are_validated(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_toy_forward_and_ensemble_axis():
    toy = CatapultToy(width=16)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    ens = jax.vmap(toy.init, (0, None, None))(keys, 2, jnp.float64)
    assert ens["u"].shape == (4, 16, 2) and ens["v"].shape == (4, 16, 1)
    x = jnp.array([[1.0, -2.0]])
    out = jax.vmap(toy.apply, (0, None))(ens, x)
    u, v = np.asarray(ens["u"][2]), np.asarray(ens["v"][2])
    np.testing.assert_allclose(out[2], (v.T @ u @ np.array([1.0, -2.0]))[None] / 4, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(widths=(4, -3)), "widths[1]"),
        (dict(widths=(4,), sigma_w=0.0), "sigma_w"),
        (dict(widths=(4,), sigma_b=-0.1), "sigma_b"),
        (dict(widths=(4,), activation="swish9"), "activation"),
        (dict(widths=(4,), out_dim=0), "out_dim"),
    ],
)
def test_fc_rejects_bad_fields(kwargs, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        FCNetwork(**kwargs)


def test_make_rejects_depth_zero():
    with pytest.raises(ValueError, match="depth"):
        FCNetwork.make(depth=0, width=8)


# ---------------------------------------------------------------------------------
# Standard parameterisation (docs/theory.md §1)


@pytest.mark.parametrize("sigma_b", [0.0, 0.3])
def test_standard_forward_matches_numpy_and_initial_variances(sigma_b):
    net, params, layers = standard_tanh_net((40, 30), sigma_b, 0.7, in_dim=50, seed=0)
    x = np.random.default_rng(1).normal(size=(4, 50))
    np.testing.assert_allclose(net.apply(params, x), sp_forward(layers, x, np.tanh), rtol=1e-12)
    assert all(("b" in layer) == (sigma_b > 0) for layer in layers)
    assert param_count(params) == net.n_params(50)
    # W_ij ~ N(0, s^2 / fan_in): hidden s = 1.3, readout s = 0.7 (variance within 4 s.e.).
    for layer, s in zip(layers, (1.3, 1.3, 0.7), strict=True):
        w = layer["w"]
        want = s**2 / w.shape[0]
        assert abs(w.var() - want) < 4 * want * np.sqrt(2 / w.size)


def test_ntk_and_standard_give_the_same_function_at_init():
    kw = dict(
        widths=(9, 7), out_dim=3, activation="relu", sigma_w=1.4, sigma_b=0.2, readout_sigma_w=0.9
    )
    ntk, sp = FCNetwork(**kw), FCNetwork(**kw, parameterization="standard")
    x = np.random.default_rng(2).normal(size=(5, 4))
    theta = ntk.init(jax.random.PRNGKey(3), 4, jnp.float64)
    # Same seed, and explicitly mapped parameters: one function.
    np.testing.assert_allclose(
        sp.apply(sp.init(jax.random.PRNGKey(3), 4, jnp.float64), x), ntk.apply(theta, x), rtol=1e-12
    )
    np.testing.assert_allclose(sp.apply(sp.to_standard(theta), x), ntk.apply(theta, x), rtol=1e-12)


def test_readout_scale_defaults_to_sigma_w_and_ntk_uses_it():
    assert FCNetwork((4,), sigma_w=1.7).readout_sigma_w == 1.7
    net = FCNetwork((6,), 1, "relu", 1.5, 0.0, readout_sigma_w=0.5)
    params = net.init(jax.random.PRNGKey(4), 2, jnp.float64)
    x = np.random.default_rng(3).normal(size=(3, 2))
    w1, w2 = np.asarray(params[0]["w"]), np.asarray(params[1]["w"])
    want = np.maximum(x @ (1.5 / np.sqrt(2) * w1), 0) @ (0.5 / np.sqrt(6) * w2)
    np.testing.assert_allclose(net.apply(params, x), want, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, field",
    [(dict(parameterization="mup"), "parameterization"), (dict(readout_sigma_w=0.0), "readout")],
)
def test_parameterisation_options_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FCNetwork((4,), **kwargs)
