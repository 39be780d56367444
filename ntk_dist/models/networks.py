"""Finite-width networks: the fully connected net in NTK parameterisation and the catapult toy.

Conventions (docs/theory.md §1): for hidden layers l = 1..L and the readout l = L+1,

    h^{l} = x^{l-1} W^{l} + b^{l},  x^{l} = phi(h^{l}),  x^0 = x,
    W^{l} = sigma_w / sqrt(n_{l-1}) * w^{l},  b^{l} = sigma_b * beta^{l},  w, beta ~ N(0, 1),

and f(x) = h^{L+1}(x). The trainable parameters are the standard-normal ``w`` and
``beta`` (stored under keys ``"w"`` and ``"b"``), as in neural-tangents'
``stax.Dense(..., parameterization='ntk')``.

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


@dataclass(frozen=True)
class FCNetwork:
    """Fully connected network, NTK parameterisation (docs/theory.md §1).

    The architecture is an :class:`ntk_dist.FC` (:attr:`arch`) plus the widths; the
    defaults are FC's (relu, sigma_w = sqrt(2), sigma_b = 0).

    Attributes:
      widths: hidden widths (n_1, ..., n_L); ``depth`` = L = len(widths) >= 1.
      out_dim: readout width k.
      activation: name, ``"leaky_relu:<slope>"``, or :class:`Activation`.
      sigma_w: weight scale (> 0), shared by the readout.
      sigma_b: bias scale (>= 0), shared by the readout.
    """

    widths: tuple[int, ...]
    out_dim: int = 1
    activation: Activation = _DEFAULT.activation
    sigma_w: float = _DEFAULT.sigma_w
    sigma_b: float = _DEFAULT.sigma_b

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "widths", validate.positive_ints(self.widths, "widths"))
        set_(self, "out_dim", validate.positive_int(self.out_dim, "out_dim"))
        arch = FC(len(self.widths), self.activation, self.sigma_w, self.sigma_b)
        set_(self, "activation", arch.activation)
        set_(self, "sigma_w", arch.sigma_w)
        set_(self, "sigma_b", arch.sigma_b)

    @classmethod
    def from_arch(cls, arch: FC, width: int, out_dim: int = 1) -> FCNetwork:
        """``arch.depth`` hidden layers of equal ``width`` and a readout of ``out_dim``."""
        if not isinstance(arch, FC):
            raise ValueError(f"arch must be an FC, got {arch!r}")
        width = validate.positive_int(width, "width")
        return cls((width,) * arch.depth, out_dim, arch.activation, arch.sigma_w, arch.sigma_b)

    @classmethod
    def make(cls, *, depth: int, width: int, out_dim: int = 1, **fields) -> FCNetwork:
        """``depth`` hidden layers of equal ``width``; ``fields`` are the other fields of
        :class:`ntk_dist.FC` (activation, sigma_w, sigma_b), FC's defaults otherwise."""
        return cls.from_arch(FC(depth=depth, **fields), width, out_dim)

    @property
    def arch(self) -> FC:
        """The architecture without the widths."""
        return FC(self.depth, self.activation, self.sigma_w, self.sigma_b)

    @property
    def depth(self) -> int:
        return len(self.widths)

    def layer_sizes(self, in_dim: int) -> tuple[int, ...]:
        """(n_0, n_1, ..., n_L, k)."""
        return (in_dim, *self.widths, self.out_dim)

    def n_params(self, in_dim: int) -> int:
        """Trainable scalars for inputs of dimension ``in_dim``: sum of n_{l-1} n_l + n_l."""
        sizes = self.layer_sizes(validate.positive_int(in_dim, "in_dim"))
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def init(self, key, in_dim: int, dtype="float32") -> tuple[dict, ...]:
        """Standard-normal (w, beta) for every layer, of ``dtype`` (a name or a dtype).

        Returns:
          tuple of L + 1 dicts ``{"w": (n_{l-1}, n_l), "b": (n_l,)}``.
        """
        import jax
        import jax.numpy as jnp

        dtype = jnp.dtype(dtype)
        sizes = self.layer_sizes(validate.positive_int(in_dim, "in_dim"))
        keys = jax.random.split(key, 2 * (len(sizes) - 1))
        return tuple(
            {
                "w": jax.random.normal(keys[2 * i], (sizes[i], sizes[i + 1]), dtype),
                "b": jax.random.normal(keys[2 * i + 1], (sizes[i + 1],), dtype),
            }
            for i in range(len(sizes) - 1)
        )

    def forward(self, params, x):
        """Post-activations x^0..x^L and pre-activations h^1..h^{L+1}.

        Returns:
          (xs, hs): lists of arrays, xs[l] of shape (N, n_l), hs[l-1] of shape (N, n_l).
        """
        xs, hs = [x], []
        for i, layer in enumerate(params):
            scale = self.sigma_w / math.sqrt(layer["w"].shape[0])
            h = scale * (xs[-1] @ layer["w"]) + self.sigma_b * layer["b"]
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
