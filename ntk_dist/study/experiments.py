"""Fixed-grid experiments (docs/theory.md §6): spec -> training jobs -> Parquet rows + references.

A phase sweep (``ntk_dist.study.sweep``) lets Optuna choose where to train; an experiment
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
  probe NTK and lambda; no reference (exponents are fitted by ``ntk_dist.analysis.stats``).

Output directory (``OUT``, :mod:`ntk_dist.study.results`): ``spec.yaml`` +
``spec.sha256``, ``runs/part-*.parquet`` in :data:`ntk_dist.study.results.RUN_SCHEMA`
(``trial`` = job index, ``round`` = 0,
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

import numpy as np
import pyarrow as pa

from ntk_dist.core.files import disk_full_as_usage_error, exclusive_lock, write_table_atomic
from ntk_dist.core.storage import staged
from ntk_dist.distributed.runtime import ensure_ray
from ntk_dist.study.driver import progress_bar, store_finished_batches, submit_runs
from ntk_dist.study.reference import reference
from ntk_dist.study.results import output_dir, prepare_output, read_runs
from ntk_dist.study.spec import ExperimentSpec


def run_experiment(
    spec: ExperimentSpec,
    out=None,
    *,
    resume: bool = False,
    progress: bool = True,
    echo=print,
    connect=None,
) -> pa.Table:
    """Run (or resume) ``spec`` into ``out``; returns all its runs (RUN_SCHEMA).

    Prepares the directory (:func:`ntk_dist.study.results.prepare_output`: created, or
    checked to hold this spec), takes its lock, trains the missing jobs as Ray tasks
    (results appended as each batch finishes) and writes the reference.

    Args:
      spec: validated :class:`ntk_dist.study.spec.ExperimentSpec`.
      out: output directory (default :func:`ntk_dist.study.results.output_dir`).
      resume: require an existing experiment in ``out``.
      progress: show a tqdm progress bar on stderr.
      echo: where one-line status messages go.
      connect: called before the first job is submitted, to connect to Ray (default
        :func:`ntk_dist.distributed.runtime.ensure_ray`); never called when every run is
        stored already.
    """
    with staged(output_dir(spec, out)) as local:
        return _experiment(spec, local, resume, progress, echo, connect)


def _experiment(spec: ExperimentSpec, out, resume: bool, progress: bool, echo, connect):
    prepare_output(spec, out, resume=resume)
    with exclusive_lock(out), disk_full_as_usage_error(out):
        done = set(read_runs(out).column("run_key").to_pylist())
        jobs = spec.jobs()
        todo = [job for job in jobs if job.tag not in done]
        if done:
            echo(f"resumed: {len(done)} of {len(jobs)} runs already stored")
        target = spec.training.learning_rate if spec.training.lr_units != "absolute" else np.nan
        meta = {job.tag: (i, 0, target) for i, job in enumerate(jobs)}  # trial, round, target
        bar = progress_bar(progress, len(jobs), len(jobs) - len(todo))
        pending = []
        if todo:
            (connect or ensure_ray)()
            pending = submit_runs(spec, todo)
        try:
            store_finished_batches(pending, out, spec, meta, bar)
        finally:
            if bar is not None:
                bar.close()
        runs = read_runs(out)
        write_table_atomic(reference(spec, runs), out / "reference.parquet")
        return runs
