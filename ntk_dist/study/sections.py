"""The sections of a spec file: frozen pydantic models, each validated when built.

A section forbids unknown keys and checks its own fields; rules that span sections live
on the spec models (:mod:`ntk_dist.study.spec`). Units and defaults are in each
docstring; the spec reference (``docs/specs.md``) lists them all.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from ntk_dist.core import validate
from ntk_dist.distributed.resources import Resources
from ntk_dist.engine.data import DATASETS, DIGITS_DIM, DataSpec
from ntk_dist.engine.datafile import read_data_file
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

    #: Fields added after spec hashes were first published. While at their default they
    #: are left out of the section's dump, so a spec that does not set them keeps its
    #: hash (and its results directory) from before they existed.
    omitted_defaults: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler):
        data = handler(self)
        for name in self.omitted_defaults:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data


Depth = Annotated[int, Field(gt=0, le=1024, strict=True)]


class ModelSection(Section):
    """The network family.

    Attributes:
      kind: ``"toy"`` (catapult model f = v^T u x / sqrt(n)) or ``"fc"`` (fully
        connected, NTK parameterisation).
      widths: hidden widths to sweep (positive ints).
      depth: hidden layers of ``fc`` (>= 1, default 2; ignored for ``toy``), or a list
        of distinct depths: a sweep then trains every (width, depth) group and locates
        its boundaries per group (an experiment takes one depth).
      activation: ``fc`` activation name (see ``ntk_dist.theory.activations``; default
        ``"relu"``).
      sigma_w, sigma_b: ``fc`` weight and bias scales (default sqrt(2) and 0).
      parameterization: ``fc`` parameterisation, ``"ntk"`` (default) or ``"standard"``
        (trainable W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2), no biases when
        sigma_b = 0; docs/theory.md §1).
      readout_sigma_w: ``fc`` readout weight scale (default: ``sigma_w``); Kalra &
        Barkeshli 2023's networks are ``standard`` with sigma_w = sqrt(2),
        readout_sigma_w = 1, sigma_b = 0.

    The readout width is the data's target dimension (``build``'s ``out_dim``). The
    defaults are those of :class:`ntk_dist.FC`, which :meth:`arch` returns.
    """

    omitted_defaults = ("parameterization", "readout_sigma_w")

    kind: Literal["toy", "fc"]
    widths: list[Annotated[int, Field(gt=0, le=MAX_WIDTH, strict=True)]] = Field(
        min_length=1, max_length=1024
    )
    depth: Depth | list[Depth] = _FC.depth
    activation: str = _FC.activation_name
    sigma_w: PosFloat = _FC.sigma_w
    sigma_b: NonNegFloat = _FC.sigma_b
    parameterization: Literal["ntk", "standard"] = "ntk"
    readout_sigma_w: PosFloat | None = None

    @model_validator(mode="after")
    def _fc_only_options(self):
        if self.kind == "toy" and (self.parameterization != "ntk" or self.readout_sigma_w):
            raise ValueError(
                "model.parameterization and model.readout_sigma_w apply to kind 'fc' only; "
                "the toy f = v^T u x / sqrt(n) has its own parameterisation"
            )
        return self

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

    @field_validator("depth")
    @classmethod
    def _distinct_depths(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("depth list must not be empty; give one depth or several")
            if len(set(v)) != len(v):
                raise ValueError(f"depths must be distinct, got {v}")
        return v

    @property
    def depths(self) -> tuple[int, ...]:
        """The depths to sweep: ``(depth,)`` for one depth, the list's in order for several
        (``(1,)`` for the toy, whose depth is ignored)."""
        if self.kind == "toy":
            return (1,)
        return tuple(self.depth) if isinstance(self.depth, list) else (self.depth,)

    def arch(self, depth: int | None = None) -> FC:
        """The ``fc`` architecture, as the kernels and :class:`ntk_dist.FCNetwork` take it.

        Args:
          depth: which of :attr:`depths` (None: the only one).

        Raises:
          ValueError: for ``kind: toy``, which has none, or a depth list without ``depth``.
        """
        if self.kind != "fc":
            raise ValueError(f"model.kind {self.kind!r} has no FC architecture; use kind 'fc'")
        if depth is None:
            if len(self.depths) > 1:
                raise ValueError(f"model.depth is a list {list(self.depths)}; pick one depth")
            depth = self.depths[0]
        return FC(depth, self.activation, self.sigma_w, self.sigma_b)

    def build(self, width: int, out_dim: int = 1, depth: int | None = None):
        """The network of hidden width ``width``, ``out_dim`` outputs (the data's target
        dimension) and ``depth`` (one of :attr:`depths`; None: the first): a CatapultToy
        or an FCNetwork."""
        if self.kind == "toy":
            return CatapultToy(width, out_dim)
        return FCNetwork.from_arch(
            self.arch(self.depths[0] if depth is None else depth),
            width,
            out_dim,
            parameterization=self.parameterization,
            readout_sigma_w=self.readout_sigma_w,
        )


class DataSection(Section):
    """Training data (fields of :class:`ntk_dist.engine.data.DataSpec`).

    ``dim`` is taken from the data when unset for ``digits`` (64) and ``file`` (the
    columns of x); the targets' dimension (10 for ``digits``, the columns of y for
    ``file``) sets the network's readout width. For ``file``, ``path`` names a ``.npz``
    or ``.parquet`` file (:mod:`ntk_dist.engine.datafile`; a relative path is resolved
    against the current directory), ``n_train`` defaults to every row not used for
    testing, and ``sha256`` pins the file's content: when unset it is filled in from the
    file at validation, so the spec stored with the results (and the spec hash) records
    which data they were computed on, and a changed file is refused.
    """

    omitted_defaults = ("path", "sha256")

    name: str = "single"
    n_train: PosInt = 1
    n_test: Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)] = 0
    dim: PosInt = 1
    noise: NonNegFloat = 0.0
    seed: Seed = 0
    standardise: bool = False
    target: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    test_grid: bool = False
    path: Annotated[str, Field(min_length=1)] | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v):
        if v not in DATASETS:
            raise ValueError(
                f"unknown dataset {v!r} (expected one of {', '.join(DATASETS)})"
                + validate.did_you_mean(v, DATASETS)
            )
        return v

    @field_validator("path")
    @classmethod
    def _readable_file(cls, v, info):
        if v is not None and info.data.get("name") == "file":
            try:
                read_data_file(v)  # cached: the checks below reuse it
            except ValueError as err:
                raise ValueError(str(err).removeprefix("data.path: ")) from None
        return v

    @model_validator(mode="after")
    def _buildable(self):
        given, set_ = self.model_fields_set, lambda k, v: object.__setattr__(self, k, v)
        if self.name == "digits" and "dim" not in given:
            set_("dim", DIGITS_DIM)  # taken from the data when unset
        if self.name == "file" and self.path is not None:
            arrays = read_data_file(self.path)
            rows, dim = arrays.x.shape
            if "dim" not in given:
                set_("dim", dim)
            if "n_train" not in given:
                if rows <= self.n_test:
                    raise ValueError(
                        f"data.n_test ({self.n_test}) leaves no training rows in {self.path!r} "
                        f"({rows} rows)"
                    )
                set_("n_train", rows - self.n_test)
            if self.sha256 is None:
                set_("sha256", arrays.sha256)
        self.build()  # the data set's own rules ("single" is one point, ...)
        return self

    def build(self) -> DataSpec:
        fields = self.model_dump()
        if self.path is not None:  # workers may run in another directory
            fields["path"] = str(Path(self.path).resolve())
        return DataSpec(**fields)


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
      early_steps: the phase labels' early window T_early in steps (docs/theory.md §7;
        default None: the whole budget, the natural window of full-batch GD; Kalra &
        Barkeshli use 10 for SGD).
      sharpness: ``"ntk"`` (top eigenvalue of Theta_hat(X, X) / m, default) or
        ``"hessian"`` (largest algebraic eigenvalue of the Hessian of the training loss):
        the unit of eta * lambda0 and the recorded lambda (docs/theory.md §3, §7).
    """

    omitted_defaults = ("early_steps", "sharpness")

    optimizer: Literal["gd", "sgd", "momentum"] = "gd"
    steps: Steps | Literal["auto"] = "auto"
    budget: BudgetSection = BudgetSection()
    seeds: Seeds = 2
    batch_size: PosInt | None = None
    dtype: Literal["float32", "float64"] = "float64"
    early_steps: Steps | None = None
    sharpness: Literal["ntk", "hessian"] = "ntk"

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
      points_per_width: points (width, eta * lambda0) to train at each width (at each
        (width, depth) group when ``model.depth`` is a list); the sweep has
        ``points_per_width * len(model.widths) * len(depths)`` points.
      n_trials: deprecated spelling: points over all widths together (a FutureWarning
        says what to write instead). Give one of the two; neither means 64 points over
        all widths. A spec and its ``points_per_width`` spelling share one spec hash.
      parallel: points per round, trained concurrently.
      resolution: target relative bracket width of the boundary sampler.
      seed: seed of the stochastic samplers.
    """

    eta_lambda0: tuple[PosFloat, PosFloat] = (0.5, 6.0)
    sampler: str = "boundary"
    points_per_width: PosInt | None = None
    n_trials: PosInt | None = None
    parallel: Annotated[int, Field(gt=0, le=4096, strict=True)] = 8
    resolution: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.01
    seed: Seed = 0

    @field_validator("eta_lambda0")
    @classmethod
    def _ordered(cls, v):
        if not v[0] < v[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _one_count(self):
        if self.points_per_width is not None and self.n_trials is not None:
            raise ValueError(
                "give search.points_per_width or the deprecated search.n_trials, not both"
            )
        if self.n_trials is not None:
            warnings.warn(
                f"search.n_trials ({self.n_trials} points over all widths) is deprecated: "
                "write search.points_per_width (points at each width, or at each (width, "
                "depth) group) instead; n_trials divided by the number of groups keeps the "
                "spec hash and its results",
                FutureWarning,
                stacklevel=2,
            )
        return self

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v):
        if v not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {v!r} (expected one of {', '.join(SAMPLERS)})"
                + validate.did_you_mean(v, SAMPLERS)
            )
        return v


class ResourcesSection(Section):
    """Per Ray task (one batch of runs): ``num_cpus`` CPUs and ``num_gpus`` GPUs;
    ``chunk_size`` runs per vmapped chunk inside a batch (default: automatic, see
    ``ntk_dist.engine.train.auto_chunk``)."""

    omitted_defaults = ("chunk_size",)

    num_cpus: PosInt = 1
    num_gpus: NonNegFloat = 0.0
    chunk_size: PosInt | None = None

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
      sharpness: ``"ntk"`` or ``"hessian"`` (as in :class:`TrainingSection`); the unit of
        ``lr_units: lambda0``.
    """

    omitted_defaults = ("sharpness",)

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
    sharpness: Literal["ntk", "hessian"] = "ntk"

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
