"""The float32 fast path of the closed-form kernels (docs/theory.md §2.4): its arcsin and
arccos against NumPy's float64 ones, and float32 Grams against float64 Grams."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_dist import fc_kernel
from ntk_dist.theory import fast32


def _grid():
    dense = np.linspace(-1, 1, 200001)
    ends = 1 - np.logspace(-9, 0, 2000)  # near +/-1, where sqrt(1 - |x|) carries the shape
    return np.clip(np.concatenate([dense, ends, -ends, [0.0, 1.0, -1.0]]), -1, 1).astype(np.float32)


@pytest.mark.parametrize("name", ["arccos", "arcsin"])
def test_float32_forms_are_within_the_stated_bound(name):
    x = _grid()
    got = np.asarray(jax.jit(getattr(fast32, name))(jnp.asarray(x)), np.float64)
    want = getattr(np, name)(x.astype(np.float64))
    assert got.dtype == np.float64 and np.abs(got - want).max() < fast32.ERROR_BOUND


def test_companions_sine_and_rsqrt():
    x = _grid()
    xd = x.astype(np.float64)
    _, sine = jax.jit(fast32.arccos_and_sine)(jnp.asarray(x))
    _, rsq = jax.jit(fast32.arcsin_and_rsqrt)(jnp.asarray(x))
    assert np.abs(np.asarray(sine, np.float64) - np.sqrt(1 - xd * xd)).max() < 3e-7
    inner = np.abs(xd) < 1  # at |s| = 1 the rsqrt is of the guard, tiny
    want = 1 / np.sqrt(1 - xd[inner] ** 2)
    assert (np.abs(np.asarray(rsq, np.float64)[inner] - want) / want).max() < 3e-7


def test_rsqrt_from_multiplications():
    # Every binade's mantissas, at the ends of the normal range and in between.
    mantissas = np.linspace(1, 4, 20001)[:-1]
    x = np.concatenate([mantissas * 2.0**e for e in (-126, -40, -1, 0, 1, 63, 125)])
    x = x.astype(np.float32)
    got = np.asarray(jax.jit(fast32.rsqrt)(jnp.asarray(x)), np.float64)
    want = 1 / np.sqrt(x.astype(np.float64))
    assert (np.abs(got - want) / want).max() < fast32.RSQRT_ERROR_BOUND
    zero = jnp.zeros(3, jnp.float32)
    np.testing.assert_array_equal(jax.jit(lambda z: z * fast32.rsqrt(z))(zero), 0.0)


@pytest.mark.parametrize(
    "activation, tile", [("erf", None), ("relu", None), ("abs", None), ("erf", 128), ("relu", 128)]
)
def test_float32_gram_is_within_1e5_of_float64(activation, tile):
    # Relative to the entries' scale sqrt(K(x, x) K(x', x')): erf kernels cross zero, so an
    # entrywise ratio is unbounded for any float32 computation, X X^T's rounding included.
    # tile=128: the tiled path (a ragged last tile), whose float32 tiles come packed.
    x = np.random.default_rng(0).normal(size=(200, 64))
    kw = dict(depth=3, activation=activation, sigma_w=1.5, sigma_b=0.05)
    k32, k64 = fc_kernel(x.astype(np.float32), tile=tile, **kw), fc_kernel(x, **kw)
    for name in ("nngp", "ntk"):
        lo, hi = np.asarray(getattr(k32, name), np.float64), np.asarray(getattr(k64, name))
        assert getattr(k32, name).dtype == jnp.float32
        diag = np.diag(hi)
        scale = np.sqrt(np.outer(diag, diag))
        assert (np.abs(lo - hi) / scale).max() < 1e-5, name
