"""Elementwise activations shared by finite networks and infinite-width kernels.

An activation is named by a string (``"erf"``, ``"relu"``, ``"leaky_relu"``,
``"identity"``, ``"tanh"``, ``"gelu"``, ``"softplus"``, ``"sigmoid"``, ``"sin"``)
or given as an :class:`Activation`. ``"leaky_relu"`` has negative slope 0.01;
``"leaky_relu:0.2"`` sets another. Any elementwise JAX function ``f`` becomes an
activation through ``Activation.from_fn(f)``; its kernels are then computed by
Gauss-Hermite quadrature (``kernels.py``), the named ones in closed form where
one exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

#: Activations whose NNGP/NTK transforms have closed forms (docs/theory.md §2).
CLOSED_FORM = ("erf", "relu", "leaky_relu", "identity")


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity phi.

    Attributes:
      name: identifier; closed-form kernels are used when it is in ``CLOSED_FORM``.
      fn: elementwise JAX function, phi(h).
      slope: negative-side slope for ``leaky_relu`` (0 for others).
    """

    name: str
    fn: Callable
    slope: float = 0.0

    def __call__(self, h):
        return self.fn(h)

    @property
    def closed_form(self) -> bool:
        return self.name in CLOSED_FORM

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
    slope: float = 0.0

    def __call__(self, h):
        return _jax_fn(self.name, self.slope)(h)


@cache
def _jax_fn(name: str, slope: float) -> Callable:
    import jax
    import jax.numpy as jnp

    return {
        "erf": jax.scipy.special.erf,
        "relu": jax.nn.relu,
        "leaky_relu": lambda h: jnp.where(h > 0, h, slope * h),
        "identity": lambda h: h,
        "tanh": jnp.tanh,
        "gelu": lambda h: jax.nn.gelu(h, approximate=False),
        "softplus": jax.nn.softplus,
        "sigmoid": jax.nn.sigmoid,
        "sin": jnp.sin,
    }[name]


_PLAIN = ("erf", "relu", "identity", "tanh", "gelu", "softplus", "sigmoid", "sin")

NAMES = (*_PLAIN, "leaky_relu")


def get_activation(spec, name: str = "activation") -> Activation:
    """Resolve a name, ``"leaky_relu:<slope>"``, an Activation or a callable.

    Raises:
      ValueError: naming ``name`` when the activation is unknown.
    """
    if isinstance(spec, Activation):
        return spec
    if callable(spec):
        return Activation.from_fn(spec)
    if isinstance(spec, str):
        base, _, arg = spec.partition(":")
        if base == "leaky_relu":
            try:
                slope = float(arg) if arg else 0.01
            except ValueError:
                raise ValueError(
                    f"{name}: leaky_relu slope must be a number, got {arg!r} "
                    "(write e.g. 'leaky_relu:0.1')"
                ) from None
            return Activation("leaky_relu", _Named("leaky_relu", slope), slope)
        if base in _PLAIN and not arg:
            return Activation(base, _Named(base))
    raise ValueError(
        f"unknown {name} {spec!r}; expected one of {', '.join(NAMES)}, "
        "'leaky_relu:<slope>', or an elementwise JAX function"
    )
