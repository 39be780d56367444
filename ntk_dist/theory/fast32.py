"""Cheaper float32 forms of the transcendentals on the Gram's hot path (docs/theory.md §2.4).

Used by the erf and ABRelu closed forms (:mod:`ntk_dist.theory.closed_forms`) when the
kernel is computed in float32; float64 keeps the library functions (``jnp.arcsin``,
``jnp.arctan2``) and their exactness.

arccos(x) = sqrt(1 - x) P(x) for 0 <= x <= 1, P of degree 7 (Abramowitz & Stegun 1964,
Eq. 4.4.46), with |error| <= 2e-8 absolute in exact arithmetic; arccos(-x) =
pi - arccos(x) and arcsin(x) = pi/2 - arccos(x) extend it to [-1, 1]. Evaluated in
float32 (Horner, one sqrt) the measured error over a dense grid of [-1, 1] is below
4.3e-7 (arccos) and 2.5e-7 (arcsin) absolute, about two float32 ulps of pi, the order
of float32's own rounding of the result (XLA's arccos: 2.6e-7); the tests check
``ERROR_BOUND`` = 5e-7 against NumPy's float64 arccos/arcsin. This replaces XLA's
atan2 (relu) and arcsin (erf), whose CPU expansions cost several times the
polynomial. Relative to the kernel's scale sqrt(K(x, x) K(x', x')) the resulting
depth-3 Grams stay within 1e-5 of float64 (measured 7e-7 for erf, 3e-7 for relu at
N = 1024; bench/bench_kernels.py checks N = 8192).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

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


def _arccos_abs(x):
    """arccos(|x|) for |x| <= 1: sqrt(1 - |x|) P(|x|)."""
    a = jnp.abs(x)
    p = jnp.full_like(a, _ARCCOS[-1])
    for coef in _ARCCOS[-2::-1]:
        p = p * a + coef
    return jnp.sqrt(jnp.maximum(1 - a, 0)) * p


def arccos(x):
    """arccos(x) on [-1, 1] within ``ERROR_BOUND`` (module docstring)."""
    t = _arccos_abs(x)
    return jnp.where(x < 0, math.pi - t, t)


def arcsin(x):
    """arcsin(x) on [-1, 1] within ``ERROR_BOUND`` (module docstring)."""
    return jnp.copysign(math.pi / 2 - _arccos_abs(x), x)


def is_fast(x) -> bool:
    """Whether the float32 forms apply to arrays like ``x`` (float32; float64 stays exact)."""
    return x.dtype == jnp.float32
