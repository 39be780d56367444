"""Finite-width networks: the fully connected net (NTK or standard parameterisation)
and the catapult toy.

Conventions (docs/theory.md §1): for hidden layers l = 1..L and the readout l = L+1,

    h^{l} = x^{l-1} W^{l} + b^{l},  x^{l} = phi(h^{l}),  x^0 = x,  f(x) = h^{L+1}(x),

with s_l = sigma_w for hidden layers and s_{L+1} = ``readout_sigma_w`` (default sigma_w).

- ``parameterization="ntk"`` (default): W^{l} = s_l / sqrt(n_{l-1}) * w^{l},
  b^{l} = sigma_b * beta^{l}, and the trainable parameters are the standard-normal
  ``w`` and ``beta`` (stored under keys ``"w"`` and ``"b"``), as in neural-tangents'
  ``stax.Dense(..., parameterization='ntk')``.
- ``parameterization="standard"``: W and b are trained directly, initialised as
  W_ij ~ N(0, s_l^2 / n_{l-1}) and b_j ~ N(0, sigma_b^2); with sigma_b = 0 the layers
  have no biases at all (no ``"b"`` key), as in Kalra & Barkeshli 2023 (arXiv
  2302.12250), whose networks are SP with sigma_w^2 = 2 in hidden layers, 1 in the
  readout (``readout_sigma_w=1``), and no biases.

Both draw w, beta ~ N(0, 1) from the same keys and SP stores W = s_l / sqrt(n_{l-1}) w,
b = sigma_b beta (:meth:`FCNetwork.to_standard`), so one seed gives the same function at
initialisation in either parameterisation; the gradient-descent dynamics differ (SP's
gradient of layer l is n_{l-1} / s_l^2 times larger in W-units).

The catapult toy (Lewkowycz et al. 2020, arXiv 2003.02218, eq. 2):
f(x) = v^T u x / sqrt(n), u in R^{n x d}, v in R^{n x k}, entries N(0, 1), no biases.

Parameters are pytrees of arrays; ``jax.vmap(model.init, (0, None))(keys, d)``
gives an ensemble with a leading axis that ``jax.vmap(model.apply)`` consumes. Their
size comes from the shapes alone (``model.n_params(d)``) or from a pytree
(:func:`param_count`); the two agree.

JAX is imported where arrays are made, so building and validating a model (a spec
file's, say) needs no JAX of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ntk_dist.core import validate
from ntk_dist.theory.activations import Activation
from ntk_dist.theory.architecture import FC

_DEFAULT = FC()
#: The parameterisations of :class:`FCNetwork` (module docstring).
PARAMETERIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class FCNetwork:
    """Fully connected network, NTK or standard parameterisation (docs/theory.md §1).

    The architecture is an :class:`ntk_dist.FC` (:attr:`arch`) plus the widths, the
    parameterisation and the readout scale; the defaults are FC's (relu,
    sigma_w = sqrt(2), sigma_b = 0) and NTK parameterisation.

    Attributes:
      widths: hidden widths (n_1, ..., n_L); ``depth`` = L = len(widths) >= 1.
      out_dim: readout width k.
      activation: name, ``"leaky_relu:<slope>"``, or :class:`Activation`.
      sigma_w: weight scale of the hidden layers (> 0).
      sigma_b: bias scale (>= 0), shared by the readout.
      parameterization: ``"ntk"`` or ``"standard"`` (module docstring).
      readout_sigma_w: weight scale of the readout (> 0); ``None`` (default) means
        ``sigma_w``. Kalra & Barkeshli 2023 use 1 with sigma_w = sqrt(2).
    """

    widths: tuple[int, ...]
    out_dim: int = 1
    activation: Activation = _DEFAULT.activation
    sigma_w: float = _DEFAULT.sigma_w
    sigma_b: float = _DEFAULT.sigma_b
    parameterization: str = "ntk"
    readout_sigma_w: float | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "widths", validate.positive_ints(self.widths, "widths"))
        set_(self, "out_dim", validate.positive_int(self.out_dim, "out_dim"))
        arch = FC(len(self.widths), self.activation, self.sigma_w, self.sigma_b)
        set_(self, "activation", arch.activation)
        set_(self, "sigma_w", arch.sigma_w)
        set_(self, "sigma_b", arch.sigma_b)
        validate.choice(self.parameterization, "parameterization", PARAMETERIZATIONS)
        readout = self.sigma_w if self.readout_sigma_w is None else self.readout_sigma_w
        set_(self, "readout_sigma_w", validate.positive_float(readout, "readout_sigma_w"))

    @classmethod
    def from_arch(cls, arch: FC, width: int, out_dim: int = 1, **options) -> FCNetwork:
        """``arch.depth`` hidden layers of equal ``width`` and a readout of ``out_dim``;
        ``options`` are ``parameterization`` and ``readout_sigma_w``."""
        if not isinstance(arch, FC):
            raise ValueError(f"arch must be an FC, got {arch!r}")
        width = validate.positive_int(width, "width")
        return cls(
            (width,) * arch.depth, out_dim, arch.activation, arch.sigma_w, arch.sigma_b, **options
        )

    @classmethod
    def make(cls, *, depth: int, width: int, out_dim: int = 1, **fields) -> FCNetwork:
        """``depth`` hidden layers of equal ``width``; ``fields`` are the other fields of
        :class:`ntk_dist.FC` (activation, sigma_w, sigma_b), FC's defaults otherwise, and
        ``parameterization`` / ``readout_sigma_w``."""
        options = {k: fields.pop(k) for k in ("parameterization", "readout_sigma_w") if k in fields}
        return cls.from_arch(FC(depth=depth, **fields), width, out_dim, **options)

    @property
    def arch(self) -> FC:
        """The architecture without the widths, the parameterisation and the readout scale."""
        return FC(self.depth, self.activation, self.sigma_w, self.sigma_b)

    @property
    def has_bias(self) -> bool:
        """Whether the layers have bias parameters (all but SP with sigma_b = 0)."""
        return self.parameterization == "ntk" or self.sigma_b > 0

    def weight_scales(self) -> tuple[float, ...]:
        """s_1..s_{L+1}: sigma_w for the hidden layers, ``readout_sigma_w`` for the readout."""
        return (self.sigma_w,) * self.depth + (self.readout_sigma_w,)

    def multipliers(self, in_dim: int) -> tuple[tuple[float, float], ...]:
        """Per layer, the constants (a_l, c_l) of h^{l} = a_l x^{l-1} p_w + c_l p_b in the
        trainable parameters (p_w, p_b): (s_l / sqrt(n_{l-1}), sigma_b) for NTK, (1, 1)
        for SP (c_l = 0 without biases). The structured empirical NTK uses them too."""
        sizes = self.layer_sizes(in_dim)
        if self.parameterization == "standard":
            return tuple((1.0, 1.0 if self.has_bias else 0.0) for _ in self.weight_scales())
        return tuple(
            (s / math.sqrt(n), self.sigma_b)
            for s, n in zip(self.weight_scales(), sizes[:-1], strict=True)
        )

    @property
    def depth(self) -> int:
        return len(self.widths)

    def layer_sizes(self, in_dim: int) -> tuple[int, ...]:
        """(n_0, n_1, ..., n_L, k)."""
        return (in_dim, *self.widths, self.out_dim)

    def n_params(self, in_dim: int) -> int:
        """Trainable scalars for inputs of dimension ``in_dim``: sum of n_{l-1} n_l + n_l
        (no n_l terms without biases)."""
        sizes = self.layer_sizes(validate.positive_int(in_dim, "in_dim"))
        bias = int(self.has_bias)
        return sum(a * b + bias * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def init(self, key, in_dim: int, dtype="float32") -> tuple[dict, ...]:
        """Parameters at initialisation, of ``dtype`` (a name or a dtype): standard-normal
        (w, beta) for NTK; for SP the same draws mapped by :meth:`to_standard`.

        Returns:
          tuple of L + 1 dicts ``{"w": (n_{l-1}, n_l), "b": (n_l,)}`` (no ``"b"`` for SP
          without biases).
        """
        import jax
        import jax.numpy as jnp

        dtype = jnp.dtype(dtype)
        sizes = self.layer_sizes(validate.positive_int(in_dim, "in_dim"))
        keys = jax.random.split(key, 2 * (len(sizes) - 1))
        params = tuple(
            {
                "w": jax.random.normal(keys[2 * i], (sizes[i], sizes[i + 1]), dtype),
                "b": jax.random.normal(keys[2 * i + 1], (sizes[i + 1],), dtype),
            }
            for i in range(len(sizes) - 1)
        )
        if self.parameterization == "ntk":
            return params
        # The barrier keeps XLA from folding the scale into the normal sampler's own
        # constant under jit, which would round differently from an eager init.
        return self.to_standard(jax.lax.optimization_barrier(params))

    def to_standard(self, ntk_params) -> tuple[dict, ...]:
        """SP parameters (W, b) of the function that NTK parameters (w, beta) give:
        W^{l} = s_l / sqrt(n_{l-1}) w^{l}, b^{l} = sigma_b beta^{l} (dropped without
        biases). The two networks compute the same f (docs/theory.md §1)."""
        out = []
        for layer, s in zip(ntk_params, self.weight_scales(), strict=True):
            new = {"w": s / math.sqrt(layer["w"].shape[0]) * layer["w"]}
            if self.has_bias:
                new["b"] = self.sigma_b * layer["b"]
            out.append(new)
        return tuple(out)

    def forward(self, params, x):
        """Post-activations x^0..x^L and pre-activations h^1..h^{L+1}.

        Returns:
          (xs, hs): lists of arrays, xs[l] of shape (N, n_l), hs[l-1] of shape (N, n_l).
        """
        xs, hs = [x], []
        for i, (layer, (a, c)) in enumerate(zip(params, self.multipliers(x.shape[1]), strict=True)):
            h = a * (xs[-1] @ layer["w"])
            if "b" in layer:
                h = h + c * layer["b"]
            hs.append(h)
            if i < len(params) - 1:
                xs.append(self.activation(h))
        return xs, hs

    def apply(self, params, x):
        """Network output f(x) of shape (N, k) for inputs of shape (N, n_0)."""
        return self.forward(params, x)[1][-1]


@dataclass(frozen=True)
class CatapultToy:
    """Two-layer linear model f(x) = v^T u x / sqrt(n) (Lewkowycz et al. 2020).

    Attributes:
      width: hidden width n.
      out_dim: readout width k (the paper uses k = 1).
    """

    width: int
    out_dim: int = 1

    def __post_init__(self):
        object.__setattr__(self, "width", validate.positive_int(self.width, "width"))
        object.__setattr__(self, "out_dim", validate.positive_int(self.out_dim, "out_dim"))

    def n_params(self, in_dim: int) -> int:
        """Trainable scalars for inputs of dimension ``in_dim``: n (d + k)."""
        return self.width * (validate.positive_int(in_dim, "in_dim") + self.out_dim)

    def init(self, key, in_dim: int, dtype="float32") -> dict:
        """``{"u": (n, d), "v": (n, k)}`` with N(0, 1) entries of ``dtype``."""
        import jax
        import jax.numpy as jnp

        in_dim = validate.positive_int(in_dim, "in_dim")
        dtype = jnp.dtype(dtype)
        ku, kv = jax.random.split(key)
        return {
            "u": jax.random.normal(ku, (self.width, in_dim), dtype),
            "v": jax.random.normal(kv, (self.width, self.out_dim), dtype),
        }

    def apply(self, params, x):
        """f(x) of shape (N, k) for x of shape (N, d)."""
        return (x @ params["u"].T) @ params["v"] / math.sqrt(self.width)


Model = FCNetwork | CatapultToy


def param_count(params) -> int:
    """Number of trainable scalars in a parameter pytree (arrays or ``jax.eval_shape``
    structs); equals ``model.n_params(in_dim)`` for ``model.init(key, in_dim)``."""
    import jax

    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
