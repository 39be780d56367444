"""Closed-form layer transforms against independent quadrature, and the polar quadrature
path against the closed forms of one activation per kind of integrand feature, over
K(x, x) in [1e-3, 1e3] and correlations in [-1, 1].

Errors are relative to the Cauchy-Schwarz scale sqrt(E[phi(u)^2] E[phi(v)^2]) (for
phi' likewise): the entries themselves may be 0 (odd activations at correlation 0) or
e^{-500} (sin at K = 1e3), where an entrywise relative error means nothing.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from ntk_dist.theory import closed_forms, quadrature
from ntk_dist.theory.activations import get_activation

CLOSED = [
    "erf",
    "erf:1.5,0.7,0.2",
    "relu",
    "leaky_relu:0.2",
    "abs",
    "abrelu:0.3,-0.7",
    "identity",
    "gelu",
    "sign",
    "sin",
    "cos:0.8,1.3,0.4",
    "rbf:0.5",
    "gaussian",
    "gaussian:2,-0.3",
    "exp:1,0.05",
    "monomial:3",
    "rectified_monomial:2",
    "polynomial:0.5,1,-0.3",
]
TOL = 1e-9
# The polar quadrature is one code path for every activation; what its node rule must
# resolve depends on the integrand's features, one activation for each: a kink at 0
# (relu: the sector cuts), a jump with phi' = 0 (sign), a smooth feature of unit width
# at 0 (gelu, gelu': the graded panels), oscillation (sin: the angular panels at large
# K) and growth (exp: the radial cut-off). Each closed form itself is checked against
# the independent reference below.
QUADRATURE = ["relu", "sign", "gelu", "sin", "exp:1,0.05"]


def _grid(big: float):
    """(K12, K11, K22) rows: diagonals from 1e-3 to ``big``, correlations in [-1, 1]
    (the largest scale on fewer correlations: its quadrature costs ~2e6 nodes per entry)."""
    rows = []
    for a, b in [(1e-3, 1e-3), (1.0, 1.0), (1e-3, 1.0), (2.0, 30.0)]:
        for c in (-1.0, -0.999999, -0.5, 0.0, 0.5, 0.99999999, 1.0):
            rows.append((c * math.sqrt(a * b), a, b))
    for a, b in [(big, big), (1.0, big)]:
        for c in (-1.0, 0.3, 0.99999999, 1.0):
            rows.append((c * math.sqrt(a * b), a, b))
    return np.array(rows)


def _scaled_error(got, want, diag_a, diag_b):
    scale = np.sqrt(np.asarray(diag_a) * np.asarray(diag_b))
    return np.abs(np.asarray(got) - np.asarray(want)) / np.where(scale > 0, scale, 1.0)


def _check(name, rows, cross_of_scale):
    act = get_activation(name)
    cross, diag = closed_forms.transforms(act.name, act.params)
    k, d1, d2 = (jnp.asarray(c) for c in rows.T)
    groups = {}
    for i, row in enumerate(rows):
        groups.setdefault(quadrature.scale_class(max(row[1], row[2])), []).append(i)
    for scale, idx in groups.items():
        sel = np.asarray(idx)
        want = cross(k[sel], d1[sel], d2[sel])
        got = cross_of_scale(act, scale)(k[sel], d1[sel], d2[sel])
        (ea, eda), (eb, edb) = diag(d1[sel]), diag(d2[sel])
        err = _scaled_error(got[0], want[0], ea, eb)
        assert err.max() < TOL, (name, "E[phi phi]", rows[sel][err.argmax()], err.max())
        if act.name != "sign":  # phi' = 0: E[phi' phi'] is exactly 0 on both paths
            errd = _scaled_error(got[1], want[1], eda, edb)
            assert errd.max() < TOL, (name, "E[phi' phi']", rows[sel][errd.argmax()], errd.max())


@pytest.mark.slow  # ~2e6 nodes per entry at K = 1e3
@pytest.mark.parametrize("name", QUADRATURE)
def test_quadrature_path_matches_each_closed_form(name):
    big = 1e3 if not name.startswith("exp") else 30.0  # E[exp(u)^2] = e^{2K} overflows
    _check(name, _grid(big), lambda act, scale: quadrature.cross_transform(act.fn, scale))


@pytest.mark.slow
@pytest.mark.parametrize("name", QUADRATURE)
def test_diagonal_transform_matches_closed_form(name):
    act = get_activation(name)
    _, diag = closed_forms.transforms(act.name, act.params)
    for d in (1e-3, 1.0, 30.0, 1e3 if not name.startswith("exp") else 30.0):
        qd = quadrature.diag_transform(act.fn, quadrature.scale_class(d))
        want, got = diag(jnp.asarray([d])), qd(jnp.asarray([d]))
        for w, g in zip(want, got, strict=True):
            assert abs(float(g[0]) - float(w[0])) <= TOL * max(abs(float(w[0])), 1e-300), (d, g, w)


# ---------------------------------------------------------------------------------
# An independent reference: composite Gauss-Legendre in the conditioned variables.
#
# With u = ra z1 and v = rb (c z1 + s z2), z1, z2 ~ N(0, 1) independent, s = sqrt(1 - c^2):
# E[f(u) g(v)] = E_z1[f(ra z1) E_z2[g(rb c z1 + rb s z2)]]. Both integrals run over
# [-12, 12] (the Gaussian beyond carries < e^{-72}) in panels of 16 Gauss-Legendre nodes,
# broken at every place the integrand can change on a shorter scale: where the
# activation's argument crosses its features (0, +-1/4, ..., +-16: kinks and the width of
# erf, gelu, Gaussians), mapped into each variable (for the inner integral, per outer
# node), where the conditional mean crosses them at the conditional width (the smoothed
# kink of a correlation near +-1), and, for sin/cos of frequency w, every 8 / (w r)
# standard deviations (r the scale of the argument), so that each panel is smooth and
# short. Doubling the nodes and quartering the panels changes no value by more than
# 5e-16 of the Cauchy-Schwarz scale on the grid below (checked for erf, relu, abs, sign,
# gelu, sin, the Gaussian and u^3, and their derivatives); for sin, cos and rbf at
# K = 1e3, panels 4x shorter change no value by more than 6e-16 either.

_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_FEATURES = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
_FEATURES = np.unique(np.r_[-_FEATURES, _FEATURES])
_Z = 12.0
_OSC_STEP = 8.0  # panel length for sin/cos: 8 / (w r) standard deviations


def _nodes(extra, step):
    """Gauss-Legendre nodes and N(0, 1)-weighted weights on [-_Z, _Z], broken every
    ``step`` and at ``extra`` (..., E) points (clipped), shape (..., nodes) each."""
    grid = np.linspace(-_Z, _Z, round(2 * _Z / step) + 1)
    grid = np.broadcast_to(grid, extra.shape[:-1] + grid.shape)
    breaks = np.sort(np.concatenate([grid, np.clip(extra, -_Z, _Z)], -1), -1)
    lo, half = breaks[..., :-1, None], (breaks[..., 1:, None] - breaks[..., :-1, None]) / 2
    z = (lo + half * (_GL_X + 1)).reshape(*breaks.shape[:-1], -1)
    w = (half * _GL_W).reshape(z.shape) * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return z, w


def _reference(f, g, k12, a, b, omega):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[a, k12], [k12, b]]), f, g vectorised NumPy
    functions oscillating at frequency ``omega`` (0: not oscillating)."""
    ra, rb = math.sqrt(a), math.sqrt(b)
    c = max(-1.0, min(1.0, k12 / (ra * rb)))
    s = math.sqrt(max(0.0, 1.0 - c * c))
    step = lambda r: 2.0 if omega == 0 else min(2.0, _OSC_STEP / (omega * r))  # noqa: E731
    pts = [_FEATURES / ra] + ([_FEATURES / (rb * abs(c)), _FEATURES * s / abs(c)] if c else [])
    z1, w1 = _nodes(np.concatenate(pts), step(max(ra, rb * abs(c))))
    m = rb * c * z1
    if s == 0.0:
        return float(np.sum(f(ra * z1) * g(m) * w1))
    sigma = rb * s
    inner = np.empty_like(z1)
    for lo in range(0, z1.size, 256):  # outer nodes in chunks: bounded memory
        mm = m[lo : lo + 256, None]
        z2, w2 = _nodes((_FEATURES - mm) / sigma, step(sigma))
        inner[lo : lo + 256] = np.sum(g(mm + sigma * z2) * w2, axis=1)
    return float(np.sum(f(ra * z1) * inner * w1))


_PHI = lambda h: np.exp(-h * h / 2) / math.sqrt(2 * math.pi)  # noqa: E731
_ERF_D = lambda h, a, b: a * b * 2 / math.sqrt(math.pi) * np.exp(-b * b * h * h)  # noqa: E731

# NumPy/SciPy (phi, phi', frequency) for each closed form, independent of the JAX
# activations; phi' None where it is 0 (sign).
_REFERENCE = {
    "erf": (special.erf, lambda h: _ERF_D(h, 1.0, 1.0), 0.0),
    "erf:1.5,0.7,0.2": (
        lambda h: 1.5 * special.erf(0.7 * h) + 0.2,
        lambda h: _ERF_D(h, 1.5, 0.7),
        0,
    ),
    "relu": (lambda h: np.maximum(h, 0.0), lambda h: (h > 0) * 1.0, 0.0),
    "leaky_relu:0.2": (
        lambda h: np.where(h > 0, h, 0.2 * h),
        lambda h: np.where(h > 0, 1.0, 0.2),
        0,
    ),
    "abs": (np.abs, np.sign, 0.0),
    "abrelu:0.3,-0.7": (
        lambda h: 0.3 * np.minimum(h, 0.0) - 0.7 * np.maximum(h, 0.0),
        lambda h: np.where(h > 0, -0.7, 0.3),
        0.0,
    ),
    "identity": (lambda h: h, np.ones_like, 0.0),
    "gelu": (lambda h: h * special.ndtr(h), lambda h: special.ndtr(h) + h * _PHI(h), 0.0),
    "sign": (np.sign, None, 0.0),
    "sin": (np.sin, np.cos, 1.0),
    "cos:0.8,1.3,0.4": (
        lambda h: 0.8 * np.cos(1.3 * h + 0.4),
        lambda h: -0.8 * 1.3 * np.sin(1.3 * h + 0.4),
        1.3,
    ),
    "rbf:0.5": (
        lambda h: math.sqrt(2) * np.sin(h + math.pi / 4),
        lambda h: math.sqrt(2) * np.cos(h + math.pi / 4),
        1.0,
    ),
    "gaussian": (lambda h: np.exp(-h * h), lambda h: -2 * h * np.exp(-h * h), 0.0),
    "gaussian:2,-0.3": (
        lambda h: 2 * np.exp(-0.3 * h * h),
        lambda h: -1.2 * h * np.exp(-0.3 * h * h),
        0.0,
    ),
    "exp:1,0.05": (lambda h: np.exp(0.05 * h), lambda h: 0.05 * np.exp(0.05 * h), 0.0),
    "monomial:3": (lambda h: h**3, lambda h: 3 * h * h, 0.0),
    "rectified_monomial:2": (
        lambda h: np.maximum(h, 0.0) ** 2,
        lambda h: 2 * np.maximum(h, 0.0),
        0,
    ),
    "polynomial:0.5,1,-0.3": (lambda h: 0.5 + h - 0.3 * h * h, lambda h: 1 - 0.6 * h, 0.0),
}
# The whole grid: every pair of diagonals from 1e-3 to 1e3 at every correlation.
_REFERENCE_ROWS = [
    (c * math.sqrt(a * b), a, b)
    for a, b in [
        (1e-3, 1e-3),
        (1.0, 1.0),
        (1e-3, 1.0),
        (2.0, 30.0),
        (1e3, 1e3),
        (1.0, 1e3),
        (1e-3, 1e3),
    ]
    for c in (-1.0, -0.999999, -0.5, 0.0, 0.3, 0.5, 0.99999999, 1.0)
]


def test_the_reference_covers_every_closed_form():
    assert sorted(_REFERENCE) == sorted(CLOSED)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_form_matches_the_independent_reference(name):
    act = get_activation(name)
    cross, diag = closed_forms.transforms(act.name, act.params)
    f, df, omega = _REFERENCE[name]
    for k12, a, b in _REFERENCE_ROWS:
        e, ed = cross(jnp.asarray(k12), jnp.asarray(a), jnp.asarray(b))
        (ea, eda), (eb, edb) = diag(jnp.asarray(a)), diag(jnp.asarray(b))
        want = _reference(f, f, k12, a, b, omega)
        assert abs(float(e) - want) <= TOL * math.sqrt(float(ea * eb)), (k12, a, b, float(e), want)
        if df is not None:
            want_d = _reference(df, df, k12, a, b, omega)
            scale = math.sqrt(float(eda * edb))
            assert abs(float(ed) - want_d) <= TOL * scale, (k12, a, b, float(ed), want_d)
