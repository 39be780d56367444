"""Phase labels for training runs: lazy, catapult or divergent (docs/theory.md §5).

Criteria, applied to each row of a :data:`ntk_dist.engine.records.RECORD_SCHEMA` table. None
of them needs the run to have converged within its step budget, because time scales
diverge near eta * lambda0 = 2 (docs/theory.md §5, pitfalls):

- **divergent**: the engine's ``diverged`` flag (loss non-finite or above the
  width-scaled threshold ``divergence_factor * n * max(1, loss_initial)`` of
  :mod:`ntk_dist.engine.train`, so O(n) catapult peaks are not called divergent).
- **catapult**: not divergent, and either

  (a) the loss rose above its initial value, ``loss_peak > (1 + rise_rtol) *
      loss_initial``, or
  (b) the run started above the linear stability edge and ended below it,
      ``eta * lambda0 > 2`` and ``eta * lambda_final < 2`` (lambda dropped below
      2 / eta, necessarily by at least (eta lambda0 - 2) / (eta lambda0) of lambda0).

- **lazy**: otherwise.

Criterion (a) catches the catapult on its first steps: for eta * lambda0 = 2 + eps the
unstable mode grows by a factor (1 + eps)^2 per step (docs/theory.md §5 recursion), so the
loss exceeds (1 + rise_rtol) times its start after about rise_rtol / (2 eps) steps even
though lambda may need ~ln(n) / eps steps to drop. This is what makes runs right at
eta * lambda0 ~ 2 come out right with a short budget. Criterion (b) catches catapults
where the loss never exceeds its initial value because the unstable direction carried
little of the initial residual (networks with many data points: the stable modes decay
while the top mode grows from a small amplitude), but only once lambda has dropped, so
such a run is called lazy if its budget ends before the catapult starts. In the lazy
phase the loss of gradient descent on the linearised model never rises, and the
nonlinear corrections are O(1/n), hence the small tolerance ``rise_rtol``.

The criteria assume full-batch gradient descent, as in the reference results
(docs/theory.md §5): under SGD the full-batch loss can rise from minibatch noise alone, so
(a) may call a noisy lazy run a catapult; compare SGD sweeps with that in mind.

A run that has not diverged by the end of a too-short budget above eta_max is called
catapult (its loss rose); :func:`step_budget` gives budgets that avoid this.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from ntk_dist.core import validate

PHASES = ("lazy", "catapult", "divergent")
PHASE_CODES = {name: code for code, name in enumerate(PHASES)}
DEFAULT_RISE_RTOL = 1e-3

_REQUIRED = ("diverged", "loss_initial", "loss_peak", "eta_lambda0", "lambda0", "lambda_final")


def label_runs(table: pa.Table, *, rise_rtol: float = DEFAULT_RISE_RTOL) -> pa.Array:
    """One phase label per run (criteria in the module docstring).

    Args:
      table: rows in RECORD_SCHEMA (at least the columns ``diverged``, ``loss_initial``,
        ``loss_peak``, ``eta_lambda0``, ``lambda0``, ``lambda_final``).
      rise_rtol: relative loss rise that counts as a catapult (>= 0).

    Returns:
      pa.StringArray of length ``table.num_rows`` with values in :data:`PHASES`.
      Cost O(rows).
    """
    rise_rtol = validate.nonnegative_float(rise_rtol, "rise_rtol")
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(
            f"table is missing column(s) {missing}; pass rows in "
            "ntk_dist.engine.records.RECORD_SCHEMA"
        )
    col = {c: table.column(c).to_numpy(zero_copy_only=False) for c in _REQUIRED}
    diverged = col["diverged"].astype(bool)
    rose = col["loss_peak"] > (1.0 + rise_rtol) * col["loss_initial"]
    eta_lambda0 = col["eta_lambda0"].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        eta_lambda_final = eta_lambda0 * col["lambda_final"] / col["lambda0"]
    crossed = (eta_lambda0 > 2.0) & (eta_lambda_final < 2.0)
    labels = np.where(diverged, "divergent", np.where(rose | crossed, "catapult", "lazy"))
    return pa.array(labels.tolist(), pa.string())


def phase_codes(labels) -> np.ndarray:
    """Integer codes (lazy 0, catapult 1, divergent 2) of a sequence of labels."""
    out = []
    for i, label in enumerate(labels):
        if label not in PHASE_CODES:
            raise ValueError(f"labels[{i}] must be one of {PHASES}, got {label!r}")
        out.append(PHASE_CODES[label])
    return np.asarray(out, np.int64)


def step_budget(
    width: int,
    eta_lambda0: float,
    *,
    base: int = 64,
    scale: float = 4.0,
    cap: int = 4096,
    eta_max: float = 4.0,
) -> int:
    """A step budget that resolves the phase of a run, rounded up to a few levels.

    The catapult needs about ln(n) / |eta lambda0 - 2| steps to develop and a run just
    above eta_max about ln(n) / |eta lambda0 - eta_max lambda0| steps to diverge
    (docs/theory.md §5), so

        T = base + scale * ln(n) / min(|eta lambda0 - 2|, |eta lambda0 - eta_max lambda0|),

    rounded up to the next ``base * 2**k`` and clipped to ``cap``, so that the jobs of
    a sweep fall into few step buckets and batch together (one vmapped scan per
    bucket). Labels do not depend on the budget except at the edges (module docstring).

    Args:
      width: hidden width n >= 1.
      eta_lambda0: dimensionless learning rate (> 0).
      base: smallest budget (steps, >= 1).
      scale: prefactor of the divergence (> 0).
      cap: largest budget (steps, >= base).
      eta_max: expected eta_max * lambda0 (4 for the toy, about 12 for ReLU nets).

    Returns:
      int number of steps.
    """
    width = validate.positive_int(width, "width")
    x = validate.positive_float(eta_lambda0, "eta_lambda0")
    base = validate.positive_int(base, "base")
    cap = validate.positive_int(cap, "cap")
    scale = validate.positive_float(scale, "scale")
    if cap < base:
        raise ValueError(f"cap must be >= base, got cap={cap}, base={base}")
    eta_max = validate.positive_float(eta_max, "eta_max")
    gap = max(min(abs(x - 2.0), abs(x - eta_max)), 1e-12)
    need = min(base + scale * math.log(max(width, 2)) / gap, cap)
    return min(base * 2 ** math.ceil(math.log2(need / base)), cap)
