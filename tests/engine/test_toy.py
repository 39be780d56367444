"""The toy's closed forms (ntk_dist.engine.toy) against autodiff and the empirical NTK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_dist.engine import toy
from ntk_dist.engine.chunks import TOY_CHUNK_BYTES, toy_chunk
from ntk_dist.models.empirical import sharpness
from ntk_dist.models.networks import CatapultToy
from tests.tolerances import rtol


@pytest.mark.parametrize(("m", "d", "k"), [(1, 1, 1), (3, 2, 2)])
def test_gradient_and_sharpness_equal_autodiff(m, d, k):
    with jax.enable_x64(True):
        model = CatapultToy(width=32, out_dim=k)
        params = model.init(jax.random.PRNGKey(m), d, jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(10 + m), (m, d), jnp.float64)
        y = jax.random.normal(jax.random.PRNGKey(20 + m), (m, k), jnp.float64)
        w = jnp.linspace(0.5, 1.5, m)
        objective = lambda p: 0.5 * jnp.sum(w[:, None] * (model.apply(p, x) - y) ** 2)
        want = jax.grad(objective)(params)
        rows = toy.to_rows(params)
        f, got = toy.value_and_grad(model, rows, x, y, w)
        tol = rtol(np.float64)
        np.testing.assert_allclose(f, model.apply(params, x), rtol=tol)
        for name in ("u", "v"):
            np.testing.assert_allclose(toy.from_rows(got)[name], want[name], rtol=tol)
        np.testing.assert_allclose(
            toy.ntk_sharpness(model, rows, x), sharpness(model, params, x), rtol=tol
        )


def test_one_point_sharpness_is_the_closed_form():
    # docs/theory.md §5: lambda = (|u x|^2 + |v|^2 |x|^2) / n for one point, one output.
    with jax.enable_x64(True):
        model = CatapultToy(width=16)
        params = model.init(jax.random.PRNGKey(3), 1, jnp.float64)
        x = jnp.asarray([[1.7]])
        u, v = np.asarray(params["u"]), np.asarray(params["v"])
        want = (np.sum((u * 1.7) ** 2) + np.sum(v**2) * 1.7**2) / 16
        got = toy.ntk_sharpness(model, toy.to_rows(params), x)
        np.testing.assert_allclose(got, want, rtol=rtol(np.float64))


def test_closed_form_only_where_it_is_the_asked_sharpness():
    model = CatapultToy(width=8)
    assert toy.has_closed_form(model, "ntk", "auto", 4, 1)
    assert not toy.has_closed_form(model, "ntk", "lanczos", 4, 1)
    assert not toy.has_closed_form(model, "ntk", "auto", toy.DENSE_MAX_ROWS + 1, 1)
    assert not toy.has_closed_form(model, "hessian", "dense", 4, 1)


@pytest.mark.parametrize(("width", "itemsize", "want"), [(4096, 8, 4), (4096, 4, 8), (1024, 8, 16)])
def test_toy_chunk_fills_the_cache_budget(width, itemsize, want):
    n_params = CatapultToy(width=width).n_params(1)
    assert toy_chunk(n_params, itemsize) == want
    assert toy_chunk(n_params, itemsize) * n_params * itemsize <= TOY_CHUNK_BYTES
    assert toy_chunk(10**9, 8) == 1
