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
    search: {eta_lambda0: [0.5, 6.0], sampler: boundary, points_per_width: 24, parallel: 16}

The spec reference is ``docs/specs.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
import yaml
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator

from ntk_dist.analysis.phases import step_budget
from ntk_dist.core import validate
from ntk_dist.core.safe_yaml import load_yaml
from ntk_dist.distributed.execute import DEFAULT_MAX_BATCH, plan_batches
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.study import estimate
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
#: A name is also the default output directory (results/NAME): no path components, no
#: leading dot (".", "..", hidden directories).
_NAME = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class SpecBase(Section):
    """What every spec file has: identity and serialisation."""

    def spec_hash(self) -> str:
        """sha256 of the spec's content (the output directory excluded)."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        # A spec is frozen, so its hash is computed once: every run key starts with it.
        # Fields added after specs were first hashed are left out of the dump while at
        # their defaults (Section.omitted_defaults), so older specs keep their hash.
        body = self._hash_body(self.model_dump(mode="json", exclude={"output"}))
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def _hash_body(self, body: dict) -> dict:
        return body

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
        (low, high), resolution = self.search.eta_lambda0, self.search.resolution
        if high / low - 1 < resolution:
            raise ValueError(
                f"search.eta_lambda0 [{low}, {high}] is narrower than search.resolution "
                f"({resolution}: relative); widen the range or lower the resolution"
            )
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
            n_trials=self.total_trials,
            parallel=s.parallel,
            resolution=s.resolution,
            seed=s.seed,
        )

    @property
    def n_points(self) -> int:
        """Points (width, eta * lambda0) in the whole sweep: the grid's size for ``grid``,
        else :attr:`total_trials`."""
        if self.search.sampler == "grid":
            return len(grid_points(self.search_view))
        return self.total_trials

    @property
    def total_trials(self) -> int:
        """Points asked for over all groups: ``points_per_width`` times the number of
        widths (times the number of depths when ``model.depth`` is a list: then it counts
        points per (width, depth) group), or the deprecated ``n_trials``, or 64."""
        s = self.search
        if s.points_per_width is not None:
            return s.points_per_width * len(self.model.widths) * len(self.model.depths)
        return 64 if s.n_trials is None else s.n_trials

    def _hash_body(self, body: dict) -> dict:
        # One plan, one hash: points_per_width is hashed as the total n_trials it means,
        # so sweeps/*.yaml kept their hashes (and their results) when they moved to it.
        search = {k: v for k, v in body["search"].items() if k != "points_per_width"}
        return {**body, "search": {**search, "n_trials": self.total_trials}}

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
            self.model.build(width, data.out_dim, depth),
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

    def describe_plan(self, *, timed: bool = False) -> str:
        """What ``run`` would do, without running anything (``validate`` / ``--dry-run``);
        ``timed`` adds a wall-time estimate from a short probe (:mod:`ntk_dist.study.estimate`)."""
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
        round_batches = plan_batches([job for job in point_jobs for _ in range(t.seeds)])
        batches = len(round_batches)
        cost = sum(mean_steps[w] * w for w in widths) / len(widths) * n_runs
        per_width = f"{n_points / len(widths):.3g} points per width x {len(widths)} widths = "
        return "\n".join(
            [
                f"sweep {self.name!r} (spec hash {self.spec_hash()[:12]})",
                self._model_line(),
                f"  search: {s.sampler} sampler, eta*lambda0 in [{s.eta_lambda0[0]}, "
                f"{s.eta_lambda0[1]}], {per_width}{n_points} points x {t.seeds} seeds = "
                f"{n_runs} runs in {rounds} rounds of <= {s.parallel}",
                f"  training: {t.optimizer}, steps {t.steps} (mean per width: "
                + ", ".join(f"{w}: {v:.0f}" for w, v in mean_steps.items())
                + ")",
                f"  execution: about {batches} Ray tasks per round "
                f"({self.resources.num_cpus} CPU, {self.resources.num_gpus} GPU each)",
                f"  estimated cost: {cost:.3g} width-steps",
            ]
            + ([self._timed_line(round_batches, rounds, finish=estimate.FINISH_S)] if timed else [])
        )

    def _timed_line(self, round_batches, rounds: int, *, finish: float) -> str:
        """The wall-time estimate of ``rounds`` rounds like ``round_batches``."""
        slots = estimate.local_slots(self.resources.build())
        # One probe per width, of one job: a step of a batch of k jobs is taken as k job-steps.
        costs, per_round = {}, []
        for batch in round_batches:
            head = batch[0]
            if head.width not in costs:
                costs[head.width] = estimate.probe(batch[:1])
            cost = costs[head.width]
            per_round.append(cost.fixed_s + head.steps * cost.step_s * len(batch))
        train = rounds * estimate.round_seconds(per_round, slots)
        total = train + estimate.RAY_START_S + finish
        probed = ", ".join(
            f"width {w}: {c.fixed_s:.2g} s + {1e3 * c.step_s:.2g} ms/step"
            for w, c in sorted(costs.items())
        )
        return (
            f"  estimated wall time: {estimate.describe(total)} ({train:.0f} s training: "
            f"{rounds} round(s) of {len(round_batches)} batch(es); probed per batch {probed}; "
            f"assumes {slots} task slot(s) of "
            f"{self.resources.num_cpus} CPU on this machine, {estimate.RAY_START_S:.0f} s to "
            f"start Ray and {finish:.0f} s to finish)"
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

    def describe_plan(self, *, timed: bool = False) -> str:
        """What ``ntk-dist run`` would do (``--dry-run`` / ``validate``); ``timed`` adds a
        wall-time estimate from a short probe (:mod:`ntk_dist.study.estimate`)."""
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
            + ([self._timed_line()] if timed else [])
        )

    def _timed_line(self) -> str:
        jobs = self.jobs()
        slots = estimate.local_slots(self.resources.build())
        groups: dict = {}
        for job in jobs:
            groups[job.batch_key] = groups.get(job.batch_key, 0) + 1
        # The experiment driver's batch size (distributed.execute.slot_batch_size).
        size = min(DEFAULT_MAX_BATCH, max(1, -(-max(groups.values()) // (2 * slots))))
        batches = plan_batches(jobs, max_batch=size)
        return SweepSpec._timed_line(self, batches, 1, finish=estimate.FINISH_S)


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
        return _SPEC.validate_python(_normalise(data))
    except ValidationError as err:
        raise ValueError(_describe(err, source)) from None
    except ValueError as err:  # raised inside a builder (activation, widths ...)
        raise ValueError(f"{source}: {err}") from None


def load_spec(path) -> SweepSpec | ExperimentSpec:
    """Read and validate a YAML sweep or experiment spec; see :func:`parse_spec`.

    The file is read with :func:`ntk_dist.core.safe_yaml.load_yaml` (``yaml.safe_load``,
    no code executed, after limits on size, nesting and alias expansion); every error
    names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"spec file not found: {path} (give the path of a YAML sweep spec)")
    return parse_spec(load_yaml(path), str(path))


def _normalise(value):
    """-0.0 as 0.0 everywhere in a spec mapping: equal values hash equally."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and value == 0.0:
        return 0.0
    return value


def _shown(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _keys_at(loc: tuple) -> list[str]:
    """The keys the spec section at ``loc`` (a pydantic error location ending in the
    unknown key) accepts; ``loc[0]`` is the union tag ("sweep" / "experiment")."""
    model = ExperimentSpec if loc[0] == "experiment" else SweepSpec
    for part in loc[1:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        inner = getattr(field, "annotation", None)
        if not (isinstance(inner, type) and issubclass(inner, Section)):
            return []
        model = inner
    return list(model.model_fields)


def _describe(err: ValidationError, source: str) -> str:
    """One line per bad field: ``source: field.path[i]: what is wrong, got VALUE``.

    The alternatives of a union field (``steps``: an int or ``"auto"``) are merged into
    one line; pydantic's union-branch names are dropped from the path.
    """
    found: dict[str, tuple[list[str], object, list[str]]] = {}
    for e in err.errors():
        loc, hint = "", ""
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
            hint = validate.did_you_mean(e["loc"][-1], _keys_at(e["loc"]))
        elif e["type"] == "literal_error":
            options = re.findall(r"'([^']*)'", e.get("ctx", {}).get("expected", ""))
            hint = validate.did_you_mean(e.get("input"), options)
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] in ("greater_than", "greater_than_equal"):
            kind = "integer" if isinstance(e.get("input"), int) else "number"
            bound = e.get("ctx", {}).get("gt", e.get("ctx", {}).get("ge"))
            positive = e["type"] == "greater_than" and bound == 0
            msg = f"must be a positive {kind}" if positive else f"must be >= {bound}"
        msgs, value, hints = found.setdefault(loc or "<root>", ([], e.get("input"), []))
        if msg not in msgs:
            msgs.append(msg)
        if hint and hint not in hints:
            hints.append(hint)
    return "\n".join(
        # A rule across sections (loc <root>) names its fields itself; its input is the spec.
        f"{source}: {' or '.join(msgs)}"
        if loc == "<root>" and isinstance(value, dict)
        else f"{source}: {loc}: {' or '.join(msgs)}"
        + ("" if msgs == ["required field is missing"] else f", got {_shown(value)}")
        + "".join(hints)
        for loc, (msgs, value, hints) in found.items()
    )
