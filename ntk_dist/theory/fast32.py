"""Cheaper float32 forms of the transcendentals on the Gram's hot path (docs/theory.md §2.4).

Used by the erf and ABRelu closed forms (:mod:`ntk_dist.theory.closed_forms`) when the
kernel is computed in float32; float64 keeps the library functions (``jnp.arcsin``,
``jnp.arctan2``) and their exactness.

arccos(x) = sqrt(1 - x) P(x) for 0 <= x <= 1, P of degree 7 (Abramowitz & Stegun 1964,
Eq. 4.4.46), with |error| <= 2e-8 absolute in exact arithmetic; arccos(-x) =
pi - arccos(x) and arcsin(x) = pi/2 - arccos(x) extend it to [-1, 1]. Evaluated in
float32 (Horner, one sqrt) the measured error over a dense grid of [-1, 1] is below
4.3e-7 (arccos) and 4.0e-7 (arcsin) absolute, about two float32 ulps of pi, the order
of float32's own rounding of the result (XLA's arccos: 2.6e-7); the tests check
``ERROR_BOUND`` = 5e-7 against NumPy's float64 arccos/arcsin. This replaces XLA's
atan2 (relu) and arcsin (erf), whose CPU expansions cost several times the
polynomial.

The companions each kernel needs reuse the same root, so that an entry costs one
rsqrt per layer: relu's sqrt(1 - c^2) = sqrt(1 - |c|) sqrt(1 + |c|) and erf's
1 / sqrt(1 - s^2) = rsqrt(1 - |s|) / sqrt(1 + |s|), with sqrt(1 + x) and 1 / sqrt(1 + x)
on [0, 1] as Chebyshev interpolants of degree 7 and 9 (within 3e-8 and 1.2e-8
relative; measured in float32: 1.8e-7 absolute and 2.1e-7 relative, tested).

That rsqrt is itself written with multiplications and additions (:func:`rsqrt`: the
bit-level first guess 0x5F3759DF - (bits >> 1) and three Newton steps). XLA's CPU fuser
treats sqrt and rsqrt as expensive and will not copy one into several consumers, so
each of them used to be written out as a tile-sized array, with the cheap arithmetic
before it recomputed in every later loop; with none left, a whole depth-L recursion is
one loop over the tile (docs/theory.md §2.4, bench/RESULTS.md).

Relative to the kernel's scale sqrt(K(x, x) K(x', x')), depth-3 Grams stay within 1e-5
of float64 (measured 1.0e-6 for erf, 2.6e-7 for relu at N = 1024;
bench/bench_kernels.py checks N = 8192).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import chebyshev as cheb

# Abramowitz & Stegun 1964, Eq. 4.4.46: arccos(x) = sqrt(1 - x) sum_k a_k x^k, 0 <= x <= 1.
_ARCCOS = (
    1.5707963050,
    -0.2145988016,
    0.0889789874,
    -0.0501743046,
    0.0308918810,
    -0.0170881256,
    0.0066700901,
    -0.0012624911,
)

#: Measured float32 error bound of :func:`arccos` and :func:`arcsin` (absolute, radians).
ERROR_BOUND = 5e-7


def _chebyshev_fit(f, degree: int) -> tuple:
    """Monomial coefficients in u = 2x - 1 of the degree-``degree`` Chebyshev
    interpolant of f on x in [0, 1] (400 Chebyshev nodes)."""
    u = np.cos(np.pi * (np.arange(400) + 0.5) / 400)
    return tuple(float(c) for c in cheb.cheb2poly(cheb.chebfit(u, f((u + 1) / 2), degree)))


# sqrt(1 + x) and 1 / sqrt(1 + x) on [0, 1]: analytic there (the branch point is at -1),
# so degree 7 and 9 interpolants are within 3e-8 and 1.2e-8 relative.
_SQRT1P = _chebyshev_fit(lambda x: np.sqrt(1 + x), 7)
_RSQRT1P = _chebyshev_fit(lambda x: 1 / np.sqrt(1 + x), 9)


#: Measured float32 relative error bound of :func:`rsqrt` on normal floats.
RSQRT_ERROR_BOUND = 3e-7


def rsqrt(x):
    """1 / sqrt(x) for float32 x that is 0 or a normal positive float, by multiplications
    and additions only (module docstring). The first guess is within 3.5e-2 relative and
    each Newton step y (3 - x y^2) / 2 squares the error (times 1.5): 1.8e-3, 4.6e-6,
    3e-11, so three steps reach float32 rounding (measured below 3e-7 relative, tested).
    At x = 0 it returns a finite 1.3e19, so that x * rsqrt(x) = 0 = sqrt(0)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    y = jax.lax.bitcast_convert_type(jnp.int32(0x5F3759DF) - (bits >> 1), x.dtype)
    for _ in range(3):
        # (x y) y: at x = 0, y^2 would overflow; x / 2 would be flushed to 0 at x = tiny.
        y = y * (1.5 - 0.5 * ((x * y) * y))
    return y


def _horner(coefs, x):
    p = jnp.full_like(x, coefs[-1])
    for coef in coefs[-2::-1]:
        p = p * x + coef
    return p


def _arccos_abs(a, root):
    """arccos(a) for 0 <= a <= 1, given root = sqrt(1 - a): root P(a)."""
    return root * _horner(_ARCCOS, a)


def arccos_and_sine(c):
    """(arccos(c), sqrt(1 - c^2)) for |c| <= 1 with one rsqrt per entry: both are
    sqrt(1 - |c|) times a polynomial in |c| (module docstring)."""
    a = jnp.abs(c)
    w = jnp.maximum(1 - a, 0)  # 0 or at least 2^-24: a normal float, as rsqrt needs
    root = w * rsqrt(w)
    t = _arccos_abs(a, root)
    return jnp.where(c < 0, math.pi - t, t), root * _horner(_SQRT1P, 2 * a - 1)


def arcsin_and_rsqrt(s):
    """(arcsin(s), 1 / sqrt(max(1 - s^2, tiny))) for |s| <= 1 with one rsqrt per entry:
    sqrt(1 - |s|) = w rsqrt(w), w = 1 - |s|, and 1 / sqrt(1 + |s|) is a polynomial."""
    a = jnp.abs(s)
    w = jnp.maximum(1 - a, jnp.finfo(s.dtype).tiny)
    inv = rsqrt(w)
    asin = jnp.copysign(math.pi / 2 - _arccos_abs(a, w * inv), s)
    return asin, inv * _horner(_RSQRT1P, 2 * a - 1)


def arccos(x):
    """arccos(x) on [-1, 1] within ``ERROR_BOUND`` (module docstring)."""
    return arccos_and_sine(x)[0]


def arcsin(x):
    """arcsin(x) on [-1, 1] within ``ERROR_BOUND`` (module docstring)."""
    return arcsin_and_rsqrt(x)[0]


def is_fast(x) -> bool:
    """Whether the float32 forms apply to arrays like ``x`` (float32; float64 stays exact)."""
    return x.dtype == jnp.float32
