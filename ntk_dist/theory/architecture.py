"""The architecture of a fully connected network: one description for every layer.

An :class:`FC` says what the infinite-width kernels (:func:`ntk_dist.fc_kernel`,
:func:`ntk_dist.gram`, :func:`ntk_dist.kernel_regression`), the finite networks
(:meth:`ntk_dist.FCNetwork.from_arch`) and a spec file's ``model`` section
(``ModelSection.arch``) share: depth, activation and the two scales of the NTK
parameterisation (docs/theory.md §1-§2). The functions that compute with an
architecture take either ``arch=FC(...)`` or its fields as keywords
(``depth=3, activation="erf"``), through :func:`resolve`; the defaults are FC's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ntk_dist.core import validate
from ntk_dist.theory.activations import Activation, get_activation


@dataclass(frozen=True)
class FC:
    """Fully connected architecture in NTK parameterisation (docs/theory.md §1-§2).

    h^{l} = x^{l-1} W^{l} + b^{l} with W^{l} = sigma_w / sqrt(n_{l-1}) w^{l} and
    b^{l} = sigma_b beta^{l}, w, beta ~ N(0, 1), for L hidden layers and the readout;
    the widths belong to a finite network (:class:`ntk_dist.FCNetwork`), not to FC.

    Per-layer settings: ``activation`` may be a list of L activations (hidden layer
    l uses the l-th) and ``sigma_w``, ``sigma_b`` lists of L + 1 scales (the last is
    the readout's); one value is shared by every layer (the common case). The kernels
    and the finite networks (:meth:`ntk_dist.FCNetwork.from_arch`) honour per-layer
    settings.

    Attributes:
      depth: hidden layers L >= 1; the readout layer is added (default 2).
      activation: a name (``"relu"``, ``"erf"``, ``"leaky_relu:<slope>"``, ... from
        ``ntk_dist.theory.activations``), an :class:`Activation`, or an elementwise JAX
        function; stored resolved as an :class:`Activation` (default ``"relu"``); or a
        list of L of them, stored as a tuple.
      sigma_w: weight scale > 0, shared by the readout (default sqrt(2), which keeps
        the relu kernel's diagonal at the input's scale); or a list of L + 1.
      sigma_b: bias scale >= 0, shared by the readout (default 0); or a list of L + 1.
      parameterization: ``"ntk"`` (default, docs/theory.md §1) or ``"standard"``
        (neural-tangents' ``parameterization="standard"``: the same NNGP, an NTK that
        grows with the widths; docs/theory.md §2.1).
      widths: the L hidden widths n_1..n_L; required by ``"standard"`` (whose
        infinite-width NTK depends on them), ignored by the NTK parameterisation's
        kernels (default None).

    Raises:
      ValueError: naming the field, e.g. ``depth must be a positive integer, got 0``.
    """

    depth: int = 2
    activation: Activation = "relu"  # type: ignore[assignment]
    sigma_w: float = math.sqrt(2.0)
    sigma_b: float = 0.0
    parameterization: str = "ntk"
    widths: tuple | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "depth", validate.positive_int(self.depth, "depth"))
        depth = self.depth
        set_(self, "activation", _per_layer(self.activation, depth, "activation", get_activation))
        set_(
            self, "sigma_w", _per_layer(self.sigma_w, depth + 1, "sigma_w", validate.positive_float)
        )
        set_(
            self,
            "sigma_b",
            _per_layer(self.sigma_b, depth + 1, "sigma_b", validate.nonnegative_float),
        )
        validate.choice(self.parameterization, "parameterization", PARAMETERIZATIONS)
        if self.widths is not None:
            widths = _per_layer(self.widths, depth, "widths", validate.positive_int)
            set_(self, "widths", widths if isinstance(widths, tuple) else (widths,) * depth)
        if self.parameterization == "standard" and self.widths is None:
            raise ValueError(
                "parameterization='standard' needs widths: its infinite-width NTK grows with "
                "the hidden widths n_l (docs/theory.md §2.1); pass widths=[n_1, ..., n_L] or "
                "one width"
            )

    @property
    def layer_activations(self) -> tuple[Activation, ...]:
        """The L hidden activations."""
        return _expand(self.activation, self.depth)

    @property
    def layer_sigma_w(self) -> tuple[float, ...]:
        """sigma_w of the L + 1 dense layers, the readout last."""
        return _expand(self.sigma_w, self.depth + 1)

    @property
    def layer_sigma_b(self) -> tuple[float, ...]:
        """sigma_b of the L + 1 dense layers, the readout last."""
        return _expand(self.sigma_b, self.depth + 1)

    @property
    def activation_name(self):
        """The activation as a spec string: its name, with its parameters where they are
        not the defaults (``"leaky_relu:<slope>"``; ``get_activation`` turns it back into
        the same activation), or ``"custom:<name>"`` for a wrapped function; a list of
        them for per-layer activations."""
        if isinstance(self.activation, tuple):
            return [a.spec for a in self.activation]
        return self.activation.spec

    def kwargs(self) -> dict:
        """The fields as keywords, ``FC(**arch.kwargs()) == arch``, with a named activation
        as its name: plain data that pickles and resolves, in another process, to the same
        cached function (so jit caches keyed on the activation hit); any other activation
        as the :class:`Activation` itself."""
        acts = self.layer_activations
        plain = [_plain(a) for a in acts]
        activation = plain if isinstance(self.activation, tuple) else plain[0]
        out = dict(
            depth=self.depth,
            activation=activation,
            sigma_w=list(self.sigma_w) if isinstance(self.sigma_w, tuple) else self.sigma_w,
            sigma_b=list(self.sigma_b) if isinstance(self.sigma_b, tuple) else self.sigma_b,
        )
        # Only non-default new fields appear, so older kernels' records are unchanged.
        if self.parameterization != "ntk":
            out["parameterization"] = self.parameterization
        if self.widths is not None:
            out["widths"] = list(self.widths)
        return out

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={v!r}" for k, v in self.kwargs().items() if k in ("parameterization", "widths")
        )
        return (
            f"FC(depth={self.depth}, activation={self.activation_name!r}, "
            f"sigma_w={self.sigma_w!r}, sigma_b={self.sigma_b!r}{extra})"
        )


#: ``parameterization`` values (docs/theory.md §1-§2).
PARAMETERIZATIONS = ("ntk", "standard")


def _plain(act: Activation):
    """A named activation as its spec string, any other as the Activation itself."""
    try:
        return act.spec if get_activation(act.spec) == act else act
    except ValueError:
        return act


def _per_layer(value, n: int, name: str, check):
    """One checked value, or a tuple of ``n`` checked values from a list/tuple."""
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(
                f"{name} must be one value or a list of {n} (one per layer), got {len(value)}"
            )
        return tuple(check(v, f"{name}[{i}]") for i, v in enumerate(value))
    return check(value, name)


def _expand(value, n: int) -> tuple:
    return value if isinstance(value, tuple) else (value,) * n


#: The field names of :class:`FC`, the keywords :func:`resolve` accepts.
FIELDS = tuple(f.name for f in fields(FC))


def resolve(arch: FC | None, given: dict) -> FC:
    """The architecture of a call that takes ``arch`` or FC's fields as keywords.

    Args:
      arch: an :class:`FC`, or ``None`` to build one from ``given``.
      given: the call's architecture keywords (a subset of ``FIELDS``); FC's defaults
        fill the rest.

    Returns:
      ``arch`` itself, or ``FC(**given)``.

    Raises:
      ValueError: both ``arch`` and keywords were passed, ``arch`` is not an FC, or a
        field is invalid.
      TypeError: a keyword is not a field of FC.
    """
    if arch is None:
        unknown = sorted(set(given) - set(FIELDS))
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the "
                f"architecture fields are {', '.join(FIELDS)}"
            )
        return FC(**given)
    if given:
        raise ValueError(
            f"pass the architecture either as arch or as its fields, not both: got "
            f"arch={arch!r} and {', '.join(sorted(given))}; put the fields in FC(...)"
        )
    if not isinstance(arch, FC):
        raise ValueError(
            f"arch must be an FC, got {arch!r}; build one with FC(depth=..., activation=..., "
            "sigma_w=..., sigma_b=...)"
        )
    return arch
