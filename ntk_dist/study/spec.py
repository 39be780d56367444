"""Spec files: one validated model per YAML file in ``sweeps/``, turned into jobs.

A spec is a **sweep** (Optuna chooses the points (width, eta * lambda0) to train; the
phase boundaries are located) or an **experiment** (a fixed grid of widths x seeds at
one learning rate, with its infinite-width reference): :data:`Spec` is their union,
told apart by the ``experiment`` key. Each spec validates once, when it is built, and
turns itself into training jobs (:meth:`SweepSpec.job`, :meth:`ExperimentSpec.jobs`)
and a plan description (``describe_plan``); the drivers consume jobs and know nothing
of the sections. A bad spec raises ValueError naming the file and the field, e.g.
``sweeps/foo.yaml: model.widths[1]: width must be a positive integer, got -3``.

Example (``sweeps/catapult_toy.yaml``)::

    name: catapult_toy
    model: {kind: toy, widths: [256, 1024, 4096, 16384]}
    data: {name: single}
    training: {seeds: 2}                 # steps: auto (budget rule of docs/theory.md §5)
    search: {eta_lambda0: [0.5, 6.0], sampler: boundary, n_trials: 96, parallel: 16}

The spec reference is ``docs/specs.md``.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
import yaml
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator

from ntk_dist.analysis.phases import step_budget
from ntk_dist.distributed.execute import plan_batches
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.study.search import grid_points
from ntk_dist.study.sections import (
    DataSection,
    ExperimentTraining,
    ModelSection,
    ResourcesSection,
    SearchSection,
    Section,
    TrainingSection,
)

EXPERIMENTS = ("finite_vs_infinite", "ensemble", "ntk_convergence", "width_scaling")
_NAME = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")


class SpecBase(Section):
    """What every spec file has: identity and serialisation."""

    def spec_hash(self) -> str:
        """sha256 of the spec's content (the output directory excluded)."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        # A spec is frozen, so its hash is computed once: every run key starts with it.
        body = self.model_dump(mode="json", exclude={"output"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def _model_line(self) -> str:
        m = self.model
        return f"  model: {m.kind}, widths {m.widths}" + (
            f", depth {m.depth}, {m.activation}" if m.kind == "fc" else ""
        )


class SweepSpec(SpecBase):
    """A phase sweep (module docstring)."""

    name: str = _NAME
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
        # One job of the sweep, so rules that span sections (model vs data outputs,
        # batch size vs n_train) fail here, with the file's name, not at run time.
        try:
            self.job(self.model.widths[0], self.search.eta_lambda0[0], 0, "check")
        except ValueError as err:
            raise ValueError(f"model, data and training do not fit together: {err}") from None
        return self

    @property
    def search_view(self) -> dict:
        """The fields ``ntk_dist.study.samplers.make_sampler`` reads."""
        s = self.search
        depths = self.model.depths
        return dict(
            widths=list(self.model.widths),
            depths=list(depths) if len(depths) > 1 else None,
            eta_low=s.eta_lambda0[0],
            eta_high=s.eta_lambda0[1],
            sampler=s.sampler,
            n_trials=s.n_trials,
            parallel=s.parallel,
            resolution=s.resolution,
            seed=s.seed,
        )

    @property
    def n_points(self) -> int:
        """Points (width, eta * lambda0) in the whole sweep: the grid's size for ``grid``,
        else ``search.n_trials``."""
        if self.search.sampler == "grid":
            return len(grid_points(self.search_view))
        return self.search.n_trials

    def steps_for(self, width: int, eta_lambda0: float) -> int:
        """A run's step budget: fixed, or the rule of
        :func:`ntk_dist.analysis.phases.step_budget`."""
        t = self.training
        if t.steps != "auto":
            return t.steps
        b = t.budget
        return step_budget(
            width, eta_lambda0, base=b.base, scale=b.scale, cap=b.cap, eta_max=b.eta_max
        )

    def run_key(self, width: int, eta_lambda0: float, seed: int, depth: int | None = None) -> str:
        """Identity of one run: the same key means the same training job (a sweep over
        several depths adds ``:d<depth>``)."""
        d = f":d{int(depth)}" if depth is not None and len(self.model.depths) > 1 else ""
        return f"{self.spec_hash()[:16]}:w{int(width)}{d}:e{float(eta_lambda0)!r}:s{int(seed)}"

    def run_keys(self, width: int, eta_lambda0: float, depth: int | None = None) -> list[str]:
        """The run keys of one point, seeds 0..seeds-1 in order."""
        return [self.run_key(width, eta_lambda0, s, depth) for s in range(self.training.seeds)]

    def job(
        self, width: int, eta_lambda0: float, seed: int, key: str, depth: int | None = None
    ) -> TrainJob:
        """The training job of one run (``tag`` = ``key``; ``depth`` one of
        ``model.depths``, None: the first)."""
        t = self.training
        data = self.data.build()
        return TrainJob(
            self.model.build(width, depth, data.out_dim),
            data,
            float(eta_lambda0),
            steps=self.steps_for(width, eta_lambda0),
            seed=seed,
            lr_units="lambda0",
            optimizer=t.optimizer,
            batch_size=t.batch_size,
            dtype=t.dtype,
            sharpness=t.sharpness,
            tag=key,
        )

    def describe_plan(self) -> str:
        """What ``run`` would do, without running anything (``validate`` / ``--dry-run``)."""
        s, t = self.search, self.training
        n_points = self.n_points
        n_runs = n_points * t.seeds
        rounds = -(-n_points // s.parallel)
        etas = np.geomspace(*s.eta_lambda0, 16)
        widths = self.model.widths
        mean_steps = {w: float(np.mean([self.steps_for(w, e) for e in etas])) for w in widths}
        # Seeds share a batch key, so one job per distinct point stands for all its seeds.
        size = min(s.parallel, n_points)
        points = set(zip(np.resize(widths, size), np.resize(etas, size), strict=True))
        point_jobs = [self.job(int(w), float(e), 0, "plan") for w, e in sorted(points)]
        batches = len(plan_batches([job for job in point_jobs for _ in range(t.seeds)]))
        cost = sum(mean_steps[w] * w for w in widths) / len(widths) * n_runs
        return "\n".join(
            [
                f"sweep {self.name!r} (spec hash {self.spec_hash()[:12]})",
                self._model_line(),
                f"  search: {s.sampler} sampler, eta*lambda0 in [{s.eta_lambda0[0]}, "
                f"{s.eta_lambda0[1]}], {n_points} points x {t.seeds} seeds = {n_runs} runs "
                f"in {rounds} rounds of <= {s.parallel}",
                f"  training: {t.optimizer}, steps {t.steps} (mean per width: "
                + ", ".join(f"{w}: {v:.0f}" for w, v in mean_steps.items())
                + ")",
                f"  execution: about {batches} Ray tasks per round "
                f"({self.resources.num_cpus} CPU, {self.resources.num_gpus} GPU each)",
                f"  estimated cost: {cost:.3g} width-steps",
            ]
        )


class ExperimentSpec(SpecBase):
    """A fixed-grid experiment (``ntk_dist.study.experiments``); loaded like a sweep spec."""

    name: str = _NAME
    experiment: Literal["finite_vs_infinite", "ensemble", "ntk_convergence", "width_scaling"]
    description: str = ""
    model: ModelSection
    data: DataSection = DataSection()
    training: ExperimentTraining
    resources: ResourcesSection = ResourcesSection()
    output: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        t, kind = self.training, self.experiment
        if len(self.model.depths) > 1:
            raise ValueError(
                f"an experiment takes one model.depth, got {list(self.model.depths)}; "
                "sweep several depths with a sweep spec"
            )
        if kind in ("finite_vs_infinite", "ensemble"):
            if self.model.kind != "fc" or self.data.dim != 1 or self.data.n_test < 1:
                raise ValueError(
                    f"experiment {kind!r} needs model.kind 'fc', data.dim 1 and data.n_test >= 1"
                )
            if not t.predict_test:
                raise ValueError(f"experiment {kind!r} needs training.predict_test: true")
        if kind == "ntk_convergence" and not (t.test_ntk and self.data.test_grid):
            raise ValueError(
                "experiment 'ntk_convergence' needs training.test_ntk: true and "
                "data.test_grid: true (Theta_hat(x0, x) along the unit circle)"
            )
        if self.model.parameterization != "ntk" or self.model.readout_sigma_w is not None:
            raise ValueError(
                "experiments compare with the infinite-width kernels of docs/theory.md §2, "
                "which describe the NTK parameterisation with sigma_w shared by the readout: "
                "unset model.parameterization and model.readout_sigma_w"
            )
        if t.lr_units == "lambda_inf" and self.model.kind != "fc":
            raise ValueError("training.lr_units 'lambda_inf' needs model.kind 'fc'; use 'lambda0'")
        if t.probe_points > self.data.n_train:
            raise ValueError(
                f"training.probe_points ({t.probe_points}) must be <= data.n_train "
                f"({self.data.n_train})"
            )
        return self

    def run_key(self, width: int, seed: int) -> str:
        """Identity of one run of an experiment."""
        return f"{self.spec_hash()[:16]}:w{int(width)}:s{int(seed)}"

    def lambda_inf(self) -> float:
        """Top eigenvalue of the analytic Theta(X, X) / m on the spec's training inputs."""
        import jax

        from ntk_dist.engine.data import load
        from ntk_dist.theory.kernels import fc_kernel

        x = load(self.data.build()).x_train
        with jax.enable_x64(True):
            theta = np.asarray(fc_kernel(x, arch=self.model.arch(), get="ntk").ntk)
        return float(np.linalg.eigvalsh(theta)[-1]) / x.shape[0]

    def jobs(self) -> list[TrainJob]:
        """Every job of the experiment, widths outer, seeds inner (``tag`` = run key)."""
        t = self.training
        lr, units = t.learning_rate, t.lr_units
        if units == "lambda_inf":
            lr, units = lr / self.lambda_inf(), "absolute"
        data, record = self.data.build(), t.schedule()
        return [
            TrainJob(
                self.model.build(width, out_dim=data.out_dim),
                data,
                lr,
                steps=t.steps,
                seed=seed,
                lr_units=units,
                record=record,
                probe_points=t.probe_points,
                predict_test=t.predict_test,
                test_ntk=t.test_ntk,
                linearised=t.linearised,
                dtype=t.dtype,
                sharpness=t.sharpness,
                tag=self.run_key(width, seed),
            )
            for width in self.model.widths
            for seed in range(t.seeds)
        ]

    def describe_plan(self) -> str:
        """What ``ntk-dist run`` would do (``--dry-run`` / ``validate``)."""
        t, m = self.training, self.model
        n_runs = len(m.widths) * t.seeds
        return "\n".join(
            [
                f"experiment {self.name!r} ({self.experiment}, spec hash {self.spec_hash()[:12]})",
                self._model_line(),
                f"  data: {self.data.name}, {self.data.n_train} train / {self.data.n_test} test",
                f"  training: gd, {t.steps} steps, learning rate {t.learning_rate} "
                f"({t.lr_units}), {t.seeds} seeds: {n_runs} runs, {len(t.schedule())} "
                "record steps",
                f"  estimated cost: {n_runs * t.steps * float(np.mean(m.widths)):.3g} width-steps",
            ]
        )


def spec_kind(data) -> str:
    """``"experiment"`` for a spec mapping with an ``experiment`` key, else ``"sweep"``:
    the one rule that tells the two kinds of spec file apart."""
    return "experiment" if isinstance(data, dict) and "experiment" in data else "sweep"


#: A spec file: a sweep, or an experiment when it has an ``experiment`` key.
Spec = Annotated[
    Union[Annotated[SweepSpec, Tag("sweep")], Annotated[ExperimentSpec, Tag("experiment")]],  # noqa: UP007
    Discriminator(spec_kind),
]
_SPEC = TypeAdapter(Spec)


def parse_spec(data, source: str = "<spec>") -> SweepSpec | ExperimentSpec:
    """Validate a mapping as a :class:`SweepSpec`, or as an :class:`ExperimentSpec` when
    it has an ``experiment`` key; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a sweep spec must be a mapping, got {type(data).__name__}")
    try:
        return _SPEC.validate_python(data)
    except ValidationError as err:
        raise ValueError(_describe(err, source)) from None
    except ValueError as err:  # raised inside a builder (activation, widths ...)
        raise ValueError(f"{source}: {err}") from None


def load_spec(path) -> SweepSpec | ExperimentSpec:
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
        for part in e["loc"][1:]:  # [0] is the union tag ("sweep" / "experiment")
            if isinstance(part, int):
                loc += f"[{part}]"
            elif str(part).isidentifier():
                loc += f".{part}" if loc else str(part)
            elif e["type"] == "extra_forbidden":  # an unknown key that is no identifier
                loc += f"[{part!r}]"
        msg = e["msg"].replace("Input should", "should").removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the spec reference in docs/specs.md)"
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
