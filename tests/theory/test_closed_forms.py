"""Closed-form layer transforms against independent quadrature, and the polar quadrature
path against every closed form, over K(x, x) in [1e-3, 1e3] and correlations in [-1, 1].

Errors are relative to the Cauchy-Schwarz scale sqrt(E[phi(u)^2] E[phi(v)^2]) (for
phi' likewise): the entries themselves may be 0 (odd activations at correlation 0) or
e^{-500} (sin at K = 1e3), where an entrywise relative error means nothing.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

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
@pytest.mark.parametrize("name", CLOSED)
def test_quadrature_path_matches_each_closed_form(name):
    big = 1e3 if not name.startswith("exp") else 30.0  # E[exp(u)^2] = e^{2K} overflows
    _check(name, _grid(big), lambda act, scale: quadrature.cross_transform(act.fn, scale))


@pytest.mark.slow
@pytest.mark.parametrize("name", CLOSED)
def test_diagonal_transform_matches_closed_form(name):
    act = get_activation(name)
    _, diag = closed_forms.transforms(act.name, act.params)
    for d in (1e-3, 1.0, 30.0, 1e3 if not name.startswith("exp") else 30.0):
        qd = quadrature.diag_transform(act.fn, quadrature.scale_class(d))
        want, got = diag(jnp.asarray([d])), qd(jnp.asarray([d]))
        for w, g in zip(want, got, strict=True):
            assert abs(float(g[0]) - float(w[0])) <= TOL * max(abs(float(w[0])), 1e-300), (d, g, w)


def _scipy_expectation(f, g, k12, a, b):
    """E[f(u) g(v)] by adaptive scipy quadrature in the whitened variables (1-D at
    correlation +-1); kinks and the Gaussian scale are passed as break points."""
    ra, rb = math.sqrt(a), math.sqrt(b)
    c = max(-1.0, min(1.0, k12 / (ra * rb)))
    s = math.sqrt(max(0.0, 1 - c * c))
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=400)
    if s < 1e-12:
        val, _ = integrate.quad(
            lambda z: f(ra * z) * g(rb * c * z) * pdf(z), -12, 12, points=[0.0], **opts
        )
        return val

    def inner(z1):
        kink = -c * z1 / s
        pts = [kink] if -12 < kink < 12 else None
        val, _ = integrate.quad(
            lambda z2: g(rb * (c * z1 + s * z2)) * pdf(z2), -12, 12, points=pts, **opts
        )
        return val

    val, _ = integrate.quad(
        lambda z1: f(ra * z1) * inner(z1) * pdf(z1), -12, 12, points=[0.0], **opts
    )
    return val


# scipy reference functions (phi, phi'), independent of the JAX activations.
_SCIPY = {
    "erf": (math.erf, lambda h: 2 / math.sqrt(math.pi) * math.exp(-h * h)),
    "relu": (lambda h: max(h, 0.0), lambda h: float(h > 0)),
    "abs": (abs, lambda h: math.copysign(1.0, h)),
    "gelu": (
        lambda h: h * (1 + math.erf(h / math.sqrt(2))) / 2,
        lambda h: (
            (1 + math.erf(h / math.sqrt(2))) / 2 + h * math.exp(-h * h / 2) / math.sqrt(2 * math.pi)
        ),
    ),
    "sin": (math.sin, math.cos),
    "gaussian": (lambda h: math.exp(-h * h), lambda h: -2 * h * math.exp(-h * h)),
    "sign": (lambda h: math.copysign(1.0, h) if h else 0.0, None),
    "exp:1,0.05": (lambda h: math.exp(0.05 * h), lambda h: 0.05 * math.exp(0.05 * h)),
    "monomial:3": (lambda h: h**3, lambda h: 3 * h * h),
    "rectified_monomial:2": (lambda h: max(h, 0.0) ** 2, lambda h: 2 * max(h, 0.0)),
}
# 2-D adaptive quadrature at K = 1e3 takes minutes (sin oscillates 300 times over the
# Gaussian); there the 1-D correlations +-1 and the diagonal are checked by scipy, the
# rest by the polar quadrature above, itself checked against scipy at K <= 30.
_SCIPY_ROWS = [
    (c * math.sqrt(a * b), a, b)
    for a, b in [(1e-3, 1e-3), (1.0, 1.0), (0.5, 3.0)]
    for c in (-1.0, -0.6, 0.3, 0.999, 1.0)
] + [(c * 1e3, 1e3, 1e3) for c in (-1.0, 1.0)]


@pytest.mark.parametrize("name", sorted(_SCIPY))
def test_closed_form_matches_scipy_quadrature(name):
    act = get_activation(name)
    cross, diag = closed_forms.transforms(act.name, act.params)
    f, df = _SCIPY[name]
    for k12, a, b in _SCIPY_ROWS:
        e, ed = cross(jnp.asarray(k12), jnp.asarray(a), jnp.asarray(b))
        (ea, eda), (eb, edb) = diag(jnp.asarray(a)), diag(jnp.asarray(b))
        want = _scipy_expectation(f, f, k12, a, b)
        assert abs(float(e) - want) <= TOL * math.sqrt(float(ea * eb)), (k12, a, b, float(e), want)
        if df is not None:
            want_d = _scipy_expectation(df, df, k12, a, b)
            scale = math.sqrt(float(eda * edb))
            assert abs(float(ed) - want_d) <= TOL * scale, (k12, a, b, float(ed), want_d)
