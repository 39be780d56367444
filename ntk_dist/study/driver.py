"""Training jobs into a results directory: the loop that sweeps and experiments share.

Jobs go to Ray as batch tasks (:func:`ntk_dist.distributed.execute.submit_jobs`); each
batch is appended to ``OUT/runs/`` as one part file the moment it finishes, with the
study columns (:func:`ntk_dist.study.results.add_run_columns`) and its phase labels,
so a crash loses at most the batches still training. A batch that fails after all its
retries (``Resources.max_retries``) stops the loop with a
:class:`ntk_dist.core.errors.ResumableError` naming the batch; rerunning resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ntk_dist.analysis.phases import classify_runs
from ntk_dist.core.errors import RESUME_HINT, ResumableError
from ntk_dist.distributed.execute import submit_jobs
from ntk_dist.study.results import add_run_columns, append_runs


def submit_runs(spec, jobs: list) -> list:
    """Submit ``jobs`` as Ray batch tasks with the spec's ``resources`` section (its
    task shape and ``chunk_size``); batches are cut so every task slot is busy."""
    if not jobs:
        return []
    res = spec.resources
    return submit_jobs(jobs, resources=res.build(), chunk_size=res.chunk_size)


def store_finished_batches(pending: list, out: Path, spec, meta: dict, bar) -> list[str]:
    """Append each Ray batch of ``pending`` to ``OUT/runs/`` as soon as it finishes.

    Args:
      pending: Ray object refs of record tables (``submit_jobs``).
      out: the results directory.
      spec: the sweep or experiment spec (its name and hash go in every row).
      meta: ``meta[run_key]`` = (trial, round, target_eta_lambda0) of each job.
      bar: a progress bar (:func:`progress_bar`) or None.

    Returns:
      The stored run keys, in the order they landed.
    """
    if not pending:
        return []
    import ray

    stored = []
    number = {ref: i for i, ref in enumerate(pending, 1)}
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            table = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            which = f"{number[ready[0]]} of {len(number)}"
            raise _batch_failed(err, which, stored, meta, spec) from None
        keys = table.column("tag").to_pylist()
        # Experiments have no early window (ExperimentTraining): the whole budget.
        labels = classify_runs(table, early_steps=getattr(spec.training, "early_steps", None))
        table = add_run_columns(
            table,
            sweep=spec.name,
            spec_hash=spec.spec_hash(),
            trial=[meta[k][0] for k in keys],
            round=[meta[k][1] for k in keys],
            target_eta_lambda0=[meta[k][2] for k in keys],
            phase=labels.column("phase").to_pylist(),
            sharpness_catapult=labels.column("sharpness_catapult").to_pylist(),
        )
        append_runs(out, table)
        stored += keys
        if bar is not None:
            bar.update(len(keys))
    return stored


def _batch_failed(err, which: str, stored: list, meta: dict, spec) -> ResumableError:
    """The one-line error of a batch that failed after all its retries (module docstring)."""
    last = (str(err).strip().splitlines() or [""])[-1][:200]
    retries = spec.resources.build().max_retries
    return ResumableError(
        f"training batch {which} failed after {retries} retries ({type(err).__name__}: "
        f"{last}); {len(stored)} of {len(meta)} runs of this round were stored. "
        f"{RESUME_HINT.capitalize()}: only the runs not stored are trained"
    )


def progress_bar(enabled: bool, total: int, initial: int):
    """A tqdm bar of runs on stderr, or None when ``enabled`` is false."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc="runs", file=sys.stderr)
