"""Phase labels for training runs, after the published definitions (docs/theory.md §7).

Per run, from its recorded trajectory (rows of
:data:`ntk_dist.engine.records.RECORD_SCHEMA`) within the early window of the first
``T_early`` steps (``early_steps``; None: the whole budget, the natural window of
full-batch gradient descent):

- **divergent**: the engine's ``diverged`` flag (loss non-finite or above the
  width-scaled threshold ``divergence_factor * n * max(1, loss_initial)`` of
  :mod:`ntk_dist.engine.train`, so O(n) catapult peaks are not called divergent;
  docs/theory.md §5). Kalra & Barkeshli use "loss < 1e5" instead; the width-scaled
  rule is ours.
- **loss_catapult**: not divergent, and the loss rose above its initial value at some
  t <= T_early (Lewkowycz et al. 2020's catapult; Kalra & Barkeshli 2023's
  "loss catapult"): ``max_{t <= T_early} L_t > (1 + tol) * L_0``, with ``tol =
  rise_rtol`` for full-batch training (see below for SGD).
- **sharpness_reduction**: no loss rise, but lambda fell by more than ``lambda_rtol``
  over the window: ``lambda_{T_early} < (1 - lambda_rtol) * lambda0`` (Kalra &
  Barkeshli's sharpness-reduction phase, which opens below c_loss as depth/width grows).
- **lazy**: neither (the loss falls and lambda barely moves).

Separately, **sharpness_catapult** (Kalra & Barkeshli's sharpness catapult): lambda rose
above lambda0, ``max_{t <= T_early} lambda_t > (1 + lambda_rtol) * lambda0``, over the
recorded steps before any divergence.

The loss maximum in the window is the engine's per-step ``loss_peak`` when it lies in
the window (``peak_step <= T_early``), else the largest recorded ``train_loss`` at
record steps <= T_early (every step is recorded up to step 32,
:func:`ntk_dist.engine.jobs.record_schedule`). lambda is measured at record steps only.

None of the criteria needs the run to have converged, because time scales diverge near
eta * lambda0 = 2 (docs/theory.md §5 pitfalls): for eta * lambda0 = 2 + eps the unstable
mode grows by (1 + eps)^2 per step, so the loss exceeds (1 + rise_rtol) L_0 after about
rise_rtol / (2 eps) steps although lambda needs ~ln(n) / eps steps to drop. In the
lazy phase the loss of gradient descent on the linearised model never rises and the
nonlinear corrections are O(1/n), hence the small ``rise_rtol``.

**Minibatch noise** (``optimizer`` sgd or momentum with ``batch_size < n_train``). The
loss used is always the full-batch training loss (the engine records it at every step
under SGD too), but minibatch noise makes it fluctuate, and a fluctuation upwards is
no catapult. The rise tolerance of such a run is scaled by the noise measured at small
learning rates in its group (width, depth, activation):

    s   = median over the seeds at the group's smallest eta * lambda0 (which must be
          <= NOISE_BELOW = 1, far inside the lazy phase) of rise / (eta * lambda0),
    tol = max(rise_rtol, noise_factor * s * eta * lambda0),

with rise = max_{t <= T_early} L_t / L_0 - 1 (clipped at 0). The linear growth with
eta * lambda0 is the leading order of the noise term -eta grad L . xi of one SGD step
(xi the minibatch gradient's deviation). Only the smallest point is the reference, and
its median: a minibatch catapult (SGD lowers the edges) at a larger reference point
would otherwise set a tolerance that hides the catapults above it. A group whose
smallest point lies above eta * lambda0 = 1 keeps tol = rise_rtol (a sweep of SGD runs
should start its range at or below 1). Full-batch runs are unaffected.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from ntk_dist.core import validate

PHASES = ("lazy", "sharpness_reduction", "loss_catapult", "divergent")
PHASE_CODES = {name: code for code, name in enumerate(PHASES)}
#: Labels of results written before the published definitions, and what they read as:
#: the old "catapult" (loss rose, or lambda crossed 2 / eta) is read as a loss catapult.
LEGACY_PHASES = {"catapult": "loss_catapult"}
DEFAULT_RISE_RTOL = 1e-3
DEFAULT_LAMBDA_RTOL = 0.05
DEFAULT_NOISE_FACTOR = 3.0
NOISE_BELOW = 1.0

#: The run columns the labels are derived from (docs/schemas: ``phase``,
#: ``sharpness_catapult``).
LABEL_COLUMNS = ("phase", "sharpness_catapult")
LABEL_SCHEMA = pa.schema(
    [
        pa.field("phase", pa.string(), False, {"doc": f"one of {PHASES}"}),
        pa.field("sharpness_catapult", pa.bool_(), False, {"doc": "lambda rose above lambda0"}),
        pa.field("loss_rise", pa.float64(), False, {"doc": "max_{t<=T_early} L_t / L_0 - 1"}),
        pa.field("rise_tol", pa.float64(), False, {"doc": "tolerance the rise was held to"}),
        pa.field("lambda_window", pa.float64(), False, {"doc": "lambda at the window's end"}),
    ]
)

_REQUIRED = (
    "diverged",
    "loss_initial",
    "loss_peak",
    "peak_step",
    "eta_lambda0",
    "lambda0",
    "steps",
    "record_steps",
    "train_loss",
    "lambda_t",
)
_NOISE_GROUP = ("width", "depth", "activation")


def classify_runs(
    table: pa.Table,
    *,
    early_steps: int | None = None,
    rise_rtol: float = DEFAULT_RISE_RTOL,
    lambda_rtol: float = DEFAULT_LAMBDA_RTOL,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
) -> pa.Table:
    """Phase, sharpness catapult and the quantities behind them, per run (module docstring).

    Args:
      table: rows in RECORD_SCHEMA (at least ``diverged``, ``loss_initial``,
        ``loss_peak``, ``peak_step``, ``eta_lambda0``, ``lambda0``, ``steps``,
        ``record_steps``, ``train_loss``, ``lambda_t``; ``optimizer``, ``batch_size``,
        ``n_train`` and the group columns when present, for the SGD tolerance).
      early_steps: the window T_early in steps (>= 1; None: each run's whole budget).
      rise_rtol: relative loss rise that counts as a loss catapult (>= 0).
      lambda_rtol: relative change of lambda that counts as a fall (sharpness
        reduction) or a rise (sharpness catapult), >= 0.
      noise_factor: multiple of the small-eta noise a stochastic run's rise must exceed.

    Returns:
      pa.Table in :data:`LABEL_SCHEMA`, one row per run, in order. Cost O(total record
      length).
    """
    rise_rtol = validate.nonnegative_float(rise_rtol, "rise_rtol")
    lambda_rtol = validate.nonnegative_float(lambda_rtol, "lambda_rtol")
    noise_factor = validate.nonnegative_float(noise_factor, "noise_factor")
    if early_steps is not None:
        early_steps = validate.positive_int(early_steps, "early_steps")
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(
            f"table is missing column(s) {missing}; pass rows in "
            "ntk_dist.engine.records.RECORD_SCHEMA"
        )
    col = {c: table.column(c).to_numpy(zero_copy_only=False) for c in _REQUIRED}
    n = table.num_rows
    diverged = col["diverged"].astype(bool)
    c = col["eta_lambda0"].astype(float)
    lambda0 = col["lambda0"].astype(float)
    rise, lam_max, lam_end = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        window = col["steps"][i] if early_steps is None else min(early_steps, col["steps"][i])
        steps = np.asarray(col["record_steps"][i])
        inside = steps <= window
        loss = np.asarray(col["train_loss"][i], float)[inside]
        lam = np.asarray(col["lambda_t"][i], float)[inside]
        peak = col["loss_peak"][i] if col["peak_step"][i] <= window else -np.inf
        top = max(peak, np.nanmax(loss, initial=-np.inf))
        rise[i] = max(top / col["loss_initial"][i] - 1.0, 0.0) if top > -np.inf else 0.0
        lam = lam[np.isfinite(lam)]
        if lam.size:
            lam_max[i], lam_end[i] = lam.max(), lam[-1]
    tol = np.full(n, rise_rtol)
    noisy = _stochastic(table)
    if noisy.any():
        keys = _keys(table)
        for key in set(keys[noisy].tolist()):
            group = noisy & (keys == key)
            low = float(np.min(c[group]))
            if low <= NOISE_BELOW:
                ref = group & (c <= low * (1 + 1e-9))
                slope = float(np.median(rise[ref] / c[ref]))
                tol[group] = np.maximum(rise_rtol, noise_factor * slope * c[group])
    with np.errstate(invalid="ignore"):
        rose = rise > tol
        fell = lam_end < (1.0 - lambda_rtol) * lambda0
        sharp = lam_max > (1.0 + lambda_rtol) * lambda0
    phase = np.where(
        diverged,
        "divergent",
        np.where(rose, "loss_catapult", np.where(fell, "sharpness_reduction", "lazy")),
    )
    return pa.Table.from_arrays(
        [
            pa.array(phase.tolist(), pa.string()),
            pa.array(sharp.tolist(), pa.bool_()),
            pa.array(rise),
            pa.array(tol),
            pa.array(lam_end),
        ],
        schema=LABEL_SCHEMA,
    )


def label_runs(table: pa.Table, **options) -> pa.Array:
    """One phase label per run: the ``phase`` column of :func:`classify_runs`.

    Returns:
      pa.StringArray of length ``table.num_rows`` with values in :data:`PHASES`.
    """
    return classify_runs(table, **options).column("phase")


def relabel(table: pa.Table, **options) -> pa.Table:
    """``table`` with its :data:`LABEL_COLUMNS` (``phase``, ``sharpness_catapult``)
    recomputed from the trajectories by :func:`classify_runs` (added where absent, in
    place where present): how runs stored under older labels are read."""
    labels = classify_runs(table, **options)
    for name in LABEL_COLUMNS:
        field = labels.schema.field(name)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), field, labels[name])
        else:
            table = table.append_column(field, labels[name])
    return table


def read_label(label: str) -> str:
    """A stored phase label under the current names (:data:`LEGACY_PHASES` mapped)."""
    label = LEGACY_PHASES.get(label, label)
    if label not in PHASE_CODES:
        raise ValueError(f"phase label must be one of {PHASES}, got {label!r}")
    return label


def phase_codes(labels) -> np.ndarray:
    """Integer codes (lazy 0, sharpness_reduction 1, loss_catapult 2, divergent 3) of a
    sequence of labels (legacy labels read as :func:`read_label` does)."""
    out = []
    for i, label in enumerate(labels):
        try:
            out.append(PHASE_CODES[read_label(label)])
        except ValueError:
            raise ValueError(f"labels[{i}] must be one of {PHASES}, got {label!r}") from None
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


def _stochastic(table: pa.Table) -> np.ndarray:
    """Runs trained on minibatches smaller than the training set."""
    n = table.num_rows
    if not {"optimizer", "batch_size", "n_train"} <= set(table.column_names):
        return np.zeros(n, bool)
    opt = table.column("optimizer").to_pylist()
    batch = table.column("batch_size").to_pylist()
    m = table.column("n_train").to_pylist()
    return np.array(
        [o != "gd" and b is not None and b < k for o, b, k in zip(opt, batch, m, strict=True)],
        bool,
    )


def _keys(table: pa.Table) -> np.ndarray:
    cols = [table.column(c).to_pylist() for c in _NOISE_GROUP if c in table.column_names]
    if not cols:
        return np.full(table.num_rows, "")
    return np.array(["|".join(map(str, k)) for k in zip(*cols, strict=True)])
