"""Monte Carlo estimates of the NNGP and NTK from an ensemble of finite networks.

neural-tangents' ``monte_carlo_kernel_fn``: average, over random initialisations of
a finite :class:`ntk_dist.FCNetwork`, of the output covariance (NNGP) and of the
empirical NTK (docs/theory.md §2), with the standard error of each entry, so an
infinite-width kernel can be checked against finite networks at a stated number of
standard errors. Both estimates are unbiased at depth 1 and O(1 / width) biased beyond.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_dist.core import validate
from ntk_dist.models.empirical import empirical_ntk
from ntk_dist.models.networks import FCNetwork


class MonteCarloKernel(NamedTuple):
    """Ensemble means and their standard errors, each of shape (N1, N2).

    Attributes:
      nngp, ntk: the means over draws of the per-draw estimates.
      nngp_se, ntk_se: their standard errors, std(ddof=1) / sqrt(draws).
      draws: the per-draw estimates, shape (draws, 2, N1, N2) (NNGP first).
    """

    nngp: np.ndarray
    ntk: np.ndarray
    nngp_se: np.ndarray
    ntk_se: np.ndarray
    draws: np.ndarray


def monte_carlo_kernel(
    model: FCNetwork, x1, x2=None, *, key, n_samples: int = 64, dtype=None
) -> MonteCarloKernel:
    """NNGP and NTK of ``model`` averaged over ``n_samples`` random initialisations.

    Per draw, the NNGP estimate is f(x1) f(x2)^T / k averaged over the model's k
    independent output units (zero-mean outputs), and the NTK estimate the empirical
    NTK averaged over its k diagonal output blocks. Cost: ``n_samples`` empirical NTKs,
    O(n_samples (N1 + N2) P) time for P parameters, run as one ``lax.map``.

    Args:
      model: a finite :class:`ntk_dist.FCNetwork`; ``out_dim`` outputs per draw
        (more outputs give more independent samples per draw).
      x1: inputs, shape (N1, d).
      x2: inputs, shape (N2, d), or None for x1.
      key: a JAX PRNG key.
      n_samples: number of initialisations >= 2.
      dtype: parameter dtype (default: the inputs' floating dtype).

    Returns:
      :class:`MonteCarloKernel`.
    """
    n = validate.positive_int(n_samples, "n_samples")
    if n < 2:
        raise ValueError(f"n_samples must be >= 2 for a standard error, got {n}")
    x1 = jnp.asarray(x1)
    x2 = x1 if x2 is None else jnp.asarray(x2)
    dtype = dtype or (x1.dtype if jnp.issubdtype(x1.dtype, jnp.floating) else jnp.float32)
    k = model.out_dim

    @jax.jit
    def one(draw_key):
        params = model.init(draw_key, x1.shape[1], dtype)
        nngp = model.apply(params, x1) @ model.apply(params, x2).T / k
        theta = empirical_ntk(model, params, x1, x2, implementation="structured")
        return jnp.stack([nngp, jnp.einsum("ijaa->ij", theta) / k])

    draws = np.asarray(jax.lax.map(one, jax.random.split(key, n)))
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(n)
    return MonteCarloKernel(mean[0], mean[1], se[0], se[1], draws)
