"""Infinite-width NNGP and NTK kernels of fully connected networks (docs/theory.md §2).

Recursion over the L hidden layers plus the readout (NTK parameterisation):

    K^1 = sigma_w^2 <x, x'> / n_0 + sigma_b^2,                  Theta^1 = K^1
    K^{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2
    Theta^{l+1} = K^{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta^l

with (u, v) ~ N(0, [[K^l(x,x), K^l(x,x')], [K^l(x,x'), K^l(x',x')]]). The output
kernels are K^{L+1} (NNGP) and Theta^{L+1} (NTK), for ``depth`` = L >= 1.

Closed forms (Cho & Saul 2009 for relu; Williams 1997 for erf) are used for erf,
relu, leaky relu and identity. Any other elementwise JAX function goes through
numerical quadrature of the bivariate Gaussian expectation, with phi' from
``jax.grad``. The quadrature is Gauss-Legendre on [-10, 10] standard deviations,
split where the integrand can have a kink (the argument of phi crossing 0):
plain Gauss-Hermite converges only as O(1/q) for relu-like activations (1.6%
error at q = 64 for relu at correlation -0.5), split Gauss-Legendre converges
geometrically on each smooth piece. Cost O(q^2) activation calls per entry.

Cost of the closed forms: one X X^T product (run at full float32 precision on
GPUs, ``Precision.HIGHEST``) plus O(L) transcendental calls per entry (erf:
arcsin and rsqrt; relu: atan2 and sqrt). A square Gram computes only the tiles
on and above the diagonal, in parallel threads, and mirrors the rest.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_dist.core import validate
from ntk_dist.core.dtypes import require_x64
from ntk_dist.theory.activations import Activation
from ntk_dist.theory.architecture import FC, resolve

KINDS = ("nngp", "ntk")

#: Tile edge of the threaded square/cross Gram path (measured best on a 2-core CPU;
#: see bench/bench_kernels.py).
DEFAULT_TILE = 512

_QUAD_NODES = 32  # Gauss-Legendre nodes per piece
_QUAD_RANGE = 10.0  # integrate over [-10, 10] standard deviations


class Kernel(NamedTuple):
    """Output kernels; an attribute is ``None`` when it was not requested.

    Attributes:
      nngp: K^{L+1}(x1, x2), shape (N1, N2), or (N1,) in diagonal mode.
      ntk: Theta^{L+1}(x1, x2), same shape.
    """

    nngp: jax.Array | None
    ntk: jax.Array | None


def fc_kernel(
    x1,
    x2=None,
    arch: FC | None = None,
    *,
    get=KINDS,
    diagonal: bool = False,
    tile: int | None = None,
    **fields,
) -> Kernel:
    """NNGP and NTK of a fully connected network at infinite width.

    Args:
      x1: inputs, shape (N1, d), float32 or float64 (float64 needs ``jax_enable_x64``).
      x2: inputs, shape (N2, d), or ``None`` for the symmetric Gram K(x1, x1).
      arch: the architecture, an :class:`ntk_dist.FC`; or leave it ``None`` and pass
        its fields as keywords (``depth=3, activation="erf", sigma_w=1.5, sigma_b=0.05``;
        FC's defaults fill the rest). ``activation`` may be any name from
        ``ntk_dist.theory.activations`` (closed forms for erf, relu, leaky relu and
        identity) or an elementwise JAX function (quadrature).
      get: which kernels to return, a subset of ``("nngp", "ntk")``.
      diagonal: return only K(x, x) for each row of x1, shape (N1,), by the cheaper
        diagonal recursion (x2 must be None).
      tile: edge of the tiles computed in parallel threads for large Grams
        (default ``DEFAULT_TILE``); results do not depend on it beyond rounding.

    Returns:
      :class:`Kernel` of arrays with the inputs' dtype.

    Raises:
      ValueError: naming the argument, for mismatched feature dimensions,
        non-finite inputs, depth < 1, sigma_w <= 0, sigma_b < 0, an unknown
        activation, an unknown kernel in ``get``, or both ``arch`` and its fields.
      TypeError: a keyword that is not a field of FC.
    """
    cfg = kernel_config(resolve(arch, fields), get)
    validate.inputs(x1, "x1")
    if x2 is not None:
        validate.inputs(x2, "x2")
        validate.same_features(x1, x2)
    require_x64("fc_kernel", x1, x2)  # float64 is never truncated silently (core.dtypes)
    dtype = _float_dtype(x1, x2)
    x1 = jnp.asarray(x1, dtype)
    if diagonal:
        if x2 is not None:
            raise ValueError("diagonal=True computes K(x, x) of x1 alone; pass x2=None")
        return _diag_kernel(x1, **cfg)
    tile = DEFAULT_TILE if tile is None else validate.positive_int(tile, "tile")
    if x2 is None:
        if x1.shape[0] <= tile:
            return _square_block(x1, **cfg)
        return _tiled(x1, None, tile, cfg)
    x2 = jnp.asarray(x2, dtype)
    if x1.shape[0] * x2.shape[0] <= tile * tile:
        return _cross_block(x1, x2, **cfg)
    return _tiled(x1, x2, tile, cfg)


def kernel_config(arch: FC, get) -> dict:
    """The static arguments of the jitted recursions for ``arch`` and the kinds in ``get``.

    Raises:
      ValueError: ``get`` is not a non-empty subset of ``KINDS``.
    """
    if isinstance(get, str):
        get = (get,)
    get = tuple(get)
    if not get or any(g not in KINDS for g in get):
        raise ValueError(f"get must be a non-empty subset of {KINDS}, got {get!r}")
    return dict(
        depth=arch.depth,
        act=arch.activation,
        sw=arch.sigma_w,
        sb=arch.sigma_b,
        want_ntk="ntk" in get,
        want_nngp="nngp" in get,
    )


def _float_dtype(x1, x2):
    dtypes = [np.dtype(getattr(x, "dtype", np.float64)) for x in (x1, x2) if x is not None]
    dtype = np.result_type(*dtypes)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float32)
    return jnp.zeros((), dtype).dtype  # float64 -> float32 when x64 is off


# ---------------------------------------------------------------------------
# Layer transforms. Each maps the NNGP cross term K12 and the diagonals d1, d2
# (broadcastable) to (E[phi(u) phi(v)], E[phi'(u) phi'(v)]).


def _erf_cross(k12, d1, d2):
    inv = jax.lax.rsqrt(1 + 2 * d1) * jax.lax.rsqrt(1 + 2 * d2)
    s = jnp.clip(2 * k12 * inv, -1.0, 1.0)
    e = (2 / math.pi) * jnp.arcsin(s)
    # 4/pi / sqrt((1+2K11)(1+2K22) - 4 K12^2), written with the clipped s.
    ed = (4 / math.pi) * inv * jax.lax.rsqrt(jnp.maximum(1 - s * s, jnp.finfo(s.dtype).tiny))
    return e, ed


def _erf_diag(d):
    return (2 / math.pi) * jnp.arcsin(2 * d / (1 + 2 * d)), (4 / math.pi) * jax.lax.rsqrt(1 + 4 * d)


def _leaky_cross(slope):
    def cross(k12, d1, d2):
        norm = jnp.sqrt(d1 * d2)  # sqrt(d * d) == d exactly, so c == 1 on a pinned diagonal
        c = jnp.clip(k12 / norm, -1.0, 1.0)
        s = jnp.sqrt(1 - c * c)
        t = jnp.arctan2(s, c)  # arccos(c), accurate near |c| = 1
        a2 = 1 + slope * slope
        # phi(u) = relu(u) - a relu(-u); flipping one sign maps t -> pi - t.
        e = norm * (a2 * (s + (math.pi - t) * c) - 2 * slope * (s - t * c)) / (2 * math.pi)
        ed = (a2 * (math.pi - t) + 2 * slope * t) / (2 * math.pi)
        return e, ed

    return cross


def _leaky_diag(slope):
    a2 = 1 + slope * slope
    return lambda d: (a2 * d / 2, jnp.full_like(d, a2 / 2))


def _identity_cross(k12, d1, d2):
    return k12, jnp.ones_like(k12)


def _identity_diag(d):
    return d, jnp.ones_like(d)


def _transforms(act: Activation):
    if act.name == "erf":
        return _erf_cross, _erf_diag
    if act.name in ("relu", "leaky_relu"):
        return _leaky_cross(act.slope), _leaky_diag(act.slope)
    if act.name == "identity":
        return _identity_cross, _identity_diag
    return _quad_cross(act.fn), _quad_diag(act.fn)


def _legendre(dtype):
    t, w = np.polynomial.legendre.leggauss(_QUAD_NODES)
    return jnp.asarray(t, dtype), jnp.asarray(w, dtype)


def _pieces(lo, hi, t, w):
    """Nodes and Gaussian-density weights of Gauss-Legendre on [lo, hi] (broadcast)."""
    mid, half = (hi + lo)[..., None] / 2, (hi - lo)[..., None] / 2
    z = mid + half * t
    return z, half * w * jnp.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _split_nodes(kink, t, w):
    """Nodes on [-R, kink] and [kink, R] (kink clipped into the range), concatenated."""
    r = jnp.asarray(_QUAD_RANGE, t.dtype)
    kink = jnp.clip(kink, -r, r)
    z1, w1 = _pieces(jnp.broadcast_to(-r, kink.shape), kink, t, w)
    z2, w2 = _pieces(kink, jnp.broadcast_to(r, kink.shape), t, w)
    return jnp.concatenate([z1, z2], -1), jnp.concatenate([w1, w2], -1)


def _elementwise_grad(fn):
    g = jax.grad(fn)
    return lambda h: jax.vmap(g)(h.ravel()).reshape(h.shape)


def _quad_cross(fn):
    dfn = _elementwise_grad(fn)

    def cross(k12, d1, d2):
        shape = jnp.broadcast_shapes(k12.shape, d1.shape, d2.shape)
        k12, d1, d2 = (jnp.broadcast_to(a, shape).ravel() for a in (k12, d1, d2))
        t, w = _legendre(k12.dtype)

        def one(args):
            k, a, b = args
            ra, rb = jnp.sqrt(a), jnp.sqrt(b)
            c = jnp.clip(k / (ra * rb), -1.0, 1.0)
            s = jnp.sqrt(1 - c * c)
            za, wa = _split_nodes(jnp.zeros(()), t, w)  # u = ra * za has its kink at 0
            # v = rb (c za + s zb) crosses 0 at zb = -c za / s.
            kink = jnp.where(s > 0, -c * za / jnp.where(s > 0, s, 1), jnp.inf)
            zb, wb = _split_nodes(kink, t, w)  # (2q, 2q)
            u = ra * za
            v = rb * (c * za[:, None] + s * zb)
            ww = wa[:, None] * wb
            e = jnp.sum(ww * fn(u)[:, None] * fn(v))
            ed = jnp.sum(ww * dfn(u)[:, None] * dfn(v))
            return e, ed

        e, ed = jax.lax.map(one, (k12, d1, d2), batch_size=64)
        return e.reshape(shape), ed.reshape(shape)

    return cross


def _quad_diag(fn):
    dfn = _elementwise_grad(fn)

    def diag(d):
        t, w = _legendre(d.dtype)
        z, wz = _split_nodes(jnp.zeros(()), t, w)
        u = jnp.sqrt(d)[..., None] * z
        return jnp.sum(wz * fn(u) ** 2, -1), jnp.sum(wz * dfn(u) ** 2, -1)

    return diag


# ---------------------------------------------------------------------------
# Recursions.


def _input_terms(x1, x2, sw, sb):
    n0 = x1.shape[1]
    k = (sw * sw / n0) * jnp.dot(x1, x2.T, precision=jax.lax.Precision.HIGHEST) + sb * sb
    d1 = (sw * sw / n0) * jnp.sum(x1 * x1, axis=1) + sb * sb
    d2 = d1 if x2 is x1 else (sw * sw / n0) * jnp.sum(x2 * x2, axis=1) + sb * sb
    return k, d1, d2


def _recurse(k, d1, d2, *, depth, act, sw, sb, want_ntk, want_nngp, square=False):
    cross, diag = _transforms(act)
    sw2, sb2 = sw * sw, sb * sb
    theta = k if want_ntk else None
    for _ in range(depth):
        if square:
            # Pin K(x, x) to the diagonal recursion: arccos/arcsin are ill-conditioned at
            # correlation 1, so a GEMM rounding of 1e-16 would otherwise cost 1e-8.
            k = _set_diagonal(k, d1)
        e, ed = cross(k, d1[:, None], d2[None, :])
        de1, ded1 = diag(d1)
        if square:
            if not act.closed_form:
                # Quadrature integrates u then v, so it is symmetric only up to rounding.
                e, ed = (e + e.T) / 2, (ed + ed.T) / 2
            # The diagonal then equals diagonal=True exactly, quadrature included.
            e, ed = _set_diagonal(e, de1), _set_diagonal(ed, ded1)
        k = sw2 * e + sb2
        if want_ntk:
            theta = k + sw2 * ed * theta
        d2 = sw2 * de1 + sb2 if square else sw2 * diag(d2)[0] + sb2
        d1 = sw2 * de1 + sb2
    return Kernel(k if want_nngp else None, theta)


def _set_diagonal(a, d):
    idx = jnp.arange(a.shape[0])
    return a.at[idx, idx].set(d)


@partial(jax.jit, static_argnames=("depth", "act", "sw", "sb", "want_ntk", "want_nngp"))
def _cross_block(x1, x2, **cfg):
    k, d1, d2 = _input_terms(x1, x2, cfg["sw"], cfg["sb"])
    return _recurse(k, d1, d2, **cfg)


@partial(jax.jit, static_argnames=("depth", "act", "sw", "sb", "want_ntk", "want_nngp"))
def _square_block(x, **cfg):
    k, d1, _ = _input_terms(x, x, cfg["sw"], cfg["sb"])
    k = (k + k.T) / 2  # the GEMM need not be bitwise symmetric; the recursion then is
    return _recurse(k, d1, d1, square=True, **cfg)


@partial(jax.jit, static_argnames=("depth", "act", "sw", "sb", "want_ntk", "want_nngp"))
def _diag_kernel(x, *, depth, act, sw, sb, want_ntk, want_nngp):
    _, diag = _transforms(act)
    sw2, sb2 = sw * sw, sb * sb
    d = (sw2 / x.shape[1]) * jnp.sum(x * x, axis=1) + sb2
    theta = d
    for _ in range(depth):
        e, ed = diag(d)
        new = sw2 * e + sb2
        theta = new + sw2 * ed * theta
        d = new
    return Kernel(d if want_nngp else None, theta if want_ntk else None)


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _tiled(x1, x2, tile: int, cfg: dict) -> Kernel:
    """Tiles in parallel threads (XLA releases the GIL); square Grams compute i <= j only."""
    square = x2 is None
    rows = [x1[i : i + tile] for i in range(0, x1.shape[0], tile)]
    cols = rows if square else [x2[j : j + tile] for j in range(0, x2.shape[0], tile)]
    n1, n2 = x1.shape[0], (x1 if square else x2).shape[0]
    kinds = [name for name in KINDS if cfg["want_" + name]]
    out = {name: np.empty((n1, n2), x1.dtype) for name in kinds}
    pairs = [(i, j) for i in range(len(rows)) for j in range(i if square else 0, len(cols))]

    def work(pair):
        i, j = pair
        block = (
            _square_block(rows[i], **cfg)
            if square and i == j
            else _cross_block(rows[i], cols[j], **cfg)
        )
        r, c = i * tile, j * tile
        for name in kinds:
            b = np.asarray(getattr(block, name))
            out[name][r : r + b.shape[0], c : c + b.shape[1]] = b
            if square and i != j:
                out[name][c : c + b.shape[1], r : r + b.shape[0]] = b.T

    with ThreadPoolExecutor(_workers()) as pool:
        list(pool.map(work, pairs))
    return Kernel(*(jnp.asarray(out[n]) if n in out else None for n in KINDS))
