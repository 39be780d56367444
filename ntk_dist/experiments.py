"""Fixed-grid experiments (science.md §6): spec -> training jobs -> Parquet rows + references.

A phase sweep (``ntk_dist.sweep``) lets Optuna choose where to train; an experiment
trains a fixed grid, widths x seeds at one learning rate, through the same engine and
Ray tasks, and stores the infinite-width reference it is compared with. Kinds
(``ExperimentSpec.experiment``):

- ``finite_vs_infinite`` (§6.1) and ``ensemble`` (§6.2): networks trained on the
  seed essay's cubic problem with their test predictions recorded;
  ``OUT/reference.parquet`` holds the NTK-GP mean and variance over initialisations at
  every record step (discrete gradient descent with the runs' eta, Lee et al. 2019) and
  the NNGP posterior, on the training and test inputs.
- ``ntk_convergence`` (§6.3, Jacot et al. 2018 Fig. 1): the runs record
  Theta_hat(x0, x) along the unit circle (``test_ntk``); the reference holds the
  analytic Theta(x0, x) and K(x0, x).
- ``width_scaling`` (§4, Lee et al. 2019 Thm 2.1 / Lewkowycz et al. Thm 1): lazy runs
  over many widths recording sup_t ||f_t - f_lin,t||, the parameter change, the
  probe NTK and lambda; no reference (exponents are fitted by ``ntk_dist.analysis``).

Output directory (``OUT``): ``spec.yaml`` + ``spec.sha256``, ``runs/part-*.parquet``
in :data:`ntk_dist.store.RUN_SCHEMA` (``trial`` = job index, ``round`` = 0,
``target_eta_lambda0`` = the spec's learning rate when given in lambda units, else
NaN), and ``reference.parquet``. Reruns resume: jobs whose ``run_key`` is stored are not
trained again, and an exclusive lock keeps two drivers out of one directory.

Learning rates (``training.lr_units``): ``"absolute"`` (eta itself, the same for every
network), ``"lambda_inf"`` (eta * lambda_inf with lambda_inf the top eigenvalue of the
analytic Theta(X, X) / m: one absolute eta for all widths and seeds, so one NTK-GP
applies to the whole ensemble) or ``"lambda0"`` (eta * lambda0 of each network's own
lambda0, as in the sweeps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import jax
import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from .data import load
from .execute import submit_jobs
from .kernels import fc_kernel
from .predict import nngp_posterior, ntk_gp
from .spec import (
    DataSection,
    ModelSection,
    PosFloat,
    ResourcesSection,
    Steps,
    _Section,
    _Spec,
)
from .store import (
    disk_full_as_usage_error,
    read_runs,
    write_table_atomic,
)
from .train import TrainJob, record_schedule

EXPERIMENTS = ("finite_vs_infinite", "ensemble", "ntk_convergence", "width_scaling")

#: Seeds per width: the sweeps' bound (a typo such as 10**6 is refused, not planned).
Seeds = Annotated[int, Field(gt=0, le=1000, strict=True)]


class ExperimentTraining(_Section):
    """How every run of the experiment trains (full-batch gradient descent).

    Attributes:
      steps: gradient-descent steps T.
      learning_rate: eta in the units of ``lr_units`` (module docstring).
      lr_units: ``"absolute"``, ``"lambda_inf"`` or ``"lambda0"``.
      seeds: network seeds 0..seeds-1 per width.
      record_points: log-spaced record steps after the dense first 32
        (``ntk_dist.train.record_schedule(steps, num=record_points)``).
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


class ExperimentSpec(_Spec):
    """A fixed-grid experiment (module docstring); loaded from YAML like a sweep spec."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
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
        if t.lr_units == "lambda_inf" and self.model.kind != "fc":
            raise ValueError("training.lr_units 'lambda_inf' needs model.kind 'fc'; use 'lambda0'")
        if t.probe_points > self.data.n_train:
            raise ValueError(
                f"training.probe_points ({t.probe_points}) must be <= data.n_train "
                f"({self.data.n_train})"
            )
        return self


def lambda_inf(spec: ExperimentSpec) -> float:
    """Top eigenvalue of the analytic Theta(X, X) / m on the spec's training inputs."""
    x = load(spec.data.build()).x_train
    with jax.enable_x64(True):
        theta = np.asarray(fc_kernel(x, **_kernel_args(spec), get="ntk").ntk)
    return float(np.linalg.eigvalsh(theta)[-1]) / x.shape[0]


def _kernel_args(spec: ExperimentSpec) -> dict:
    m = spec.model
    return dict(depth=m.depth, activation=m.activation, sigma_w=m.sigma_w, sigma_b=m.sigma_b)


def run_key(spec_hash: str, width: int, seed: int) -> str:
    """Identity of one run of an experiment."""
    return f"{spec_hash[:16]}:w{int(width)}:s{int(seed)}"


def plan_jobs(spec: ExperimentSpec) -> list[TrainJob]:
    """Every job of the experiment, widths outer, seeds inner (``tag`` = run key)."""
    t = spec.training
    lr, units = t.learning_rate, t.lr_units
    if units == "lambda_inf":
        lr, units = lr / lambda_inf(spec), "absolute"
    data, record, h = spec.data.build(), t.schedule(), spec.spec_hash()
    return [
        TrainJob(
            spec.model.build(width),
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
            tag=run_key(h, width, seed),
        )
        for width in spec.model.widths
        for seed in range(t.seeds)
    ]


def describe_plan(spec: ExperimentSpec) -> str:
    """What ``ntk-dist run`` would do (``--dry-run`` / ``validate``)."""
    t, m = spec.training, spec.model
    n_runs = len(m.widths) * t.seeds
    return "\n".join(
        [
            f"experiment {spec.name!r} ({spec.experiment}, spec hash {spec.spec_hash()[:12]})",
            f"  model: {m.kind}, widths {m.widths}"
            + (f", depth {m.depth}, {m.activation}" if m.kind == "fc" else ""),
            f"  data: {spec.data.name}, {spec.data.n_train} train / {spec.data.n_test} test",
            f"  training: gd, {t.steps} steps, learning rate {t.learning_rate} ({t.lr_units}), "
            f"{t.seeds} seeds: {n_runs} runs, {len(t.schedule())} record steps",
            f"  estimated cost: {n_runs * t.steps * float(np.mean(m.widths)):.3g} width-steps",
        ]
    )


def run_experiment(spec: ExperimentSpec, out, *, progress: bool = True, echo=print) -> pa.Table:
    """Run (or resume) ``spec`` into ``out``; returns all its runs (RUN_SCHEMA).

    The caller has checked the directory with :func:`ntk_dist.sweep.prepare_output`
    (``ntk-dist run`` does); this takes the directory's lock, trains the missing jobs as
    Ray tasks (results appended as each batch finishes) and writes the reference.
    """
    from .runtime import ensure_ray
    from .sweep import exclusive_lock, progress_bar, store_finished_batches

    out = Path(out)
    with exclusive_lock(out), disk_full_as_usage_error(out):
        ensure_ray()
        done = set(read_runs(out).column("run_key").to_pylist())
        jobs = plan_jobs(spec)
        todo = [job for job in jobs if job.tag not in done]
        if done:
            echo(f"resumed: {len(done)} of {len(jobs)} runs already stored")
        target = spec.training.learning_rate if spec.training.lr_units != "absolute" else np.nan
        meta = {job.tag: (i, 0, target) for i, job in enumerate(jobs)}  # trial, round, target
        bar = progress_bar(progress, len(jobs), len(jobs) - len(todo))
        resources = spec.resources.build()
        batch = _max_batch(todo, resources)
        pending = submit_jobs(todo, resources=resources, max_batch=batch) if todo else []
        try:
            store_finished_batches(pending, out, spec, meta, bar)
        finally:
            if bar is not None:
                bar.close()
        runs = read_runs(out)
        write_table_atomic(reference(spec, runs), out / "reference.parquet")
        return runs


def _max_batch(jobs: list[TrainJob], resources) -> int:
    """Jobs per Ray task: each shape group split into two batches per task slot, so every
    worker is busy and a killed run loses at most half a slot's share of the work."""
    import ray

    from .execute import DEFAULT_MAX_BATCH

    if not jobs:
        return DEFAULT_MAX_BATCH
    have = ray.cluster_resources()
    slots = have.get("CPU", 1.0) // resources.num_cpus
    if resources.num_gpus:
        slots = min(slots, have.get("GPU", 0.0) // resources.num_gpus)
    groups: dict[tuple, int] = {}
    for job in jobs:
        groups[job.batch_key] = groups.get(job.batch_key, 0) + 1
    largest = max(groups.values())
    return int(min(DEFAULT_MAX_BATCH, max(1, -(-largest // max(1, 2 * slots)))))


REFERENCE_DOCS = {
    "step": "gradient-descent step t (the runs' record steps)",
    "split": "'train' or 'test'",
    "index": "point index within its split (the data set's order)",
    "x": "input (d = 1)",
    "y": "target: noisy for train, noise-free f*(x) for test",
    "gp_mean": "NTK-GP mean of f(x) at step t over initialisations (science.md §4, gd)",
    "gp_var": "NTK-GP variance of f(x) at step t",
    "nngp_mean": "NNGP posterior mean with the data's label-noise variance",
    "nngp_var": "NNGP posterior variance (latent f)",
    "angle": "g in [-pi, pi): x = (cos g, sin g)",
    "x1": "first input coordinate",
    "x2": "second input coordinate",
    "ntk": "analytic Theta(x0, x), x0 = x_test[0] = (1, 0)",
    "nngp": "analytic K(x0, x)",
}


def reference(spec: ExperimentSpec, runs: pa.Table) -> pa.Table:
    """The infinite-width reference of ``spec`` (module docstring), in float64; empty for
    ``width_scaling``."""
    with jax.enable_x64(True):
        return _reference(spec, runs)


def _reference(spec: ExperimentSpec, runs: pa.Table) -> pa.Table:
    data = load(spec.data.build())
    if spec.experiment == "ntk_convergence":
        x = data.x_test
        k = fc_kernel(x[:1], x, **_kernel_args(spec))
        cols = {
            "index": np.arange(len(x)),
            "angle": np.arctan2(x[:, 1], x[:, 0]),
            "x1": x[:, 0],
            "x2": x[:, 1],
            "ntk": np.asarray(k.ntk)[0],
            "nngp": np.asarray(k.nngp)[0],
        }
    elif spec.experiment in ("finite_vs_infinite", "ensemble"):
        cols = _gp_reference(spec, data, runs)
    else:
        cols = {}
    fields = [
        pa.field(n, pa.array(v).type, metadata={"doc": REFERENCE_DOCS[n]}) for n, v in cols.items()
    ]
    meta = {"experiment": spec.experiment, "spec_hash": spec.spec_hash()}
    return pa.table(cols, schema=pa.schema(fields, metadata=meta))


def _gp_reference(spec: ExperimentSpec, data, runs: pa.Table) -> dict:
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    pts = np.concatenate([x, xt])
    kx = fc_kernel(x, **_kernel_args(spec))
    kp = fc_kernel(pts, x, **_kernel_args(spec))
    kpp = fc_kernel(pts, **_kernel_args(spec), get="nngp")
    etas = np.unique(runs.column("learning_rate").to_numpy())
    if len(etas) != 1:
        raise ValueError(
            f"experiment {spec.name!r}: runs have {len(etas)} learning rates; the NTK-GP "
            "reference needs one: use training.lr_units 'absolute' or 'lambda_inf'"
        )
    steps = np.asarray(spec.training.schedule())
    gp = ntk_gp(
        kx.ntk, kp.ntk, kx.nngp, kp.nngp, kpp.nngp, y, steps, lr=float(etas[0]), dynamics="gd"
    )
    post = nngp_posterior(kx.nngp, kp.nngp, kpp.nngp, y, noise_var=spec.data.noise**2)
    mean = np.asarray(gp.mean)[..., 0]  # (T, N)
    var = np.diagonal(np.asarray(gp.cov), axis1=-2, axis2=-1)
    n_t, n_p = mean.shape
    split = ["train"] * len(x) + ["test"] * len(xt)
    index = np.concatenate([np.arange(len(x)), np.arange(len(xt))])
    tile = lambda a: np.tile(np.asarray(a), n_t)
    return {
        "step": np.repeat(steps, n_p),
        "split": tile(split).tolist(),
        "index": tile(index),
        "x": tile(pts[:, 0]),
        "y": tile(np.concatenate([y[:, 0], yt[:, 0]])),
        "gp_mean": mean.ravel(),
        "gp_var": np.maximum(var, 0.0).ravel(),
        "nngp_mean": tile(np.asarray(post.mean)[:, 0]),
        "nngp_var": tile(np.maximum(np.diagonal(np.asarray(post.cov)), 0.0)),
    }
