"""Finite networks: the forward pass follows docs/theory.md §1 written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_dist.models.networks import CatapultToy, FCNetwork, param_count


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
