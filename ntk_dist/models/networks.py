"""Finite-width networks: the fully connected net (NTK or standard parameterisation)
and the catapult toy.

Conventions (docs/theory.md §1): for hidden layers l = 1..L and the readout l = L+1,

    h^{l} = x^{l-1} W^{l} + b^{l},  x^{l} = phi_l(h^{l}),  x^0 = x,  f(x) = h^{L+1}(x),

with s_l = sigma_w for hidden layers and s_{L+1} = ``readout_sigma_w`` (default sigma_w),
t_l = sigma_b and phi_l = phi, or, per layer, the l-th entries of lists of them
(docs/theory.md §2.1).

- ``parameterization="ntk"`` (default): W^{l} = s_l / sqrt(n_{l-1}) * w^{l},
  b^{l} = t_l * beta^{l}, and the trainable parameters are the standard-normal
  ``w`` and ``beta`` (stored under keys ``"w"`` and ``"b"``), as in neural-tangents'
  ``stax.Dense(..., parameterization='ntk')``.
- ``parameterization="standard"``: W and b are trained directly, initialised as
  W_ij ~ N(0, s_l^2 / n_{l-1}) and b_j ~ N(0, t_l^2); a layer with t_l = 0 has no
  bias at all (no ``"b"`` key), as in Kalra & Barkeshli 2023 (arXiv
  2302.12250), whose networks are SP with sigma_w^2 = 2 in hidden layers, 1 in the
  readout (``readout_sigma_w=1``), and no biases.

Both draw w, beta ~ N(0, 1) from the same keys and SP stores W = s_l / sqrt(n_{l-1}) w,
b = t_l beta (:meth:`FCNetwork.to_standard`), so one seed gives the same function at
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

    Per-layer settings, as in :class:`ntk_dist.FC`: ``activation`` may be a list of
    L activations (hidden layer l uses the l-th), ``sigma_w`` and ``sigma_b`` lists of
    L + 1 scales, the readout's last (then ``readout_sigma_w`` is ``sigma_w[-1]``);
    one value is shared by every layer (the common case, stored as one value).

    Attributes:
      widths: hidden widths (n_1, ..., n_L); ``depth`` = L = len(widths) >= 1.
      out_dim: readout width k.
      activation: name, ``"leaky_relu:<slope>"``, or :class:`Activation`; or a list
        of L of them, stored as a tuple.
      sigma_w: weight scale of the hidden layers (> 0); or a list of L + 1, stored as
        a tuple.
      sigma_b: bias scale (>= 0), shared by the readout; or a list of L + 1. In SP a
        layer whose sigma_b is 0 has no bias.
      parameterization: ``"ntk"`` or ``"standard"`` (module docstring).
      readout_sigma_w: weight scale of the readout (> 0); ``None`` (default) means
        ``sigma_w`` (its last entry for a list, which it must then equal). Kalra &
        Barkeshli 2023 use 1 with sigma_w = sqrt(2).
    """

    widths: tuple[int, ...]
    out_dim: int = 1
    activation: Activation | tuple[Activation, ...] = _DEFAULT.activation
    sigma_w: float | tuple[float, ...] = _DEFAULT.sigma_w
    sigma_b: float | tuple[float, ...] = _DEFAULT.sigma_b
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
        if isinstance(self.sigma_w, tuple):
            readout = self.sigma_w[-1]
            given = self.readout_sigma_w
            if given is not None and validate.positive_float(given, "readout_sigma_w") != readout:
                raise ValueError(
                    f"readout_sigma_w={given!r} differs from sigma_w[-1]={readout!r}: a sigma_w "
                    "list holds the readout's scale last; give it there and leave "
                    "readout_sigma_w unset"
                )
        else:
            readout = self.sigma_w if self.readout_sigma_w is None else self.readout_sigma_w
        set_(self, "readout_sigma_w", validate.positive_float(readout, "readout_sigma_w"))

    @classmethod
    def from_arch(cls, arch: FC, width=None, out_dim: int = 1, **options) -> FCNetwork:
        """The network of ``arch`` (its per-layer settings and, unless ``options`` say
        otherwise, its ``parameterization``) with hidden widths ``width``: one width for
        all ``arch.depth`` layers, a list of them, or None for ``arch.widths``; a readout
        of ``out_dim``. ``options`` are ``parameterization`` and ``readout_sigma_w``."""
        if not isinstance(arch, FC):
            raise ValueError(f"arch must be an FC, got {arch!r}")
        if width is None:
            if arch.widths is None:
                raise ValueError(
                    "from_arch needs the hidden widths: pass width=<n> (or a list of "
                    f"{arch.depth}), or build the FC with widths=[...]"
                )
            widths = arch.widths
        elif isinstance(width, list | tuple):
            widths = validate.positive_ints(width, "width")
            if len(widths) != arch.depth:
                raise ValueError(
                    f"width must be one width or a list of {arch.depth} (one per hidden "
                    f"layer of arch), got {len(widths)}"
                )
        else:
            widths = (validate.positive_int(width, "width"),) * arch.depth
        options.setdefault("parameterization", arch.parameterization)
        return cls(widths, out_dim, arch.activation, arch.sigma_w, arch.sigma_b, **options)

    @classmethod
    def make(cls, *, depth: int, width: int, out_dim: int = 1, **fields) -> FCNetwork:
        """``depth`` hidden layers of equal ``width``; ``fields`` are the other fields of
        :class:`ntk_dist.FC` (activation, sigma_w, sigma_b), FC's defaults otherwise, and
        ``parameterization`` / ``readout_sigma_w``."""
        options = {k: fields.pop(k) for k in ("parameterization", "readout_sigma_w") if k in fields}
        return cls.from_arch(FC(depth=depth, **fields), width, out_dim, **options)

    @property
    def arch(self) -> FC:
        """The architecture without the widths and the parameterisation; the readout
        scale is in it only for a per-layer ``sigma_w``."""
        return FC(self.depth, self.activation, self.sigma_w, self.sigma_b)

    @property
    def layer_activations(self) -> tuple[Activation, ...]:
        """The L hidden activations."""
        return self.arch.layer_activations

    def weight_scales(self) -> tuple[float, ...]:
        """s_1..s_{L+1}: sigma_w for the hidden layers, ``readout_sigma_w`` for the readout."""
        if isinstance(self.sigma_w, tuple):
            return self.sigma_w
        return (self.sigma_w,) * self.depth + (self.readout_sigma_w,)

    def bias_scales(self) -> tuple[float, ...]:
        """sigma_b of the L + 1 dense layers, the readout last."""
        return self.arch.layer_sigma_b

    def layer_biases(self) -> tuple[bool, ...]:
        """Per dense layer, whether it has bias parameters: always in NTK
        parameterisation, where sigma_b > 0 in SP."""
        return tuple(self.parameterization == "ntk" or sb > 0 for sb in self.bias_scales())

    @property
    def has_bias(self) -> bool:
        """Whether any layer has bias parameters (all but SP with sigma_b = 0 throughout)."""
        return any(self.layer_biases())

    def multipliers(self, in_dim: int) -> tuple[tuple[float, float], ...]:
        """Per layer, the constants (a_l, c_l) of h^{l} = a_l x^{l-1} p_w + c_l p_b in the
        trainable parameters (p_w, p_b): (s_l / sqrt(n_{l-1}), sigma_b^{l}) for NTK,
        (1, 1) for SP (c_l = 0 without a bias). The structured empirical NTK uses them
        too."""
        sizes = self.layer_sizes(in_dim)
        if self.parameterization == "standard":
            return tuple((1.0, float(b)) for b in self.layer_biases())
        return tuple(
            (s / math.sqrt(n), sb)
            for s, n, sb in zip(self.weight_scales(), sizes[:-1], self.bias_scales(), strict=True)
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
        return sum(
            a * b + bias * b
            for a, b, bias in zip(sizes[:-1], sizes[1:], self.layer_biases(), strict=True)
        )

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
        for layer, s, sb, bias in zip(
            ntk_params, self.weight_scales(), self.bias_scales(), self.layer_biases(), strict=True
        ):
            new = {"w": s / math.sqrt(layer["w"].shape[0]) * layer["w"]}
            if bias:
                new["b"] = sb * layer["b"]
            out.append(new)
        return tuple(out)

    def forward(self, params, x):
        """Post-activations x^0..x^L and pre-activations h^1..h^{L+1}.

        Returns:
          (xs, hs): lists of arrays, xs[l] of shape (N, n_l), hs[l-1] of shape (N, n_l).
        """
        xs, hs = [x], []
        acts = self.layer_activations
        for i, (layer, (a, c)) in enumerate(zip(params, self.multipliers(x.shape[1]), strict=True)):
            h = a * (xs[-1] @ layer["w"])
            if "b" in layer:
                h = h + c * layer["b"]
            hs.append(h)
            if i < len(params) - 1:
                xs.append(acts[i](h))
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
