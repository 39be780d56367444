"""Sweep specs: YAML files in ``sweeps/``, validated when loaded.

A spec names the model family, the data, the training rule, the search over
(width, eta * lambda0) and the resources per Ray task. Every section is a frozen
pydantic model that forbids unknown keys; a bad spec raises ValueError naming the
file and the field, e.g.
``sweeps/foo.yaml: model.widths[1]: width must be a positive integer, got -3``.

Example (``sweeps/catapult_toy.yaml``)::

    name: catapult_toy
    model: {kind: toy, widths: [256, 1024, 4096, 16384]}
    data: {name: single}
    training: {seeds: 2}                 # steps: auto (budget rule of science.md §5)
    search: {eta_lambda0: [0.5, 6.0], sampler: boundary, n_trials: 96, parallel: 16}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .activations import get_activation
from .data import DATASETS, DataSpec
from .execute import Resources
from .networks import CatapultToy, FCNetwork
from .search import SAMPLERS

#: Upper bounds: far beyond any real sweep, they keep every count an int64 (Parquet) and
#: turn a typo (``n_trials: 1e12``) into an error naming the field instead of a hang.
MAX_WIDTH, MAX_STEPS, MAX_COUNT, MAX_SEED = 2**30, 10**9, 10**6, 2**32 - 1

PosInt = Annotated[int, Field(gt=0, le=MAX_COUNT, strict=True)]
PosFloat = Annotated[float, Field(gt=0, lt=1e12, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, lt=1e12, allow_inf_nan=False)]
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS, strict=True)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """The network family.

    Attributes:
      kind: ``"toy"`` (catapult model f = v^T u x / sqrt(n)) or ``"fc"`` (fully
        connected, NTK parameterisation).
      widths: hidden widths to sweep (positive ints).
      depth: hidden layers of ``fc`` (>= 1; ignored for ``toy``).
      activation: ``fc`` activation name (see ``ntk_dist.activations``).
      sigma_w, sigma_b: ``fc`` weight and bias scales.
    """

    kind: Literal["toy", "fc"]
    widths: list[Annotated[int, Field(gt=0, le=MAX_WIDTH, strict=True)]] = Field(
        min_length=1, max_length=1024
    )
    depth: Annotated[int, Field(gt=0, le=1024, strict=True)] = 2
    activation: str = "relu"
    sigma_w: PosFloat = 1.4142135623730951
    sigma_b: NonNegFloat = 0.0

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v):
        get_activation(v)
        return v

    def build(self, width: int):
        if self.kind == "toy":
            return CatapultToy(width)
        return FCNetwork.make(
            depth=self.depth,
            width=width,
            activation=self.activation,
            sigma_w=self.sigma_w,
            sigma_b=self.sigma_b,
        )


class DataSection(_Section):
    """Training data (fields of :class:`ntk_dist.data.DataSpec`)."""

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


class BudgetSection(_Section):
    """Step budget rule T = base + scale ln(n) / min|eta lambda0 - edge| (science.md §5),
    rounded up to base * 2^k and capped (see ``ntk_dist.phases.step_budget``)."""

    base: Steps = 64
    scale: PosFloat = 4.0
    cap: Steps = 4096
    eta_max: PosFloat = 4.0

    @model_validator(mode="after")
    def _cap_above_base(self):
        if self.cap < self.base:
            raise ValueError(f"cap must be >= base, got cap={self.cap}, base={self.base}")
        return self


class TrainingSection(_Section):
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
    seeds: Annotated[int, Field(gt=0, le=1000, strict=True)] = 2
    batch_size: PosInt | None = None
    dtype: Literal["float32", "float64"] = "float64"

    @model_validator(mode="after")
    def _batch_size_matches_optimizer(self):
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ValueError("batch_size must be unset for optimizer gd (full batch); use sgd")
        if self.optimizer == "sgd" and self.batch_size is None:
            raise ValueError("optimizer sgd needs batch_size; or use gd")
        return self


class SearchSection(_Section):
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


class ResourcesSection(_Section):
    """Per Ray task (one batch of runs): ``num_cpus`` CPUs and ``num_gpus`` GPUs."""

    num_cpus: PosInt = 1
    num_gpus: NonNegFloat = 0.0

    def build(self) -> Resources:
        return Resources(num_cpus=self.num_cpus, num_gpus=self.num_gpus)


class _Spec(_Section):
    """A whole spec file (sweep or experiment): identity and serialisation."""

    def spec_hash(self) -> str:
        """sha256 of the spec's content (the output directory excluded)."""
        body = self.model_dump(mode="json", exclude={"output"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class SweepSpec(_Spec):
    """A whole sweep (module docstring)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    model: ModelSection
    data: DataSection = DataSection()
    training: TrainingSection = TrainingSection()
    search: SearchSection = SearchSection()
    resources: ResourcesSection = ResourcesSection()
    output: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.model.kind == "toy" and self.data.dim != 1 and self.data.name == "single":
            raise ValueError("data.dim must be 1 for the one-sample toy setup")
        from .sweep import make_job

        # One job of the sweep, so rules that span sections (model vs data outputs,
        # batch size vs n_train) fail here, with the file's name, not at run time.
        try:
            make_job(self, self.model.widths[0], self.search.eta_lambda0[0], 0, "check")
        except ValueError as err:
            raise ValueError(f"model, data and training do not fit together: {err}") from None
        return self

    @property
    def search_view(self) -> dict:
        """The fields ``ntk_dist.search.make_sampler`` reads."""
        s = self.search
        return dict(
            widths=list(self.model.widths),
            eta_low=s.eta_lambda0[0],
            eta_high=s.eta_lambda0[1],
            sampler=s.sampler,
            n_trials=s.n_trials,
            parallel=s.parallel,
            resolution=s.resolution,
            seed=s.seed,
        )


def parse_spec(data, source: str = "<spec>"):
    """Validate a mapping as a :class:`SweepSpec`, or as an
    :class:`ntk_dist.experiments.ExperimentSpec` when it has an ``experiment`` key;
    errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a sweep spec must be a mapping, got {type(data).__name__}")
    model = SweepSpec
    if "experiment" in data:
        from .experiments import ExperimentSpec as model
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValueError(_describe(err, source)) from None
    except ValueError as err:  # raised inside a builder (activation, widths ...)
        raise ValueError(f"{source}: {err}") from None


def load_spec(path):
    """Read and validate a YAML sweep or experiment spec (``yaml.safe_load``: no code is
    executed); see :func:`parse_spec`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"spec file not found: {path} (give the path of a YAML sweep spec)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    return parse_spec(data, str(path))


def _describe(err: ValidationError, source: str) -> str:
    """One line per bad field: ``source: field.path[i]: what is wrong, got VALUE``.

    The alternatives of a union field (``steps``: an int or ``"auto"``) are merged into
    one line; pydantic's union-branch names are dropped from the path.
    """
    found: dict[str, tuple[list[str], object]] = {}
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif str(part).isidentifier():
                loc += f".{part}" if loc else str(part)
            elif e["type"] == "extra_forbidden":  # an unknown key that is no identifier
                loc += f"[{part!r}]"
        msg = e["msg"].replace("Input should", "should").removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the spec reference in README.md)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] in ("greater_than", "greater_than_equal"):
            kind = "integer" if isinstance(e.get("input"), int) else "number"
            bound = e.get("ctx", {}).get("gt", e.get("ctx", {}).get("ge"))
            positive = e["type"] == "greater_than" and bound == 0
            msg = f"must be a positive {kind}" if positive else f"must be >= {bound}"
        msgs, value = found.setdefault(loc or "<root>", ([], e.get("input")))
        if msg not in msgs:
            msgs.append(msg)
    return "\n".join(
        # A rule across sections (loc <root>) names its fields itself; its input is the spec.
        f"{source}: {' or '.join(msgs)}"
        if loc == "<root>" and isinstance(value, dict)
        else f"{source}: {loc}: {' or '.join(msgs)}"
        + ("" if msgs == ["required field is missing"] else f", got {value!r}")
        for loc, (msgs, value) in found.items()
    )
