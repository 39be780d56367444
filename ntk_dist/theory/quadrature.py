"""Gaussian expectations of any elementwise function by quadrature (docs/theory.md §2.3).

For (u, v) ~ N(0, [[a, k], [k, b]]) the layer transforms need E[phi(u) phi(v)] and
E[phi'(u) phi'(v)]. In the whitened variables z ~ N(0, I_2), written in polar
coordinates z = r (cos p, sin p),

    u = sqrt(a) r cos p,   v = sqrt(b) r cos(p - t),   cos t = k / sqrt(a b),

with density r exp(-r^2 / 2) dr dp / (2 pi). The nodes are therefore placed relative
to each pair's standard deviations, and the lines u = 0 and v = 0 (where relu-like
activations have their kinks) are the rays p = +-pi/2 and p = t +- pi/2 at every
correlation: the circle is cut there into four sectors (widths pi - t, t, pi - t, t)
on which the integrand is as smooth as phi away from 0, so correlations at or near
+-1 (t -> 0 or pi) cost no accuracy.

Node rule (composite Gauss-Legendre, ``NODES`` = 12 nodes per panel), with
S = max(1, sqrt(max(a, b))) the largest standard deviation in phi's own units:

- radius: [0, ``RADIUS``] (the Gaussian mass beyond is e^{-RADIUS^2/2} < 1e-21) in
  panels at most 1 wide in r and at most 2 / S (2 units of u);
- angle: each sector in the same number of panels, at most ``ANGLE / S`` radians
  (about RADIUS * S * ANGLE / S = 2 units of u at the largest radius); thin sectors
  are then over-resolved, never under-resolved.

A panel spanning at most 2 units of phi's argument integrates sin, gelu, tanh or a
Gaussian bump of unit width to ~1e-16 with 12 nodes (Gauss-Legendre error
~ h^{2n} / (2n)! for a function of unit bandwidth), so the rule holds 1e-9 relative
(of sqrt(E[phi(u)^2] E[phi(v)^2])) for K(x, x) in [1e-3, 1e3]; the test suite checks
it against the closed forms of one activation per kind of integrand feature (a kink, a
jump, a smooth bump, oscillation, exponential growth). The node count is static
(one compiled program per scale class), chosen from the largest diagonal of the
layer: S is rounded up to a power of 2 so nearby inputs share a compilation.
Cost: (4 NODES P_a) x (NODES P_r) activation calls per entry, 9,216 at S = 1 and
~1e7 at K = 1e3 (S = 32): quadrature is for activations without a closed form.

Each pair is evaluated with (a, b) ordered (a <= b), so the result is symmetric in
its two inputs bit for bit and a tiled Gram equals the one-block Gram.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

NODES = 24  # Gauss-Legendre nodes per panel
RADIUS = 10.0  # integrate r over [0, RADIUS]
SPAN = 16.0  # the most units of phi's argument one panel spans
STEP = 4.0  # the widest radial panel, in standard deviations


def scale_class(max_diag: float) -> int:
    """S = max(1, sqrt(max_diag)) rounded up to a power of two (the static node class)."""
    s = math.sqrt(max(float(max_diag), 1.0))
    return 1 << max(0, math.ceil(math.log2(s) - 1e-12))


def panel_counts(scale: int) -> tuple[int, tuple[int, ...]]:
    """(radial panels, angular panels per sector in each radial panel) for ``scale``."""
    radial = math.ceil(RADIUS / min(STEP, SPAN / scale))
    outer = [RADIUS * (j + 1) / radial for j in range(radial)]
    return radial, tuple(math.ceil(math.pi * r * scale / SPAN) for r in outer)


def _composite(panels: int, grade_low: bool, grade_high: bool, levels: int):
    """Gauss-Legendre nodes and weights on [0, 1]: ``panels`` equal panels, the end
    panels at a graded end split geometrically (widths h / 2^levels, ..., h / 2), so a
    feature of phi at 0 (a kink smoothed over one unit: gelu', erf', a Gaussian bump),
    which lies at a sector's edge, is resolved at any scale."""
    h = 1.0 / panels
    fine = [h * 2.0**-k for k in range(levels, 0, -1)]
    edges = list(np.linspace(0.0, 1.0, panels + 1))
    if grade_low:
        edges = [0.0, *fine, *edges[1:]]
    if grade_high:
        edges = [*edges[:-1], *(1.0 - f for f in reversed(fine)), 1.0]
    edges = np.asarray(edges)
    t, w = np.polynomial.legendre.leggauss(NODES)
    lo, width = edges[:-1, None], np.diff(edges)[:, None]
    return (lo + width * (t + 1) / 2).ravel(), (width * w / 2).ravel()


@functools.cache
def polar_nodes(scale: int):
    """The flat polar rule of ``scale``: radius r, sector index, position in the sector
    (in [0, 1]) and weight (radial density and Gauss-Legendre weights; multiply by the
    sector's width), one entry per node."""
    radial, angular = panel_counts(scale)
    levels = scale.bit_length() - 1  # log2(scale): graded down to ~1 / scale
    parts = []
    for j, n_a in enumerate(angular):
        # Band j of the radius; its first panel is graded towards r = 0.
        z, wz = _composite(1, j == 0, False, levels)
        r = RADIUS * (j + z) / radial
        wr = RADIUS * wz / radial * r * np.exp(-r * r / 2) / (2 * math.pi)
        unit, wu = _composite(n_a, True, True, levels)
        for sector in range(4):
            parts.append(
                (
                    np.repeat(r, unit.size),
                    np.full(r.size * unit.size, sector),
                    np.tile(unit, r.size),
                    np.outer(wr, wu).ravel(),
                )
            )
    return tuple(np.concatenate(col) for col in zip(*parts, strict=True))


def _elementwise_grad(fn):
    g = jax.grad(fn)
    return lambda h: jax.vmap(g)(h.ravel()).reshape(h.shape)


def cross_transform(fn, scale: int):
    """(k12, d1, d2) -> (E[phi(u) phi(v)], E[phi'(u) phi'(v)]) by the polar rule."""
    dfn = _elementwise_grad(fn)
    r_np, sector_np, unit_np, w_np = polar_nodes(scale)

    def cross(k12, d1, d2):
        shape = jnp.broadcast_shapes(k12.shape, d1.shape, d2.shape)
        k12, d1, d2 = (jnp.broadcast_to(x, shape).ravel() for x in (k12, d1, d2))
        dtype = k12.dtype
        r, unit, w = (jnp.asarray(a, dtype) for a in (r_np, unit_np, w_np))
        sector = jnp.asarray(sector_np)

        def one(args):
            k, a, b = args
            lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)  # symmetric in (a, b)
            ra, rb = jnp.sqrt(lo), jnp.sqrt(hi)
            c = jnp.clip(k / jnp.where(ra * rb > 0, ra * rb, 1), -1.0, 1.0)
            t = jnp.arctan2(jnp.sqrt(1 - c * c), c)
            half = math.pi / 2
            starts = jnp.stack([t - half, half + 0 * t, t + half, 3 * half + 0 * t])
            widths = jnp.stack([math.pi - t, t, math.pi - t, t])
            p = starts[sector] + widths[sector] * unit
            ww = w * widths[sector]
            u = ra * r * jnp.cos(p)
            v = rb * r * jnp.cos(p - t)
            return jnp.sum(ww * fn(u) * fn(v)), jnp.sum(ww * dfn(u) * dfn(v))

        batch = max(1, 2**18 // r_np.size)
        e, ed = jax.lax.map(one, (k12, d1, d2), batch_size=batch)
        return e.reshape(shape), ed.reshape(shape)

    return cross


def diag_transform(fn, scale: int):
    """d -> (E[phi(u)^2], E[phi'(u)^2]) for u ~ N(0, d): the same radial rule on the
    line, split at the kink u = 0."""
    dfn = _elementwise_grad(fn)
    zn, zw = _composite(panel_counts(scale)[0], True, False, scale.bit_length() - 1)

    def diag(d):
        dtype = d.dtype
        z = jnp.asarray(zn * RADIUS, dtype)
        wz = jnp.asarray(zw * RADIUS, dtype) * jnp.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        u = jnp.sqrt(d)[..., None] * z
        e = jnp.sum(wz * (fn(u) ** 2 + fn(-u) ** 2), -1)
        ed = jnp.sum(wz * (dfn(u) ** 2 + dfn(-u) ** 2), -1)
        return e, ed

    return diag
