"""The sections of a spec file: frozen pydantic models, each validated when built.

A section forbids unknown keys and checks its own fields; rules that span sections live
on the spec models (:mod:`ntk_dist.study.spec`). Units and defaults are in each
docstring; the spec reference (``docs/specs.md``) lists them all.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ntk_dist.distributed.resources import Resources
from ntk_dist.engine.data import DATASETS, DataSpec
from ntk_dist.engine.jobs import record_schedule
from ntk_dist.models.networks import CatapultToy, FCNetwork
from ntk_dist.study.search import SAMPLERS
from ntk_dist.theory.activations import get_activation
from ntk_dist.theory.architecture import FC

#: Upper bounds: far beyond any real sweep, they keep every count an int64 (Parquet) and
#: turn a typo (``n_trials: 1e12``) into an error naming the field instead of a hang.
MAX_WIDTH, MAX_STEPS, MAX_COUNT, MAX_SEED = 2**30, 10**9, 10**6, 2**32 - 1
#: The architecture defaults of a spec file are FC's (changing them changes spec hashes).
_FC = FC()

PosInt = Annotated[int, Field(gt=0, le=MAX_COUNT, strict=True)]
PosFloat = Annotated[float, Field(gt=0, lt=1e12, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, lt=1e12, allow_inf_nan=False)]
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS, strict=True)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]
#: Seeds per point or width (a typo such as 10**6 is refused, not planned).
Seeds = Annotated[int, Field(gt=0, le=1000, strict=True)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(Section):
    """The network family.

    Attributes:
      kind: ``"toy"`` (catapult model f = v^T u x / sqrt(n)) or ``"fc"`` (fully
        connected, NTK parameterisation).
      widths: hidden widths to sweep (positive ints).
      depth: hidden layers of ``fc`` (>= 1, default 2; ignored for ``toy``).
      activation: ``fc`` activation name (see ``ntk_dist.theory.activations``; default
        ``"relu"``).
      sigma_w, sigma_b: ``fc`` weight and bias scales (default sqrt(2) and 0).

    The defaults are those of :class:`ntk_dist.FC`, which :meth:`arch` returns.
    """

    kind: Literal["toy", "fc"]
    widths: list[Annotated[int, Field(gt=0, le=MAX_WIDTH, strict=True)]] = Field(
        min_length=1, max_length=1024
    )
    depth: Annotated[int, Field(gt=0, le=1024, strict=True)] = _FC.depth
    activation: str = _FC.activation_name
    sigma_w: PosFloat = _FC.sigma_w
    sigma_b: NonNegFloat = _FC.sigma_b

    @field_validator("widths")
    @classmethod
    def _distinct(cls, v):
        twice = sorted({w for w in v if v.count(w) > 1})
        if twice:
            raise ValueError(f"lists the widths {twice} more than once; list each once")
        return v

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v):
        get_activation(v)
        return v

    def arch(self) -> FC:
        """The ``fc`` architecture, as the kernels and :class:`ntk_dist.FCNetwork` take it.

        Raises:
          ValueError: for ``kind: toy``, which has none.
        """
        if self.kind != "fc":
            raise ValueError(f"model.kind {self.kind!r} has no FC architecture; use kind 'fc'")
        return FC(self.depth, self.activation, self.sigma_w, self.sigma_b)

    def build(self, width: int):
        """The network of hidden width ``width``: a CatapultToy or an FCNetwork."""
        if self.kind == "toy":
            return CatapultToy(width)
        return FCNetwork.from_arch(self.arch(), width)


class DataSection(Section):
    """Training data (fields of :class:`ntk_dist.engine.data.DataSpec`)."""

    name: str = "single"
    n_train: PosInt = 1
    n_test: Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)] = 0
    dim: PosInt = 1
    noise: NonNegFloat = 0.0
    seed: Seed = 0
    standardise: bool = False
    target: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    test_grid: bool = False

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v):
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; expected one of {', '.join(DATASETS)}")
        return v

    @model_validator(mode="after")
    def _buildable(self):
        self.build()  # the data set's own rules ("single" is one point, ...)
        return self

    def build(self) -> DataSpec:
        return DataSpec(**self.model_dump())


class BudgetSection(Section):
    """Step budget rule T = base + scale ln(n) / min|eta lambda0 - edge| (docs/theory.md §5),
    rounded up to base * 2^k and capped (see ``ntk_dist.analysis.phases.step_budget``)."""

    base: Steps = 64
    scale: PosFloat = 4.0
    cap: Steps = 4096
    eta_max: PosFloat = 4.0

    @model_validator(mode="after")
    def _cap_above_base(self):
        if self.cap < self.base:
            raise ValueError(f"cap must be >= base, got cap={self.cap}, base={self.base}")
        return self


class TrainingSection(Section):
    """How each run trains.

    Attributes:
      optimizer: ``"gd"`` (full batch, the reference results), ``"sgd"``, ``"momentum"``.
      steps: a fixed step budget, or ``"auto"`` for the budget rule.
      budget: parameters of the budget rule.
      seeds: runs (network seeds 0..seeds-1) per (width, eta * lambda0) point.
      batch_size: minibatch size for sgd/momentum.
      dtype: ``"float32"`` or ``"float64"``.
    """

    optimizer: Literal["gd", "sgd", "momentum"] = "gd"
    steps: Steps | Literal["auto"] = "auto"
    budget: BudgetSection = BudgetSection()
    seeds: Seeds = 2
    batch_size: PosInt | None = None
    dtype: Literal["float32", "float64"] = "float64"

    @model_validator(mode="after")
    def _batch_size_matches_optimizer(self):
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ValueError("batch_size must be unset for optimizer gd (full batch); use sgd")
        if self.optimizer == "sgd" and self.batch_size is None:
            raise ValueError("optimizer sgd needs batch_size; or use gd")
        return self


class SearchSection(Section):
    """Where to train.

    Attributes:
      eta_lambda0: [low, high] range of eta * lambda0, 0 < low < high.
      sampler: ``"boundary"`` (bisection on phase labels), ``"tpe"``, ``"random"``,
        ``"qmc"`` or ``"grid"`` (geometric grid, enqueued).
      n_trials: points (width, eta * lambda0) in the whole sweep.
      parallel: points per round, trained concurrently.
      resolution: target relative bracket width of the boundary sampler.
      seed: seed of the stochastic samplers.
    """

    eta_lambda0: tuple[PosFloat, PosFloat] = (0.5, 6.0)
    sampler: str = "boundary"
    n_trials: PosInt = 64
    parallel: Annotated[int, Field(gt=0, le=4096, strict=True)] = 8
    resolution: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.01
    seed: Seed = 0

    @field_validator("eta_lambda0")
    @classmethod
    def _ordered(cls, v):
        if not v[0] < v[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(v)}")
        return v

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v):
        if v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; expected one of {', '.join(SAMPLERS)}")
        return v


class ResourcesSection(Section):
    """Per Ray task (one batch of runs): ``num_cpus`` CPUs and ``num_gpus`` GPUs."""

    num_cpus: PosInt = 1
    num_gpus: NonNegFloat = 0.0

    def build(self) -> Resources:
        return Resources(num_cpus=self.num_cpus, num_gpus=self.num_gpus)


class ExperimentTraining(Section):
    """How every run of the experiment trains (full-batch gradient descent).

    Attributes:
      steps: gradient-descent steps T.
      learning_rate: eta in the units of ``lr_units`` (module docstring).
      lr_units: ``"absolute"``, ``"lambda_inf"`` or ``"lambda0"``.
      seeds: network seeds 0..seeds-1 per width.
      record_points: log-spaced record steps after the dense first 32
        (``ntk_dist.engine.jobs.record_schedule(steps, num=record_points)``).
      record_steps: explicit record steps (0 and T are always added).
      predict_test: record f(x_test) at each record step.
      test_ntk: record Theta_hat(x_test[0], x_test) at each record step.
      probe_points: record Theta_hat on the first ``probe_points`` training inputs.
      linearised: train the linearised twin (``sup_lin_gap``).
      dtype: ``"float32"`` or ``"float64"``.
    """

    steps: Steps
    learning_rate: PosFloat
    lr_units: Literal["absolute", "lambda_inf", "lambda0"] = "absolute"
    seeds: Seeds = 1
    record_points: Annotated[int, Field(gt=0, le=4096, strict=True)] = 64
    record_steps: list[Annotated[int, Field(ge=0, strict=True)]] | None = Field(
        default=None, max_length=4096
    )
    predict_test: bool = False
    test_ntk: bool = False
    probe_points: Annotated[int, Field(ge=0, strict=True)] = 0
    linearised: bool = False
    dtype: Literal["float32", "float64"] = "float64"

    @model_validator(mode="after")
    def _steps_in_range(self):
        bad = [s for s in self.record_steps or () if s > self.steps]
        if bad:
            raise ValueError(f"record_steps must lie in [0, steps={self.steps}], got {bad}")
        return self

    def schedule(self) -> tuple[int, ...]:
        if self.record_steps is not None:
            return tuple(sorted(set(self.record_steps) | {0, self.steps}))
        return record_schedule(self.steps, num=self.record_points)
