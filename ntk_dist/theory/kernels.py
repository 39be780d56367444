"""Infinite-width NNGP and NTK kernels of fully connected networks (docs/theory.md §2).

Recursion over the L hidden layers plus the readout (NTK parameterisation):

    K^1 = sigma_w^2 <x, x'> / n_0 + sigma_b^2,                  Theta^1 = K^1
    K^{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2
    Theta^{l+1} = K^{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta^l

with (u, v) ~ N(0, [[K^l(x,x), K^l(x,x')], [K^l(x,x'), K^l(x',x')]]). The output
kernels are K^{L+1} (NNGP) and Theta^{L+1} (NTK), for ``depth`` = L >= 1.

Per-layer scales and activations and the standard parameterisation follow
docs/theory.md §2.1. Closed forms (:mod:`ntk_dist.theory.closed_forms`, docs/theory.md
§2.2) cover erf, the ABRelu family (relu, leaky relu, abs), gelu, sin/cos/rbf, Gaussian,
exp, sign, monomials, rectified monomials and polynomials. Any other elementwise JAX
function goes through the polar quadrature of :mod:`ntk_dist.theory.quadrature`
(docs/theory.md §2.3), with phi' from ``jax.grad``, exact to 1e-9 at any K(x, x) in
[1e-3, 1e3]; its node class is fixed per layer from the largest K(x, x) (the diagonal
recursion, run first on the host).

Cost of the closed forms: one X X^T product (run at full float32 precision on
GPUs, ``Precision.HIGHEST``) plus O(L) transcendental calls per entry (erf:
arcsin and rsqrt; relu: atan2 and sqrt; in float32 a polynomial arcsin/arccos and a
Newton rsqrt, :mod:`ntk_dist.theory.fast32`, and row norms computed once per row). A
square Gram computes only the tiles on and above the diagonal, in parallel threads, and
mirrors the rest. In float32 each tile is one XLA loop returning NNGP + i NTK as one
complex array (docs/theory.md §2.4).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_dist.core import validate
from ntk_dist.core.dtypes import require_x64
from ntk_dist.theory import closed_forms, fast32, quadrature
from ntk_dist.theory.activations import Activation
from ntk_dist.theory.architecture import FC, resolve

KINDS = ("nngp", "ntk")

#: Tile edge of the threaded square/cross Gram path (measured best on a 2-core CPU;
#: see bench/bench_kernels.py).
DEFAULT_TILE = 512


class KernelConfig(NamedTuple):
    """The static arguments of the jitted recursions (hashable).

    Attributes:
      acts: the L hidden activations.
      sws, sbs: sigma_w and sigma_b of the L + 1 dense layers (readout last).
      param: ``"ntk"`` or ``"standard"``.
      widths: the L hidden widths (standard parameterisation), or None.
      want_nngp, want_ntk: which kernels to return.
      scales: the quadrature scale class of each hidden layer
        (:func:`ntk_dist.theory.quadrature.scale_class`), None for closed forms.
    """

    acts: tuple
    sws: tuple
    sbs: tuple
    param: str
    widths: tuple | None
    want_nngp: bool
    want_ntk: bool
    scales: tuple | None = None


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
        ``ntk_dist.theory.activations`` (closed forms, docs/theory.md §2.2) or an
        elementwise JAX function (quadrature, §2.3); per-layer lists and
        ``parameterization="standard"`` with ``widths`` as in :class:`ntk_dist.FC`.
      get: which kernels to return, a subset of ``("nngp", "ntk")``.
      diagonal: return only K(x, x) for each row of x1, shape (N1,), by the cheaper
        diagonal recursion (x2 must be None).
      tile: edge of the tiles computed in parallel threads for large Grams
        (default ``DEFAULT_TILE``); results do not depend on it beyond rounding
        (1e-12 in float64, quadrature included: pairs are integrated symmetrically).

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
        return _diag_kernel(x1, _with_scales(cfg, [x1]))
    tile = DEFAULT_TILE if tile is None else validate.positive_int(tile, "tile")
    if x2 is None:
        cfg = _with_scales(cfg, [x1])
        if x1.shape[0] <= tile:
            return _block(_square_block, cfg, x1)
        return _tiled(x1, None, tile, cfg)
    x2 = jnp.asarray(x2, dtype)
    cfg = _with_scales(cfg, [x1, x2])
    if x1.shape[0] * x2.shape[0] <= tile * tile:
        return _block(_cross_block, cfg, x1, x2)
    return _tiled(x1, x2, tile, cfg)


def kernel_config(arch: FC, get) -> KernelConfig:
    """The static arguments of the jitted recursions for ``arch`` and the kinds in ``get``.

    Raises:
      ValueError: ``get`` is not a non-empty subset of ``KINDS``.
    """
    if isinstance(get, str):
        get = (get,)
    get = tuple(get)
    if not get or any(g not in KINDS for g in get):
        raise ValueError(f"get must be a non-empty subset of {KINDS}, got {get!r}")
    return KernelConfig(
        acts=arch.layer_activations,
        sws=arch.layer_sigma_w,
        sbs=arch.layer_sigma_b,
        param=arch.parameterization,
        widths=arch.widths,
        want_nngp="nngp" in get,
        want_ntk="ntk" in get,
    )


def _with_scales(cfg: KernelConfig, xs) -> KernelConfig:
    """Fix the quadrature node class of each hidden layer from the largest K(x, x) that
    reaches it (the diagonal recursion, run once on the host; docs/theory.md §2.3)."""
    if all(a.closed_form for a in cfg.acts):
        return cfg
    x = jnp.concatenate(xs) if len(xs) > 1 else xs[0]
    d = (cfg.sws[0] ** 2 / x.shape[1]) * jnp.sum(x * x, axis=1) + cfg.sbs[0] ** 2
    scales = []
    for layer, act in enumerate(cfg.acts):
        scale = quadrature.scale_class(float(jnp.max(d))) if d.size else 1
        scales.append(None if act.closed_form else scale)
        e, _ = jax.jit(_transforms(act, scale)[1])(d)
        d = cfg.sws[layer + 1] ** 2 * e + cfg.sbs[layer + 1] ** 2
    return cfg._replace(scales=tuple(scales))


def _float_dtype(x1, x2):
    dtypes = [np.dtype(getattr(x, "dtype", np.float64)) for x in (x1, x2) if x is not None]
    dtype = np.result_type(*dtypes)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float32)
    return jnp.zeros((), dtype).dtype  # float64 -> float32 when x64 is off


# ---------------------------------------------------------------------------
# Recursions.


def _transforms(act: Activation, scale: int | None):
    if act.closed_form:
        return closed_forms.transforms(act.name, act.params)
    return quadrature.cross_transform(act.fn, scale), quadrature.diag_transform(act.fn, scale)


def _input_terms(x1, x2, sw, sb):
    n0 = x1.shape[1]
    k = (sw * sw / n0) * jnp.dot(x1, x2.T, precision=jax.lax.Precision.HIGHEST) + sb * sb
    d1 = (sw * sw / n0) * jnp.sum(x1 * x1, axis=1) + sb * sb
    d2 = d1 if x2 is x1 else (sw * sw / n0) * jnp.sum(x2 * x2, axis=1) + sb * sb
    return k, d1, d2


def _ntk_input(k, n0, sw, sb, param):
    """Theta^1: K^1 in NTK parameterisation; <x, x'> (+ 1 for a bias) in standard."""
    if param == "ntk":
        return k
    return (k - sb * sb) * (n0 / (sw * sw)) + (1.0 if sb > 0 else 0.0)


def _ntk_step(k_new, ed, theta, e, sw, sb, width, param):
    """Theta^{l+1} from Theta^l (docs/theory.md §2.1): K^{l+1} + sw^2 E[phi' phi'] Theta^l
    (NTK); n_l E[phi phi] + [sb > 0] + sw^2 E[phi' phi'] Theta^l (standard)."""
    if param == "ntk":
        return k_new + sw * sw * ed * theta
    return width * e + (1.0 if sb > 0 else 0.0) + sw * sw * ed * theta


def _recurse(k, d1, d2, n0, *, cfg, square=False):
    sws, sbs, acts, scales = cfg.sws, cfg.sbs, cfg.acts, cfg.scales
    param, widths = cfg.param, cfg.widths
    want_ntk = cfg.want_ntk
    theta = _ntk_input(k, n0, sws[0], sbs[0], param) if want_ntk else None
    for layer in range(len(acts)):
        cross, diag = _transforms(acts[layer], None if scales is None else scales[layer])
        sw2, sb2 = sws[layer + 1] ** 2, sbs[layer + 1] ** 2
        if square:
            # Pin K(x, x) to the diagonal recursion: arccos/arcsin are ill-conditioned at
            # correlation 1, so a GEMM rounding of 1e-16 would otherwise cost 1e-8.
            k = _set_diagonal(k, d1)
        e, ed = cross(k, d1[:, None], d2[None, :])
        de1, ded1 = diag(d1)
        if square:
            # The diagonal then equals diagonal=True exactly, quadrature included.
            e, ed = _set_diagonal(e, de1), _set_diagonal(ed, ded1)
        k = sw2 * e + sb2
        if want_ntk:
            width = None if widths is None else widths[layer]
            theta = _ntk_step(k, ed, theta, e, sws[layer + 1], sbs[layer + 1], width, param)
        d2 = sw2 * de1 + sb2 if square else sw2 * diag(d2)[0] + sb2
        d1 = sw2 * de1 + sb2
    return Kernel(k if cfg.want_nngp else None, theta)


def _set_diagonal(a, d):
    if fast32.is_fast(a):
        # A select, not a scatter: elementwise, so XLA fuses it into the recursion's loop
        # (docs/theory.md §2.4). float64 keeps the scatter and its results bit for bit.
        eye = jnp.arange(a.shape[0])[:, None] == jnp.arange(a.shape[1])[None, :]
        return jnp.where(eye, d[:, None], a)
    idx = jnp.arange(a.shape[0])
    return a.at[idx, idx].set(d)


def _packs(cfg: KernelConfig, dtype) -> bool:
    """Whether a block returns NNGP and NTK packed as one complex array nngp + i ntk:
    in float32 with both kernels (docs/theory.md §2.4). XLA's CPU fuser gives each
    output its own loop, which recomputes the shared recursion; one output is one loop."""
    return cfg.want_nngp and cfg.want_ntk and dtype == jnp.float32


def _output(kernel: Kernel, pack: bool):
    return jax.lax.complex(kernel.nngp, kernel.ntk) if pack else kernel


@partial(jax.jit, static_argnames=("cfg", "pack"))
def _cross_block(x1, x2, cfg, pack=False):
    k, d1, d2 = _input_terms(x1, x2, cfg.sws[0], cfg.sbs[0])
    return _output(_recurse(k, d1, d2, x1.shape[1], cfg=cfg), pack)


@partial(jax.jit, static_argnames=("cfg", "pack"))
def _square_block(x, cfg, pack=False):
    k, d1, _ = _input_terms(x, x, cfg.sws[0], cfg.sbs[0])
    k = (k + k.T) / 2  # the GEMM need not be bitwise symmetric; the recursion then is
    return _output(_recurse(k, d1, d1, x.shape[1], cfg=cfg, square=True), pack)


@partial(jax.jit, static_argnames="mirror")
def _unpack(z, mirror=False):
    """(nngp, ntk) from a packed block, with their transposes if ``mirror``; a separate
    program, in which real(complex(a, b)) cannot be simplified back to two loops."""
    parts = (jnp.real(z), jnp.imag(z))
    return parts + tuple(p.T for p in parts) if mirror else parts


def _block(block_fn, cfg: KernelConfig, *xs) -> Kernel:
    """One block as a :class:`Kernel`, packed and unpacked where that is faster."""
    pack = _packs(cfg, xs[0].dtype)
    out = block_fn(*xs, cfg, pack)
    return Kernel(*_unpack(out)) if pack else out


@partial(jax.jit, static_argnames="cfg")
def _diag_kernel(x, cfg):
    d = (cfg.sws[0] ** 2 / x.shape[1]) * jnp.sum(x * x, axis=1) + cfg.sbs[0] ** 2
    theta = _ntk_input(d, x.shape[1], cfg.sws[0], cfg.sbs[0], cfg.param)
    for layer in range(len(cfg.acts)):
        _, diag = _transforms(cfg.acts[layer], None if cfg.scales is None else cfg.scales[layer])
        sw, sb = cfg.sws[layer + 1], cfg.sbs[layer + 1]
        e, ed = diag(d)
        new = sw * sw * e + sb * sb
        width = None if cfg.widths is None else cfg.widths[layer]
        theta = _ntk_step(new, ed, theta, e, sw, sb, width, cfg.param)
        d = new
    return Kernel(d if cfg.want_nngp else None, theta if cfg.want_ntk else None)


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An empty NumPy array whose data start on an ``align``-byte boundary, which lets
    ``jax.device_put`` wrap it on the CPU without a copy."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.empty(size + align, np.uint8)
    start = -buf.ctypes.data % align
    return buf[start : start + size].view(dtype).reshape(shape)


def _tiled(x1, x2, tile: int, cfg: KernelConfig) -> Kernel:
    """Tiles in parallel threads (XLA releases the GIL); square Grams compute i <= j only.

    Each tile is written once into the output (and once transposed, into its mirror);
    the outputs are handed to JAX without a further copy where it can alias them."""
    square = x2 is None
    rows = [x1[i : i + tile] for i in range(0, x1.shape[0], tile)]
    cols = rows if square else [x2[j : j + tile] for j in range(0, x2.shape[0], tile)]
    n1, n2 = x1.shape[0], (x1 if square else x2).shape[0]
    kinds = [name for name in KINDS if getattr(cfg, "want_" + name)]
    pack = _packs(cfg, x1.dtype)
    out = [_aligned_empty((n1, n2), x1.dtype) for _ in kinds]
    pairs = [(i, j) for i in range(len(rows)) for j in range(i if square else 0, len(cols))]

    def work(pair):
        i, j = pair
        mirror = square and i != j
        diagonal = square and i == j
        block = (
            _square_block(rows[i], cfg, pack)
            if diagonal
            else _cross_block(rows[i], cols[j], cfg, pack)
        )
        if pack:
            parts = _unpack(block, mirror)  # nngp, ntk (and their transposes, from XLA)
            upper, lower = parts[:2], parts[2:]
        else:
            upper = [np.asarray(getattr(block, name)) for name in kinds]
            lower = [b.T for b in upper] if mirror else []
        r, c = i * tile, j * tile
        h, w = upper[0].shape
        for o, b in zip(out, upper, strict=True):
            o[r : r + h, c : c + w] = b
        if mirror:
            for o, b in zip(out, lower, strict=True):
                o[c : c + w, r : r + h] = b

    with ThreadPoolExecutor(_workers()) as pool:
        list(pool.map(work, pairs))
    arrays = {name: jax.device_put(o, may_alias=True) for name, o in zip(kinds, out, strict=True)}
    return Kernel(*(arrays.get(name) for name in KINDS))
