"""The training record: one row per training job, every column documented here.

Conventions are docs/theory.md §3-§5: loss L = 1/(2m) sum_alpha ||f(x_alpha) - y_alpha||^2,
lambda = the sharpness named in the ``sharpness`` column (default: top eigenvalue of
Theta_hat(X, X) / m; or of the loss Hessian, docs/theory.md §7), learning rates reported both as eta
(absolute) and as the dimensionless eta * lambda0. ``RECORD_SCHEMA`` is the single
source of truth: its field metadata carries each column's unit and meaning, and
:func:`describe` renders it as a Markdown table.

Values recorded after a job diverged are NaN (the job is frozen from that step on).
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa


class Column(NamedTuple):
    """One record column: pyarrow type, nullability, unit and meaning."""

    name: str
    type: pa.DataType
    nullable: bool
    unit: str
    doc: str


_F = pa.float64()
_I = pa.int64()
_S = pa.string()

COLUMNS: tuple[Column, ...] = (
    # Identifiers.
    Column(
        "tag", _S, False, "", "opaque job id carried from TrainJob.tag (sweeps put run keys here)"
    ),
    Column("model_kind", _S, False, "", "'fc' (FCNetwork) or 'toy' (CatapultToy)"),
    Column("width", _I, False, "units", "largest hidden width n (the toy's n)"),
    Column("depth", _I, False, "layers", "number of hidden layers L (1 for the toy)"),
    Column("activation", _S, False, "", "activation name ('identity' for the toy)"),
    Column("sigma_w", _F, True, "", "weight scale sigma_w (null for the toy)"),
    Column("sigma_b", _F, True, "", "bias scale sigma_b (null for the toy)"),
    Column("readout_sigma_w", _F, True, "", "readout weight scale (null for the toy)"),
    Column(
        "parameterization", _S, False, "", "'ntk' or 'standard' (docs/theory.md §1; toy: 'ntk')"
    ),
    Column(
        "sharpness",
        _S,
        False,
        "",
        "which sharpness lambda0, lambda_t and eta*lambda0 use: 'ntk' (top eigenvalue of "
        "Theta_hat/m) or 'hessian' (largest algebraic eigenvalue of the loss Hessian)",
    ),
    Column("out_dim", _I, False, "outputs", "readout width k"),
    Column("dataset", _S, False, "", "DataSpec.name"),
    Column("n_train", _I, False, "points", "training set size m"),
    Column("data_seed", _I, False, "", "DataSpec.seed"),
    Column("seed", _I, False, "", "TrainJob.seed (network initialisation and SGD batches)"),
    Column("optimizer", _S, False, "", "'gd', 'sgd' or 'momentum'"),
    Column("batch_size", _I, True, "points", "minibatch size (null: full batch)"),
    Column("momentum", _F, False, "", "heavy-ball coefficient (0 for gd/sgd)"),
    Column("steps", _I, False, "steps", "number of optimiser steps T"),
    Column(
        "lr_units", _S, False, "", "how TrainJob.learning_rate was given: 'absolute' or 'lambda0'"
    ),
    Column("dtype", _S, False, "", "'float32' or 'float64'"),
    # Scalars.
    Column("learning_rate", _F, False, "", "absolute step size eta"),
    Column("lambda0", _F, False, "", "sharpness (column sharpness) at initialisation, own network"),
    Column("eta_lambda0", _F, False, "", "dimensionless eta * lambda0 (2: lazy/catapult boundary)"),
    Column("loss_initial", _F, False, "", "train loss at step 0"),
    Column("loss_peak", _F, False, "", "max train loss over steps 0..T before divergence"),
    Column("peak_step", _I, False, "step", "first step attaining loss_peak"),
    Column("loss_final", _F, False, "", "train loss at step T (NaN if diverged)"),
    Column("lambda_final", _F, False, "", "lambda at step T (NaN if diverged)"),
    Column("diverged", pa.bool_(), False, "", "divergence rule of train.py was met"),
    Column("diverged_step", _I, True, "step", "first step t with a diverged loss (null if not)"),
    Column(
        "param_change",
        _F,
        False,
        "",
        "||theta_T - theta_0|| / ||theta_0|| (frozen state if diverged)",
    ),
    Column(
        "sup_lin_gap",
        _F,
        True,
        "output units",
        "sup_t ||f_t(X) - f_lin,t(X)||_F over all steps (null if not tracked)",
    ),
    Column(
        "wall_time_s",
        _F,
        False,
        "s",
        "wall time of the job's batch (compile included) / batch_jobs",
    ),
    Column("batch_jobs", _I, False, "jobs", "number of jobs trained together in this job's batch"),
    # Trajectories on the record schedule.
    Column(
        "record_steps",
        pa.list_(_I),
        False,
        "step",
        "steps t at which the lists below were recorded",
    ),
    Column("train_loss", pa.list_(_F), False, "", "train loss at record_steps"),
    Column(
        "test_loss",
        pa.list_(_F),
        True,
        "",
        "test loss 1/(2 n_test) sum ||f - y||^2 (null without test data)",
    ),
    Column("lambda_t", pa.list_(_F), False, "", "lambda at record_steps"),
    Column(
        "probe_ntk",
        pa.list_(pa.list_(_F)),
        True,
        "",
        "Theta_hat(P, P), P = first probe_points training inputs; per record step, "
        "(p, p, k, k) row-major",
    ),
    Column(
        "test_pred",
        pa.list_(pa.list_(_F)),
        True,
        "output units",
        "f(x_test) per record step, (n_test, k) row-major",
    ),
    Column(
        "test_ntk",
        pa.list_(pa.list_(_F)),
        True,
        "",
        "Theta_hat(x_test[0], x_test) per record step, (n_test, k, k) row-major "
        "(null unless TrainJob.test_ntk)",
    ),
)

RECORD_SCHEMA = pa.schema(
    [
        pa.field(c.name, c.type, nullable=c.nullable, metadata={"unit": c.unit, "doc": c.doc})
        for c in COLUMNS
    ]
)


def describe() -> str:
    """The record columns as a Markdown table (name, type, unit, meaning)."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.unit} | {c.doc} |" for c in COLUMNS]
    return "\n".join(lines)
