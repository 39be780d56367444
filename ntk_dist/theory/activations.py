"""Elementwise activations shared by finite networks and infinite-width kernels.

An activation is named by a string or given as an :class:`Activation`. Names, with
their optional parameters after a colon (neural-tangents' ``stax`` layer of the same
name and arguments in brackets; docs/theory.md §2.2):

- ``"erf"``, ``"erf:a,b,c"``: a erf(b h) + c (``Erf(a, b, c)``);
- ``"relu"``, ``"leaky_relu"`` (slope 0.01), ``"leaky_relu:s"``, ``"abs"``,
  ``"abrelu:a,b"``: a min(h, 0) + b max(h, 0) (``ABRelu(a, b)``);
- ``"identity"``, ``"gelu"`` (exact, not the tanh approximation), ``"sign"``;
- ``"sin:a,b,c"``: a sin(b h + c); ``"cos:a,b,c"``: a cos(b h + c) (``Sin``, ``Cos``;
  plain ``"sin"``, ``"cos"`` are a = b = 1, c = 0); ``"rbf:g"``:
  sqrt(2) sin(sqrt(2 g) h + pi / 4) (``Rbf(gamma)``);
- ``"gaussian:a,b"``: a exp(b h^2) (``Gaussian(a, b)``, default a = 1, b = -1);
  ``"exp:a,b"``: a exp(b h) (``Exp(a, b)``);
- ``"monomial:n"``: h^n; ``"rectified_monomial:n"``: max(h, 0)^n;
  ``"polynomial:c0,c1,...,cn"``: sum_i c_i h^i (``Polynomial(coef)``);
- ``"tanh"``, ``"softplus"``, ``"sigmoid"``: no closed form (quadrature).

All the others have closed-form kernels (:mod:`ntk_dist.theory.closed_forms`). Any
elementwise JAX function ``f`` becomes an activation through ``Activation.from_fn(f)``;
its kernels are then computed by quadrature (:mod:`ntk_dist.theory.quadrature`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

#: Parameter names and defaults of each named activation (docs/theory.md §2.2).
PARAMS: dict[str, tuple[tuple[str, float], ...]] = {
    "erf": (("a", 1.0), ("b", 1.0), ("c", 0.0)),
    "relu": (),
    "leaky_relu": (("slope", 0.01),),
    "abs": (),
    "abrelu": (("a", 0.0), ("b", 1.0)),
    "identity": (),
    "gelu": (),
    "sign": (),
    "sin": (("a", 1.0), ("b", 1.0), ("c", 0.0)),
    "cos": (("a", 1.0), ("b", 1.0), ("c", 0.0)),
    "rbf": (("gamma", 1.0),),
    "gaussian": (("a", 1.0), ("b", -1.0)),
    "exp": (("a", 1.0), ("b", 1.0)),
    "monomial": (("degree", 1.0),),
    "rectified_monomial": (("degree", 1.0),),
    "polynomial": (),  # any number of coefficients
    "tanh": (),
    "softplus": (),
    "sigmoid": (),
}

#: Activations whose NNGP/NTK transforms have closed forms (docs/theory.md §2.2).
CLOSED_FORM = tuple(n for n in PARAMS if n not in ("tanh", "softplus", "sigmoid"))

NAMES = tuple(PARAMS)


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity phi.

    Attributes:
      name: identifier; closed-form kernels are used when it is in ``CLOSED_FORM``.
      fn: elementwise JAX function, phi(h).
      slope: negative-side slope for ``leaky_relu`` (0 for others).
      params: the named activation's parameters in ``PARAMS`` order (polynomial: its
        coefficients), defaults filled in; empty for a wrapped function.
    """

    name: str
    fn: Callable
    slope: float = 0.0
    params: tuple = ()

    def __call__(self, h):
        return self.fn(h)

    @property
    def closed_form(self) -> bool:
        return self.name in CLOSED_FORM

    @property
    def spec(self) -> str:
        """The name as a spec string (``get_activation(act.spec) == act`` for named ones):
        the bare name when the parameters are the defaults."""
        defaults = tuple(v for _, v in PARAMS.get(self.name, ()))
        if not self.params or (self.params == defaults and self.name != "leaky_relu"):
            return self.name
        return f"{self.name}:{','.join(repr(p) for p in self.params)}"

    @classmethod
    def from_fn(cls, fn: Callable, name: str | None = None) -> Activation:
        """Wrap an elementwise JAX function; its kernels use quadrature."""
        return cls(name=name or f"custom:{getattr(fn, '__name__', 'fn')}", fn=fn)


@dataclass(frozen=True)
class _Named:
    """A named activation's function, built from jax on its first call.

    Naming an activation (a spec, a network) then imports no jax, and equal names give
    equal, hashable functions (stable jit caches, picklable jobs).
    """

    name: str
    params: tuple = ()

    def __call__(self, h):
        return _jax_fn(self.name, self.params)(h)


@cache
def _jax_fn(name: str, p: tuple) -> Callable:
    import jax
    import jax.numpy as jnp

    def poly(h):
        out = jnp.zeros_like(h)
        for c in reversed(p):
            out = out * h + c
        return out

    fns = {
        "erf": lambda h: p[0] * jax.scipy.special.erf(p[1] * h) + p[2],
        "relu": jax.nn.relu,
        "leaky_relu": lambda h: jnp.where(h > 0, h, p[0] * h),
        "abs": jnp.abs,
        "abrelu": lambda h: p[0] * jnp.minimum(h, 0) + p[1] * jnp.maximum(h, 0),
        "identity": lambda h: h,
        "gelu": lambda h: jax.nn.gelu(h, approximate=False),
        "sign": jnp.sign,
        "sin": lambda h: p[0] * jnp.sin(p[1] * h + p[2]),
        "cos": lambda h: p[0] * jnp.cos(p[1] * h + p[2]),
        "rbf": lambda h: math.sqrt(2) * jnp.sin(math.sqrt(2 * p[0]) * h + math.pi / 4),
        "gaussian": lambda h: p[0] * jnp.exp(p[1] * h * h),
        "exp": lambda h: p[0] * jnp.exp(p[1] * h),
        "monomial": lambda h: h ** int(p[0]),
        "rectified_monomial": lambda h: jax.nn.relu(h) ** int(p[0]),
        "polynomial": poly,
        "tanh": jnp.tanh,
        "softplus": jax.nn.softplus,
        "sigmoid": jax.nn.sigmoid,
    }
    return fns[name]


def _parse_params(base: str, arg: str, name: str) -> tuple:
    spec = PARAMS[base]
    try:
        given = tuple(float(a) for a in arg.split(",")) if arg else ()
    except ValueError:
        what = (
            f"{base} {spec[0][0]} must be a number"
            if len(spec) == 1
            else f"the parameters of {base} must be numbers"
        )
        example = ",".join(str(v) for _, v in spec) or "1,0.5"
        raise ValueError(f"{name}: {what}, got {arg!r} (write e.g. '{base}:{example}')") from None
    if base == "polynomial":
        if not given:
            raise ValueError(f"{name}: polynomial needs coefficients, e.g. 'polynomial:0,1,0.5'")
        return given
    if len(given) > len(spec):
        names = ", ".join(n for n, _ in spec) or "none"
        raise ValueError(
            f"{name}: {base} takes at most {len(spec)} parameters ({names}), got {arg!r}"
        )
    params = given + tuple(v for _, v in spec[len(given) :])
    if base in ("monomial", "rectified_monomial"):
        if params[0] != int(params[0]) or params[0] < (0 if base == "monomial" else 1):
            raise ValueError(
                f"{name}: {base} degree must be an integer >= "
                f"{0 if base == 'monomial' else 1}, got {params[0]!r}"
            )
    if base == "rbf" and params[0] <= 0:
        raise ValueError(f"{name}: rbf gamma must be > 0, got {params[0]!r}")
    return params


def get_activation(spec, name: str = "activation") -> Activation:
    """Resolve a name (``"<name>"`` or ``"<name>:<p1>,<p2>,..."``), an Activation or a
    callable.

    Raises:
      ValueError: naming ``name`` when the activation or its parameters are invalid.
    """
    if isinstance(spec, Activation):
        return spec
    if callable(spec):
        return Activation.from_fn(spec)
    if isinstance(spec, str):
        base, colon, arg = spec.partition(":")
        if base in PARAMS and (not colon or PARAMS[base] or base == "polynomial"):
            params = _parse_params(base, arg, name)
            slope = params[0] if base == "leaky_relu" else 0.0
            return Activation(base, _Named(base, params), slope, params)
    raise ValueError(
        f"unknown {name} {spec!r}; expected one of {', '.join(NAMES)} (parameters after "
        "a colon, e.g. 'leaky_relu:0.1', 'sin:1,2,0'), or an elementwise JAX function"
    )
