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

    Attributes:
      depth: hidden layers L >= 1; the readout layer is added (default 2).
      activation: a name (``"relu"``, ``"erf"``, ``"leaky_relu:<slope>"``, ... from
        ``ntk_dist.theory.activations``), an :class:`Activation`, or an elementwise JAX
        function; stored resolved as an :class:`Activation` (default ``"relu"``).
      sigma_w: weight scale > 0, shared by the readout (default sqrt(2), which keeps
        the relu kernel's diagonal at the input's scale).
      sigma_b: bias scale >= 0, shared by the readout (default 0).

    Raises:
      ValueError: naming the field, e.g. ``depth must be a positive integer, got 0``.
    """

    depth: int = 2
    activation: Activation = "relu"  # type: ignore[assignment]
    sigma_w: float = math.sqrt(2.0)
    sigma_b: float = 0.0

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "depth", validate.positive_int(self.depth, "depth"))
        set_(self, "activation", get_activation(self.activation))
        set_(self, "sigma_w", validate.positive_float(self.sigma_w, "sigma_w"))
        set_(self, "sigma_b", validate.nonnegative_float(self.sigma_b, "sigma_b"))

    @property
    def activation_name(self) -> str:
        """The activation as a spec string: its name, ``"leaky_relu:<slope>"`` for leaky
        relu (``get_activation`` turns it back into the same activation), or
        ``"custom:<name>"`` for a wrapped function."""
        act = self.activation
        return f"leaky_relu:{act.slope!r}" if act.name == "leaky_relu" else act.name

    def kwargs(self) -> dict:
        """The fields as keywords, ``FC(**arch.kwargs()) == arch``, with a named activation
        as its name: plain data that pickles and resolves, in another process, to the same
        cached function (so jit caches keyed on the activation hit); any other activation
        as the :class:`Activation` itself."""
        name = self.activation_name
        try:
            named = get_activation(name) == self.activation
        except ValueError:
            named = False
        return dict(
            depth=self.depth,
            activation=name if named else self.activation,
            sigma_w=self.sigma_w,
            sigma_b=self.sigma_b,
        )

    def __repr__(self) -> str:
        return (
            f"FC(depth={self.depth}, activation={self.activation_name!r}, "
            f"sigma_w={self.sigma_w!r}, sigma_b={self.sigma_b!r})"
        )


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
