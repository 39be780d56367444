"""Closed-form layer transforms of the named activations (docs/theory.md §2.2).

For (u, v) ~ N(0, [[K11, K12], [K12, K22]]) each transform returns
(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) from the cross term K12 and the diagonals
(``cross``), and the same at K12 = K11 = K22 = d (``diag``, cheaper and exact on the
diagonal). Notation: n = sqrt(K11 K22), c = K12 / n clipped to [-1, 1],
s = sqrt(1 - c^2), t = arccos(c) = atan2(s, c) (accurate near |c| = 1). In float32,
arcsin and arccos are the polynomial forms of :mod:`ntk_dist.theory.fast32`, and the
row norms are hoisted out of the per-entry work (docs/theory.md §2.4).

Sources, one per activation (equations as numbered in the cited papers):

- erf: Williams 1997, "Computing with infinite networks", Eq. (11); a erf(b u) + c
  rescales the covariance by b^2 and adds c^2 (E[erf] = 0).
- relu, leaky relu, abs, ABRelu(a, b) = a min(u, 0) + b max(u, 0): the arc-cosine
  kernels of degree 0 and 1 (Cho & Saul 2009, Eq. (6)) applied to the four sign
  patterns of b relu(u) - a relu(-u) (flipping one sign maps t -> pi - t).
- rectified monomial max(u, 0)^q: the degree-q arc-cosine kernel (Cho & Saul 2009,
  Eq. (1)-(3)), evaluated in polar coordinates as
  n^q q! / (2 pi) sum_j C(q, j) c^{q-j} I_j(pi - t), I_j(x) = int_0^x cos^j;
  phi' = q max(u, 0)^{q-1}.
- monomial and polynomial: Isserlis' theorem (Isserlis 1918) with v = c u + s w,
  E[u^i v^j] = sqrt(K11)^i sqrt(K22)^j sum_m C(j, m) c^m s^{j-m} mu_{i+m} mu_{j-m},
  mu_p = (p - 1)!! for even p, 0 for odd p.
- gelu (u Phi(u)): Tsuchida et al. 2021, "Avoiding kernel fixed points: computing
  with ELU and GELU infinite networks", arXiv 2002.08517, Thm 3 (NNGP); the NTK
  factor E[gelu'(u) gelu'(v)] as in neural-tangents' ``stax.Gelu`` (Novak et al.
  2019), checked here against quadrature.
- sin, cos (a sin(b u + c)): product-to-sum and the Gaussian characteristic
  function E[cos(w . z)] = exp(-w^T Sigma w / 2) (e.g. Pearce et al. 2019,
  arXiv 1905.06076, Table 1); cos(b u + c) = sin(b u + c + pi / 2).
- Gaussian a exp(b u^2): the Gaussian integral E[exp(b (u^2 + v^2))] =
  det(I - 2 b Sigma)^{-1/2} (Williams 1997, Eq. (13) for the Gaussian-bump units),
  and E[u v exp(b (u^2 + v^2))] = K12 det(I - 2 b Sigma)^{-3/2}.
- exp a exp(b u): the log-normal moment E[exp(b (u + v))] =
  exp(b^2 (K11 + K22 + 2 K12) / 2).
- sign: Grothendieck's identity E[sign(u) sign(v)] = 1 - 2 t / pi; phi' = 0 almost
  everywhere (as jax.grad of sign and neural-tangents' ``stax.Sign``), so it adds
  nothing to the NTK.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ntk_dist.theory import fast32


def _angle(k12, d1, d2):
    if fast32.is_fast(k12):
        # Per-row factors: one sqrt and one reciprocal per row, none per entry
        # (docs/theory.md §2.4).
        r1, r2 = jnp.sqrt(d1), jnp.sqrt(d2)
        i1, i2 = 1 / jnp.where(r1 > 0, r1, 1), 1 / jnp.where(r2 > 0, r2, 1)
        c = jnp.clip(k12 * i1 * i2, -1.0, 1.0)
        t, s = fast32.arccos_and_sine(c)
        return r1 * r2, c, s, t
    norm = jnp.sqrt(d1 * d2)  # sqrt(d * d) == d exactly, so c == 1 on a pinned diagonal
    c = jnp.clip(k12 / jnp.where(norm > 0, norm, 1), -1.0, 1.0)
    s = jnp.sqrt(1 - c * c)
    return norm, c, s, jnp.arctan2(s, c)


# erf --------------------------------------------------------------------------


def _erf(a, b, shift):
    b2 = b * b

    def cross(k12, d1, d2):
        inv = jax.lax.rsqrt(1 + 2 * b2 * d1) * jax.lax.rsqrt(1 + 2 * b2 * d2)
        s = jnp.clip(2 * b2 * k12 * inv, -1.0, 1.0)
        if fast32.is_fast(s):
            asin, rsq = fast32.arcsin_and_rsqrt(s)
        else:
            asin = jnp.arcsin(s)
            rsq = jax.lax.rsqrt(jnp.maximum(1 - s * s, jnp.finfo(s.dtype).tiny))
        e = (2 / math.pi) * asin
        # 4/pi / sqrt((1+2K11)(1+2K22) - 4 K12^2), written with the clipped s.
        ed = (4 / math.pi) * inv * rsq
        return a * a * e + shift * shift, a * a * b2 * ed

    def diag(d):
        e = (2 / math.pi) * jnp.arcsin(2 * b2 * d / (1 + 2 * b2 * d))
        return a * a * e + shift * shift, a * a * b2 * (4 / math.pi) * jax.lax.rsqrt(1 + 4 * b2 * d)

    return cross, diag


# ABRelu family ------------------------------------------------------------------


def _abrelu(a, b):
    sq, ab = a * a + b * b, a * b

    def cross(k12, d1, d2):
        norm, c, s, t = _angle(k12, d1, d2)
        e = norm * (sq * (s + (math.pi - t) * c) - 2 * ab * (s - t * c)) / (2 * math.pi)
        ed = (sq * (math.pi - t) + 2 * ab * t) / (2 * math.pi)
        return e, ed

    return cross, lambda d: (sq * d / 2, jnp.full_like(d, sq / 2))


def _identity():
    return (lambda k12, d1, d2: (k12, jnp.ones_like(k12))), (lambda d: (d, jnp.ones_like(d)))


def _sign():
    def cross(k12, d1, d2):
        _, _, _, t = _angle(k12, d1, d2)
        return 1 - 2 * t / math.pi, jnp.zeros_like(t)

    return cross, lambda d: (jnp.where(d > 0, 1.0, 0.0).astype(d.dtype), jnp.zeros_like(d))


# Rectified monomials and polynomials ----------------------------------------------


def _arccos_kernel(q, norm, c, s, t):
    """E[relu(u)^q relu(v)^q] (module docstring), q >= 0."""
    x = math.pi - t
    ints = [x, s]  # I_0(x) = x, I_1(x) = sin x = s; cos x = -c
    for j in range(2, q + 1):
        ints.append((-c) ** (j - 1) * s / j + (j - 1) / j * ints[j - 2])
    total = sum(math.comb(q, j) * c ** (q - j) * ints[j] for j in range(q + 1))
    return norm**q * math.factorial(q) / (2 * math.pi) * total


def _double_factorial_moment(p: int) -> float:
    """E[z^p] for z ~ N(0, 1)."""
    return 0.0 if p % 2 else float(math.prod(range(p - 1, 0, -2)))


def _rectified_monomial(q):
    def cross(k12, d1, d2):
        norm, c, s, t = _angle(k12, d1, d2)
        return _arccos_kernel(q, norm, c, s, t), q * q * _arccos_kernel(q - 1, norm, c, s, t)

    def diag(d):
        e = d**q * _double_factorial_moment(2 * q) / 2
        ed = q * q * d ** (q - 1) * _double_factorial_moment(2 * q - 2) / 2
        return e, jnp.broadcast_to(ed, d.shape).astype(d.dtype)

    return cross, diag


def _poly_expectation(p, r, k12, d1, d2):
    """E[P(u) R(v)] for coefficient lists p, r (Isserlis, module docstring)."""
    ra, rb = jnp.sqrt(d1), jnp.sqrt(d2)
    c = jnp.clip(k12 / jnp.where(ra * rb > 0, ra * rb, 1), -1.0, 1.0)
    s = jnp.sqrt(1 - c * c)
    total = jnp.zeros(jnp.broadcast_shapes(k12.shape, d1.shape, d2.shape), k12.dtype)
    for i, pi in enumerate(p):
        for j, rj in enumerate(r):
            if pi == 0 or rj == 0:
                continue
            moment = sum(
                math.comb(j, m)
                * c**m
                * s ** (j - m)
                * _double_factorial_moment(i + m)
                * _double_factorial_moment(j - m)
                for m in range(j + 1)
                if (i + m) % 2 == 0 and (j - m) % 2 == 0
            )
            total = total + pi * rj * ra**i * rb**j * moment
    return total


def _polynomial(coefs):
    p = tuple(coefs)
    dp = tuple(i * c for i, c in enumerate(p))[1:]

    def cross(k12, d1, d2):
        return _poly_expectation(p, p, k12, d1, d2), _poly_expectation(dp, dp, k12, d1, d2)

    return cross, lambda d: cross(d, d, d)


# gelu -----------------------------------------------------------------------------


def _gelu():
    def cross(k12, d1, d2):
        prod, prod1 = d1 * d2, (d1 + 1) * (d2 + 1)
        delta2 = jnp.maximum(prod1 - k12 * k12, jnp.finfo(k12.dtype).tiny)
        delta = jnp.sqrt(delta2)
        angle = jnp.arctan2(k12, delta)
        e = (k12 * k12 + prod * delta2) / (prod1 * delta) + k12 * angle
        e = e / (2 * math.pi) + k12 / 4
        first = (1 / delta2 + (1 - prod) / prod1 + 1) * k12 / delta / (2 * math.pi)
        return e, first + 0.25 + angle / (2 * math.pi)

    def diag(d):
        root = jnp.sqrt(1 + 2 * d)
        e = d * (0.25 + (d / ((d + 1) * root) + jnp.arctan2(d, root) / 2) / math.pi)
        return e, cross(d, d, d)[1]

    return cross, diag


# sin / cos, Gaussian, exp ---------------------------------------------------------


def _sin(a, b, shift):
    half, b2, c2 = a * a / 2, b * b, math.cos(2 * shift)

    def cross(k12, d1, d2):
        s1 = jnp.exp(b2 * (k12 - (d1 + d2) / 2))
        s2 = jnp.exp(-b2 * (k12 + (d1 + d2) / 2)) * c2
        return half * (s1 - s2), half * b2 * (s1 + s2)

    def diag(d):
        g = jnp.exp(-2 * b2 * d) * c2
        return half * (1 - g), half * b2 * (1 + g)

    return cross, diag


def _gaussian(a, b):
    def cross(k12, d1, d2):
        det = (1 - 2 * b * d1) * (1 - 2 * b * d2) - 4 * b * b * k12 * k12
        inv = jax.lax.rsqrt(det)
        return a * a * inv, 4 * a * a * b * b * k12 * inv**3

    return cross, lambda d: cross(d, d, d)


def _exp(a, b):
    def cross(k12, d1, d2):
        e = a * a * jnp.exp(b * b * (d1 + d2 + 2 * k12) / 2)
        return e, b * b * e

    return cross, lambda d: cross(d, d, d)


def transforms(name: str, params: tuple):
    """(cross, diag) transforms of the named closed-form activation (module docstring)."""
    if name == "erf":
        return _erf(*params)
    if name == "relu":
        return _abrelu(0.0, 1.0)
    if name == "leaky_relu":
        return _abrelu(params[0], 1.0)
    if name == "abs":
        return _abrelu(-1.0, 1.0)
    if name == "abrelu":
        return _abrelu(*params)
    if name == "identity":
        return _identity()
    if name == "sign":
        return _sign()
    if name == "gelu":
        return _gelu()
    if name == "sin":
        return _sin(*params)
    if name == "cos":
        return _sin(params[0], params[1], params[2] + math.pi / 2)
    if name == "rbf":
        return _sin(math.sqrt(2), math.sqrt(2 * params[0]), math.pi / 4)
    if name == "gaussian":
        return _gaussian(*params)
    if name == "exp":
        return _exp(*params)
    if name == "monomial":
        q = int(params[0])
        return _polynomial((0.0,) * q + (1.0,))
    if name == "rectified_monomial":
        return _rectified_monomial(int(params[0]))
    if name == "polynomial":
        return _polynomial(params)
    raise ValueError(f"no closed form for activation {name!r}")
