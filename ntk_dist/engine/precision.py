"""Float32 training precision (docs/theory.md §3).

A float32 job's network is drawn in float32 and cast (:mod:`ntk_dist.engine.train`),
so its float64 twin is the same network. :func:`float32_check` evaluates lambda0 and
the step-0 loss in both dtypes; a relative disagreement above ``rtol`` means the
float32 run measures a different problem (its eta * lambda0 axis is off) and is
reported with a :class:`ntk_dist.theory.numerics.NumericalWarning`. ``ntk-dist
validate`` and ``run --dry-run`` run it for float32 specs.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

from ntk_dist.theory.numerics import NumericalWarning


class Float32Check(NamedTuple):
    """float32 vs float64 evaluation of one job's network at initialisation.

    Attributes:
      lambda0: (float32 value, float64 value) of lambda0, the job's sharpness
        (``TrainJob.sharpness``: of Theta_hat / m, or of the loss Hessian).
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

    Cost: two sharpness evaluations on the training set and two forward passes.

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

    from ntk_dist.engine.data import load
    from ntk_dist.engine.train import initial_params
    from ntk_dist.models.hessian import measured_sharpness

    data = load(job.data)
    params32 = initial_params(dataclasses.replace(job, dtype="float32"))
    values = {}
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            params = jax.tree.map(lambda a, d=dtype: jnp.asarray(a, d), params32)
            x, y = jnp.asarray(data.x_train, dtype), jnp.asarray(data.y_train, dtype)
            f = job.model.apply(params, x)
            loss = 0.5 * jnp.sum((f - y) ** 2) / x.shape[0]
            lam = measured_sharpness(job.sharpness, job.model, params, x, y)
            values[dtype] = (float(lam), float(loss))
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
