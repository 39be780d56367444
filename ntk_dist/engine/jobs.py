"""Training jobs: what one finite-width run trains, validated when it is built.

A :class:`TrainJob` names a model, a data set, the optimiser and what to record;
:func:`record_schedule` gives its default record steps. Conventions (docs/theory.md
§3-§5): loss L = 1/(2m) sum_alpha ||f(x_alpha) - y_alpha||^2, updates
theta <- theta - eta grad L, learning rates given as eta or as eta * lambda0
(``lr_units="lambda0"``). Jobs with equal :attr:`TrainJob.batch_key` share one compiled
program in :func:`ntk_dist.engine.train.train_batch`, which also states the divergence
rule that ``divergence_factor`` scales.

Importing this module loads no jax, so a spec's section errors are reported without
it; building a job imports the models layer (its networks and the sharpness methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ntk_dist.core import validate
from ntk_dist.engine.data import DataSpec
from ntk_dist.models.methods import SHARPNESS_DEFINITIONS, SHARPNESS_METHODS
from ntk_dist.models.networks import CatapultToy, FCNetwork

OPTIMIZERS = ("gd", "sgd", "momentum")
LR_UNITS = ("absolute", "lambda0")
DTYPES = ("float32", "float64")
DEFAULT_MOMENTUM = 0.9


def record_schedule(steps: int, *, dense: int = 32, num: int = 64) -> tuple[int, ...]:
    """Steps at which a run is recorded: every step up to ``dense``, then log-spaced.

    Args:
      steps: number of optimiser steps T >= 1.
      dense: record every step 0..dense (catapults happen in the first ~log n steps).
      num: about ``num`` further points, geometrically spaced from ``dense`` to T.

    Returns:
      Sorted unique ints, always starting at 0 and ending at T.
    """
    steps = validate.positive_int(steps, "steps")
    head = np.arange(min(dense, steps) + 1)
    tail = np.geomspace(max(dense, 1), steps, num) if steps > dense else np.array([])
    return tuple(int(s) for s in np.unique(np.concatenate([head, np.rint(tail), [steps]])))


@dataclass(frozen=True)
class TrainJob:
    """One finite-width training run.

    Attributes:
      model: :class:`FCNetwork` or :class:`CatapultToy`; its out_dim must equal the
        data's target dimension.
      data: :class:`DataSpec`.
      learning_rate: > 0; eta itself (``lr_units="absolute"``) or eta * lambda0
        (``lr_units="lambda0"``, lambda0 measured on this job's network at init).
      steps: optimiser steps T >= 1.
      seed: network seed (>= 0): initialisation and SGD minibatches.
      lr_units: ``"absolute"`` or ``"lambda0"``.
      optimizer: ``"gd"`` (full batch), ``"sgd"`` (minibatches of ``batch_size``
        drawn without replacement each step), ``"momentum"`` (heavy ball,
        v <- mu v - eta g, theta <- theta + v; full batch unless ``batch_size``).
      batch_size: minibatch size for ``"sgd"`` (required) and ``"momentum"``
        (optional), 1 <= batch_size <= n_train; must be None for ``"gd"``.
      momentum: mu in [0, 1) for ``"momentum"`` (default 0.9); None/0 otherwise.
      record: steps at which trajectories are recorded (default
        :func:`record_schedule` (steps)); 0 and T are always included.
      probe_points: record Theta_hat(P, P) on the first ``probe_points`` training
        inputs at each record step (0: off).
      predict_test: record f(x_test) at each record step (needs test data).
      test_ntk: record the row Theta_hat(x_test[0], x_test) at each record step (needs
        test data; docs/theory.md §6.3 with x_test[0] = x0). Cost per record step: the
        structured empirical NTK of 1 x n_test points (FCNetwork), O(n_test k^2 n L).
      linearised: train the linearised twin and record ``sup_lin_gap``.
      dtype: ``"float32"`` or ``"float64"`` for parameters, data and arithmetic. The
        initial parameters are drawn in float32 and cast, so a seed gives the same
        network in both.
      sharpness: which sharpness lambda is (docs/theory.md §3, §7): ``"ntk"`` (top
        eigenvalue of Theta_hat(X, X) / m, default) or ``"hessian"`` (largest algebraic
        eigenvalue of the Hessian of the training loss). It sets the learning-rate unit
        of ``lr_units="lambda0"`` and the recorded lambda0 and lambda_t.
      sharpness_method: ``"auto"``, ``"dense"`` or ``"lanczos"`` (see
        :func:`ntk_dist.models.empirical.sharpness` and
        :func:`ntk_dist.models.hessian.hessian_sharpness`).
      divergence_factor: the divergence rule's factor (:mod:`ntk_dist.engine.train`), > 0.
      tag: opaque string copied to the record.
    """

    model: FCNetwork | CatapultToy
    data: DataSpec
    learning_rate: float
    steps: int
    seed: int = 0
    lr_units: str = "absolute"
    optimizer: str = "gd"
    batch_size: int | None = None
    momentum: float | None = None
    record: tuple[int, ...] | None = None
    probe_points: int = 0
    predict_test: bool = False
    test_ntk: bool = False
    linearised: bool = False
    dtype: str = "float64"
    sharpness: str = "ntk"
    sharpness_method: str = "auto"
    divergence_factor: float = 1e3
    tag: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        if not isinstance(self.model, (FCNetwork, CatapultToy)):
            raise ValueError(
                f"model must be an FCNetwork or a CatapultToy, got {type(self.model).__name__}"
            )
        per_layer = [
            name
            for name in ("activation", "sigma_w", "sigma_b")
            if isinstance(getattr(self.model, name, None), tuple)
        ]
        if per_layer:  # a run's record holds one activation, sigma_w and sigma_b
            raise ValueError(
                f"model has per-layer {', '.join(per_layer)}: training runs take networks with "
                "one activation, sigma_w and sigma_b (readout_sigma_w for the readout); "
                "per-layer networks are for fc_kernel and monte_carlo_kernel"
            )
        if not isinstance(self.data, DataSpec):
            raise ValueError(f"data must be a DataSpec, got {type(self.data).__name__}")
        if self.model.out_dim != self.data.out_dim:
            raise ValueError(
                f"model.out_dim ({self.model.out_dim}) must equal the targets' dimension of "
                f"data {self.data.name!r} ({self.data.out_dim})"
            )
        set_(self, "learning_rate", validate.positive_float(self.learning_rate, "learning_rate"))
        set_(self, "steps", validate.positive_int(self.steps, "steps"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        set_(self, "seed", int(self.seed))
        validate.choice(self.lr_units, "lr_units", LR_UNITS)
        validate.choice(self.optimizer, "optimizer", OPTIMIZERS)
        validate.choice(self.dtype, "dtype", DTYPES)
        validate.choice(self.sharpness, "sharpness", SHARPNESS_DEFINITIONS)
        validate.choice(self.sharpness_method, "sharpness_method", SHARPNESS_METHODS)
        set_(self, "batch_size", self._checked_batch_size())
        set_(self, "momentum", self._checked_momentum())
        set_(self, "record", self._checked_record())
        set_(self, "probe_points", validate.nonnegative_int(self.probe_points, "probe_points"))
        if self.probe_points > self.data.n_train:
            raise ValueError(
                f"probe_points must be in [0, data.n_train={self.data.n_train}], "
                f"got {self.probe_points}"
            )
        if self.predict_test and self.data.n_test == 0:
            raise ValueError("predict_test=True needs test data: set data.n_test >= 1")
        if self.test_ntk and self.data.n_test == 0:
            raise ValueError("test_ntk=True needs test data: set data.n_test >= 1")
        set_(
            self,
            "divergence_factor",
            validate.positive_float(self.divergence_factor, "divergence_factor"),
        )
        if not isinstance(self.tag, str):
            raise ValueError(f"tag must be a string, got {type(self.tag).__name__}")

    def _checked_batch_size(self):
        bs = self.batch_size
        if bs is None:
            if self.optimizer == "sgd":
                raise ValueError("batch_size is required for optimizer='sgd'; or use 'gd'")
            return None
        bs = validate.positive_int(bs, "batch_size")
        if bs > self.data.n_train:
            raise ValueError(
                f"batch_size ({bs}) must be <= data.n_train ({self.data.n_train}); "
                "lower batch_size or use more data"
            )
        if self.optimizer == "gd":
            raise ValueError("batch_size must be None for optimizer='gd' (full batch); use 'sgd'")
        return bs

    def _checked_momentum(self) -> float:
        if self.optimizer != "momentum":
            if self.momentum not in (None, 0, 0.0):
                raise ValueError(
                    f"momentum is only used with optimizer='momentum', got momentum="
                    f"{self.momentum!r} with optimizer={self.optimizer!r}"
                )
            return 0.0
        if self.momentum is None:
            return DEFAULT_MOMENTUM
        mu = validate.nonnegative_float(self.momentum, "momentum")
        if mu >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        return mu

    def _checked_record(self) -> tuple[int, ...]:
        if self.record is None:
            return record_schedule(self.steps)
        try:
            steps = [int(s) for s in self.record]
        except (TypeError, ValueError):
            raise ValueError(f"record must be a sequence of steps, got {self.record!r}") from None
        if any(s < 0 or s > self.steps for s in steps):
            raise ValueError(f"record steps must lie in [0, steps={self.steps}], got {steps}")
        return tuple(sorted(set(steps) | {0, self.steps}))

    @property
    def parameterization(self) -> str:
        """``"ntk"`` or ``"standard"`` (the FCNetwork's; the toy is NTK-parameterised)."""
        return getattr(self.model, "parameterization", "ntk")

    @property
    def width(self) -> int:
        """Largest hidden width n (the scale of catapult peaks)."""
        return self.model.width if isinstance(self.model, CatapultToy) else max(self.model.widths)

    @property
    def batch_key(self) -> tuple:
        """Jobs with equal keys train together in one compiled program."""
        d = self.data
        return (
            self.model,
            (d.n_train, d.n_test, d.dim, d.out_dim),
            self.steps,
            self.record,
            self.optimizer,
            self.batch_size,
            self.lr_units,
            self.probe_points,
            self.predict_test,
            self.test_ntk,
            self.linearised,
            self.dtype,
            self.sharpness,
            self.sharpness_method,
        )
