"""Numerical hazards: singular or ill-conditioned kernels, and float32 precision loss.

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

Float32 training (:func:`float32_check`): a float32 job's network is drawn in float32
and cast (``ntk_dist.train``), so its float64 twin is the same network. The check
evaluates lambda0 and the step-0 loss in both dtypes; a relative disagreement above
``rtol`` means the float32 run measures a different problem (its eta * lambda0 axis is
off) and is reported. ``ntk-dist validate`` and ``run --dry-run`` run it for float32 specs.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

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


class Float32Check(NamedTuple):
    """float32 vs float64 evaluation of one job's network at initialisation.

    Attributes:
      lambda0: (float32 value, float64 value) of lambda0 = top eigenvalue of Theta_hat / m.
      loss0: (float32 value, float64 value) of the train loss at step 0.
      rel_error: the larger relative disagreement of the two quantities.
      ok: ``rel_error <= rtol``.
    """

    lambda0: tuple[float, float]
    loss0: tuple[float, float]
    rel_error: float
    ok: bool


def float32_check(job, *, rtol: float = 1e-4, warn: bool = True) -> Float32Check:
    """Compare a job's lambda0 and step-0 loss in float32 and float64 (module docstring).

    Cost: two empirical NTKs of the training set and two forward passes.

    Args:
      job: a :class:`ntk_dist.TrainJob` (any dtype; evaluated in both).
      rtol: largest tolerated relative disagreement.
      warn: issue a :class:`NumericalWarning` when it is exceeded.

    Returns:
      :class:`Float32Check`.
    """
    import dataclasses

    import jax
    import jax.numpy as jnp

    from .data import load
    from .empirical import sharpness
    from .train import initial_params

    data = load(job.data)
    params32 = initial_params(dataclasses.replace(job, dtype="float32"))
    values = {}
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            params = jax.tree.map(lambda a, d=dtype: jnp.asarray(a, d), params32)
            x, y = jnp.asarray(data.x_train, dtype), jnp.asarray(data.y_train, dtype)
            f = job.model.apply(params, x)
            loss = 0.5 * jnp.sum((f - y) ** 2) / x.shape[0]
            values[dtype] = (float(sharpness(job.model, params, x)), float(loss))
    (lam32, loss32), (lam64, loss64) = values["float32"], values["float64"]
    rel = max(abs(lam32 - lam64) / abs(lam64), abs(loss32 - loss64) / max(abs(loss64), 1e-300))
    ok = bool(rel <= rtol)
    if warn and not ok:
        warnings.warn(
            f"float32 loses precision for this job: lambda0 {lam32:.6g} (float32) vs "
            f"{lam64:.6g} (float64), step-0 loss {loss32:.6g} vs {loss64:.6g} (relative "
            f"error {rel:.2g} > {rtol:g}); use dtype float64",
            NumericalWarning,
            stacklevel=2,
        )
    return Float32Check((lam32, lam64), (loss32, loss64), float(rel), ok)
