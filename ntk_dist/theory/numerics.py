"""Numerical hazards: singular or ill-conditioned kernels.

One rule for every kernel solve (:func:`ntk_dist.nngp_posterior`, :func:`ntk_dist.ntk_gp`
and :func:`ntk_dist.linearized_predict` at t = inf, :func:`ntk_dist.kernel_regression`):
a solve with a symmetric PSD kernel A whose entries carry the rounding of a dtype with
machine epsilon eps has a relative error of about cond(A) * eps. Duplicated or nearly
collinear inputs make A singular (cond = inf: NaNs or garbage). When
cond(A) > 1 / sqrt(eps) (more than half of the significant digits would be lost:
cond > 6.7e7 in float64, > 2.9e3 in float32), the solver adds the diagonal regulariser

    r = trace(A) * sqrt(eps)   (>= lambda_max(A) * sqrt(eps), so cond(A + r I) <= 1 / sqrt(eps)),

raised tenfold (at most twice) while A + r I still fails to factor, and issues a
:class:`NumericalWarning` that names the kernel, its condition number, the regulariser
used, and, for a float32 kernel, the advice to compute it in float64. A kernel that is
indefinite beyond that (a large negative eigenvalue) is still refused with ValueError.

Float32 training runs are checked by :func:`ntk_dist.engine.precision.float32_check`.
"""

from __future__ import annotations

import warnings

import numpy as np


class NumericalWarning(UserWarning):
    """A computation lost precision or was regularised to stay finite (module docstring)."""


def ill_conditioned(lam_min: float, lam_max: float, dtype) -> bool:
    """True when cond = lam_max / lam_min exceeds 1 / sqrt(eps(dtype)) (or lam_min <= 0).

    Args:
      lam_min, lam_max: smallest and largest eigenvalue (or estimates) of a PSD kernel.
      dtype: the dtype whose rounding the kernel carries.
    """
    return not (lam_min > lam_max * np.sqrt(np.finfo(dtype).eps))


def jitter(trace: float, dtype) -> float:
    """The regulariser r = trace * sqrt(eps(dtype)) (absolute, added to the diagonal)."""
    return float(trace) * float(np.sqrt(np.finfo(dtype).eps))


def warn_regularised(name: str, cond: float, added: float, mean_diag: float, dtype) -> None:
    """Issue the :class:`NumericalWarning` of a regularised solve (module docstring)."""
    dtype = np.dtype(dtype)
    msg = (
        f"{name} is singular or ill-conditioned (condition number ~{cond:.3g} in {dtype}, "
        f"e.g. duplicated or nearly collinear inputs); added {added / mean_diag:.3g} x "
        "mean(diag) to its diagonal to keep the result finite; pass diag_reg to choose it"
    )
    if dtype == np.float32 and not ill_conditioned(1.0, cond, np.float64):
        msg += (
            ". In float32 this kernel loses most significant digits: compute it in "
            "float64 (jax.config.update('jax_enable_x64', True) and float64 inputs)"
        )
    warnings.warn(msg, NumericalWarning, stacklevel=3)


def condition(lam_min: float, lam_max: float) -> float:
    """lam_max / lam_min, ``inf`` when lam_min <= 0 (a singular or indefinite kernel)."""
    return float(lam_max / lam_min) if lam_min > 0 else float("inf")
