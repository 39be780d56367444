"""Infinite-width NNGP and NTK kernels of the fully connected network.

Conventions (science.md §2): NTK parameterisation, ``depth`` = L hidden layers plus
the readout, so the returned kernels are the output kernels K^{L+1} and
Theta^{L+1}:

    K^1 = sigma_w^2 <x, x'> / n_0 + sigma_b^2,          Theta^1 = K^1
    K^{l+1} = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2
    Theta^{l+1} = K^{l+1} + sigma_w^2 E[phi'(u) phi'(v)] Theta^l

with (u, v) ~ N(0, [[K^l(x, x), K^l(x, x')], [K^l(x, x'), K^l(x', x')]]).

The expectations use closed forms for ``erf`` (Williams 1997), ``relu`` (arc-cosine
kernel, Cho & Saul 2009), ``leaky_relu`` (derived from relu below) and ``identity``;
any other elementwise JAX function uses Gauss-Hermite quadrature over the bivariate
normal, with phi' from ``jax.grad``.

Cost: one (N1, d) x (d, N2) product, then O(N1 N2 L) elementwise work (a few
transcendentals per entry and layer, which dominate on CPU); quadrature multiplies
the elementwise work by ``8 * RADIAL_POINTS * ANGULAR_POINTS``. Memory O(N1 N2) for closed forms.
The diagonal terms K^l(x, x) follow their own O(N L) recursion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from .activations import Activation, get_activation

#: Quadrature for activations without a closed form (see ``_quadrature``): Gauss-Laguerre
#: points in rho = r^2 / 2 and Gauss-Legendre points on each of the two angular arcs.
RADIAL_POINTS = 32
ANGULAR_POINTS = 24

_GETS = ("nngp", "ntk")


@dataclass(frozen=True)
class Kernel:
    """Output kernels of a network; a field is ``None`` when it was not requested.

    Attributes:
      nngp: K^{L+1}, shape (N1, N2) or (N1,) for ``diagonal=True``.
      ntk: Theta^{L+1}, same shape and dtype as ``nngp``.
    """

    nngp: jax.Array | None
    ntk: jax.Array | None


def fc_kernel(
    x1,
    x2=None,
    *,
    depth: int,
    activation,
    sigma_w: float,
    sigma_b: float,
    get=("nngp", "ntk"),
    diagonal: bool = False,
) -> Kernel:
    """NNGP and NTK of an infinitely wide fully connected network (science.md §2).

    Args:
      x1: inputs, shape (N1, d), floating dtype.
      x2: inputs, shape (N2, d), or ``None`` for the square Gram of x1 (symmetric;
        its diagonal comes from the diagonal recursion, so it equals
        ``diagonal=True`` exactly).
      depth: number of hidden layers L >= 1 (the readout is added).
      activation: a name (``"erf"``, ``"relu"``, ``"leaky_relu:<slope>"``,
        ``"identity"``, ...), an :class:`Activation`, or an elementwise JAX function.
      sigma_w: weight scale, > 0.
      sigma_b: bias scale, >= 0.
      get: ``"nngp"``, ``"ntk"`` or a tuple of both.
      diagonal: return only K(x, x), Theta(x, x) of shape (N1,), at O(N1 d + N1 L)
        cost (x2 must be ``None``).

    Returns:
      :class:`Kernel` with arrays of shape (N1, N2) (or (N1,)); dtype follows the
      inputs (float32 stays float32; float64 needs ``jax_enable_x64``).

    Calling it on a pair of row blocks gives the cross kernel of those blocks: a
    tiled Gram assembled from per-tile calls (``x2=None`` on diagonal tiles) equals
    one large call up to the rounding of the X X^T product.

    Raises:
      ValueError: naming the argument, for bad shapes, non-finite inputs,
        depth < 1, sigma_w <= 0, sigma_b < 0, an unknown activation or ``get``.
    """
    depth = _validate.positive_int(depth, "depth")
    sigma_w = _validate.positive_float(sigma_w, "sigma_w")
    sigma_b = _validate.nonnegative_float(sigma_b, "sigma_b")
    act = get_activation(activation, "activation")
    gets = _check_get(get)
    _validate.inputs(x1, "x1")
    if x2 is not None:
        if diagonal:
            raise ValueError("diagonal=True needs x2=None (it returns K(x1, x1) per row)")
        _validate.inputs(x2, "x2")
        _validate.same_features(x1, x2)
    dtype = _float_dtype(x1, x2)
    x1 = jnp.asarray(x1, dtype)
    x2 = None if x2 is None else jnp.asarray(x2, dtype)
    nngp, ntk = _kernel(
        x1,
        x2,
        depth=depth,
        act=act,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        want_ntk="ntk" in gets,
        diagonal=diagonal,
    )
    return Kernel(nngp=nngp if "nngp" in gets else None, ntk=ntk)


def _check_get(get) -> tuple[str, ...]:
    gets = (get,) if isinstance(get, str) else tuple(get)
    for g in gets:
        _validate.choice(g, "get", _GETS)
    if not gets:
        raise ValueError("get must name at least one of 'nngp', 'ntk'")
    return gets


def _float_dtype(x1, x2):
    arrays = [x1] if x2 is None else [x1, x2]
    dtype = jnp.result_type(*(getattr(a, "dtype", np.asarray(a).dtype) for a in arrays))
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return jax.dtypes.canonicalize_dtype(dtype)


@partial(jax.jit, static_argnames=("depth", "act", "sigma_w", "sigma_b", "want_ntk", "diagonal"))
def _kernel(x1, x2, *, depth, act, sigma_w, sigma_b, want_ntk, diagonal):
    sw2, sb2 = sigma_w**2, sigma_b**2
    d = x1.shape[1]
    transform = _transform(act)
    k11 = sw2 * jnp.sum(x1 * x1, axis=1) / d + sb2
    if diagonal:
        return _diagonal_recursion(k11, depth, act, sw2, sb2, want_ntk)
    k22 = k11 if x2 is None else sw2 * jnp.sum(x2 * x2, axis=1) / d + sb2
    other = x1 if x2 is None else x2
    k12 = sw2 * jnp.matmul(x1, other.T, precision=jax.lax.Precision.HIGHEST) / d + sb2
    t12 = k12 if want_ntk else None
    for _ in range(depth):
        e, ed = transform(k11[:, None], k22[None, :], k12, want_ntk)
        k12_next = sw2 * e + sb2
        if want_ntk:
            t12 = k12_next + sw2 * ed * t12
        k12 = k12_next
        k11 = sw2 * _diagonal_expectations(act, k11, False)[0] + sb2
        k22 = k11 if x2 is None else sw2 * _diagonal_expectations(act, k22, False)[0] + sb2
    if x2 is None:
        # Exact diagonal (c = 1), free of the arccos/arcsin ill-conditioning there.
        kd, td = _diagonal_recursion(
            sw2 * jnp.sum(x1 * x1, axis=1) / d + sb2, depth, act, sw2, sb2, want_ntk
        )
        idx = jnp.arange(x1.shape[0])
        k12 = k12.at[idx, idx].set(kd)
        if want_ntk:
            t12 = t12.at[idx, idx].set(td)
    return k12, t12


def _diagonal_recursion(k, depth, act, sw2, sb2, want_ntk):
    t = k if want_ntk else None
    for _ in range(depth):
        e, ed = _diagonal_expectations(act, k, want_ntk)
        k = sw2 * e + sb2
        if want_ntk:
            t = k + sw2 * ed * t
    return k, t


def _transform(act: Activation) -> Callable:
    """(k11 (N1,1), k22 (1,N2), k12 (N1,N2), want_dot) -> (E[phi phi], E[phi' phi'] or None)."""
    if act.name == "erf":
        return _erf
    if act.name == "relu":
        return partial(_leaky_relu, slope=0.0)
    if act.name == "leaky_relu":
        return partial(_leaky_relu, slope=act.slope)
    if act.name == "identity":
        return lambda k11, k22, k12, want_dot: (k12, jnp.ones_like(k12) if want_dot else None)
    return partial(_quadrature, act.fn)


def _erf(k11, k22, k12, want_dot):
    # Williams 1997: E[erf(u) erf(v)] = (2/pi) arcsin(2 K12 / sqrt((1 + 2 K11)(1 + 2 K22))).
    a = (1 + 2 * k11) * (1 + 2 * k22)
    s = jnp.clip(2 * k12 * jax.lax.rsqrt(a), -1, 1)
    e = (2 / math.pi) * jnp.arcsin(s)
    if not want_dot:
        return e, None
    return e, (4 / math.pi) * jax.lax.rsqrt(a - 4 * k12 * k12)


def _leaky_relu(k11, k22, k12, want_dot, *, slope):
    # phi(u) = relu(u) - a relu(-u). With cos t = K12 / sqrt(K11 K22) and
    # J(t) = sin t + (pi - t) cos t (Cho & Saul 2009),
    # E[relu(u) relu(v)] = sqrt(K11 K22) J(t) / 2pi;
    # flipping the sign of v maps t -> pi - t, so E[relu(u) relu(-v)] = sqrt(K11 K22)
    # (sin t - t cos t) / 2pi, and E[step(u) step(-v)] = t / 2pi. Expanding the products:
    #   E[phi phi]   = sqrt(K11 K22) [(1 + a^2) J(t) - 2a (sin t - t cos t)] / 2pi
    #   E[phi' phi'] = [(1 + a^2)(pi - t) + 2a t] / 2pi.
    a = slope
    norm = jnp.sqrt(k11 * k22)
    c = jnp.clip(k12 / jnp.where(norm > 0, norm, 1), -1, 1)
    sin_t = jnp.sqrt(1 - c * c)
    t = jnp.arctan2(sin_t, c)
    e = norm * ((1 + a * a) * (sin_t + (math.pi - t) * c) - 2 * a * (sin_t - t * c)) / (2 * math.pi)
    if not want_dot:
        return e, None
    return e, ((1 + a * a) * (math.pi - t) + 2 * a * t) / (2 * math.pi)


def _hermite(dtype):
    # Even point count: the symmetric rule integrates kinks at the origin exactly.
    z, w = np.polynomial.hermite_e.hermegauss(2 * RADIAL_POINTS)
    return jnp.asarray(z, dtype), jnp.asarray(w / math.sqrt(2 * math.pi), dtype)


def _polar_rule(dtype):
    rho, w_rho = np.polynomial.laguerre.laggauss(RADIAL_POINTS)
    x, w_x = np.polynomial.legendre.leggauss(ANGULAR_POINTS)
    r = np.sqrt(2 * rho)
    rule = (np.concatenate([r, -r]), np.tile(w_rho, 2), x, w_x)
    return tuple(jnp.asarray(a, dtype) for a in rule)


def _quadrature(fn, k11, k22, k12, want_dot):
    # Polar coordinates: with cos t = c, (u, v) = (sqrt(K11) r cos th, sqrt(K22) r cos(th - t)),
    # r e^{-r^2/2} dr dth / 2pi over r >= 0, th in [0, 2 pi) equals the same over r in R,
    # th in [pi/2, 3pi/2). Folding r -> -r makes the radial integrand even, a smooth
    # function of rho = r^2/2 under the weight e^{-rho} (Gauss-Laguerre) even when phi is
    # only positively homogeneous (relu-like). Kinks of phi at 0 sit at th = pi/2 and
    # th = pi/2 + t, so Gauss-Legendre on the two arcs between them converges
    # spectrally for relu, leaky_relu and every smooth phi. Kinks away from 0 converge
    # algebraically.
    r, w_r, x, w_x = _polar_rule(k12.dtype)
    k11 = jnp.broadcast_to(k11, k12.shape)
    k22 = jnp.broadcast_to(k22, k12.shape)
    norm = jnp.sqrt(k11 * k22)
    c = jnp.clip(k12 / jnp.where(norm > 0, norm, 1), -1, 1)
    t = jnp.arctan2(jnp.sqrt(1 - c * c), c)
    dfn = jnp.vectorize(jax.grad(fn))
    fns = (fn, dfn) if want_dot else (fn,)

    def entry(a11, a22, ti):
        half = (1 + x) / 2
        theta = math.pi / 2 + jnp.concatenate([ti * half, ti + (math.pi - ti) * half])
        w_theta = jnp.concatenate([ti * w_x, (math.pi - ti) * w_x]) / 2
        u = jnp.sqrt(a11) * jnp.cos(theta)[:, None] * r
        v = jnp.sqrt(a22) * jnp.cos(theta - ti)[:, None] * r
        return tuple(w_theta @ (f(u) * f(v)) @ w_r / (2 * math.pi) for f in fns)

    flat = [a.reshape(-1) for a in (k11, k22, t)]
    out = jax.lax.map(lambda args: entry(*args), flat, batch_size=256)
    out = [o.reshape(k12.shape) for o in out]
    return out[0], (out[1] if want_dot else None)


def _diagonal_expectations(act: Activation, k, want_dot):
    """E[phi(u)^2], E[phi'(u)^2] for u ~ N(0, k), elementwise over k."""
    if act.name == "erf":
        e = (2 / math.pi) * jnp.arcsin(2 * k / (1 + 2 * k))
        return e, ((4 / math.pi) * jax.lax.rsqrt(1 + 4 * k) if want_dot else None)
    if act.name in ("relu", "leaky_relu"):
        g = (1 + act.slope**2) / 2
        return g * k, (jnp.full_like(k, g) if want_dot else None)
    if act.name == "identity":
        return k, (jnp.ones_like(k) if want_dot else None)
    z, w = _hermite(k.dtype)
    u = jnp.sqrt(k)[:, None] * z
    e = act.fn(u) ** 2 @ w
    if not want_dot:
        return e, None
    return e, jnp.vectorize(jax.grad(act.fn))(u) ** 2 @ w
