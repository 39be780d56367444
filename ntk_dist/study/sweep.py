"""The phase-sweep driver: spec -> Optuna trials -> Ray batches -> Parquet rows -> boundaries.

One Optuna trial is one point (width, eta * lambda0), trained with every seed of the
spec (:mod:`ntk_dist.study.trials` keeps the study); its runs are Ray tasks of the
training engine. The driver works in rounds: it asks ``search.parallel`` trials,
trains all their runs concurrently, appends each finished batch to ``OUT/runs/``
atomically, then tells every trial its phases.

Resume (rerun the same command after a crash at any moment): interrupted trials are
settled (:func:`ntk_dist.study.trials.recover`), the round is completed with the same
number of trials, and runs already on disk (identified by ``run_key``) are never
trained again, so the dataset and the boundaries come out as in an uninterrupted
sweep, each run exactly once.

An exclusive ``flock`` on ``OUT/.lock`` keeps two drivers out of one directory.
A full disk ends the run with a ValueError naming ``OUT`` (CLI exit code 2): part files
are written whole or not at all, and a journal line cut short is trimmed on resume, so
rerunning once space is freed resumes as after a crash.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ntk_dist.analysis.boundaries import estimate_boundaries
from ntk_dist.core.files import (
    append_line,
    disk_full_as_usage_error,
    exclusive_lock,
    remove_temp_files,
    trim_torn_line,
    write_table_atomic,
)
from ntk_dist.core.integrity import MANIFEST, manifest_line
from ntk_dist.distributed.execute import submit_jobs
from ntk_dist.study import trials as _trials
from ntk_dist.study.driver import progress_bar, store_finished_batches
from ntk_dist.study.results import output_dir, prepare_output, read_runs
from ntk_dist.study.search import ETA_PARAM, WIDTH_PARAM
from ntk_dist.study.spec import SweepSpec
from ntk_dist.study.verify import repair


@dataclass
class SweepResult:
    """What a finished sweep returns: the output directory, all runs, the boundaries."""

    out_dir: Path
    runs: pa.Table
    boundaries: pa.Table
    new_runs: int


def run_sweep(
    spec: SweepSpec,
    out=None,
    *,
    resume: bool = False,
    progress: bool = True,
    echo=print,
) -> SweepResult:
    """Run (or resume) a sweep to completion; see the module docstring.

    Args:
      spec: validated :class:`ntk_dist.study.spec.SweepSpec`.
      out: output directory (default :func:`ntk_dist.study.results.output_dir`).
      resume: require an existing sweep in ``out``.
      progress: show a tqdm progress bar on stderr.
      echo: where one-line status messages go.

    Returns:
      :class:`SweepResult`.
    """
    from ntk_dist.distributed.runtime import ensure_ray

    out = output_dir(spec, out)
    prepare_output(spec, out, resume=resume)
    with exclusive_lock(out), disk_full_as_usage_error(out):
        # Under our flock no other driver uses the journal, so a lock file left by a
        # driver killed mid-write is stale; Optuna would otherwise wait 30 s for it. A
        # line cut short (full disk) would make the next append unreadable: trim it.
        journal = out / _trials.JOURNAL
        journal.with_name(journal.name + ".lock").unlink(missing_ok=True)
        trim_torn_line(journal)
        remove_temp_files(out)  # a part file a kill cut short was never a part file
        bad_lines = _trials.journal_problems(journal)
        if bad_lines:
            raise ValueError(bad_lines[0])
        repair(out, echo)  # corrupt part files to quarantine/: their runs are lost_runs
        ensure_ray()
        study = _trials.open_study(spec, out)
        _trials.check_spec_identity(study, spec, out)
        runs = read_runs(out)
        done = set(runs.column("run_key").to_pylist())
        settled = _trials.recover(study, spec, runs)
        if settled:
            echo(f"resumed: settled {settled} interrupted trial(s)")
        lost = _trials.lost_runs(study, spec, done)
        bar = progress_bar(progress, spec.n_points * spec.training.seeds, len(done))
        new = 0
        try:
            if lost:
                echo(f"retraining {len(lost)} run(s) of complete trials missing from {out}/runs")
                new += _train(spec, lost, out, done, bar)
            while (trials := _trials.next_round(spec, study)) is not None:
                new += _train_round(spec, study, trials, out, done, bar)
        finally:
            if bar is not None:
                bar.close()
        runs = read_runs(out)
        boundaries = estimate_boundaries(runs, sweep=spec.name)
        write_table_atomic(boundaries, out / "boundaries.parquet", checksums=out)
        _figures(runs, boundaries, out, spec)
        return SweepResult(out, runs, boundaries, new)


def _train_round(spec: SweepSpec, study, trials, out: Path, done: set, bar) -> int:
    todo = [
        (trial, key, seed)
        for trial in trials
        for seed, key in enumerate(_trials.point_keys(spec, trial.params))
        if key not in done
    ]
    stored = _train(spec, todo, out, done, bar)
    runs = read_runs(out)
    for trial in trials:
        _trials.tell(
            study, trial.number, _trials.phases_of(runs, _trials.point_keys(spec, trial.params))
        )
    if bar is not None:
        bar.set_postfix_str(_estimates(runs, spec))
    return stored


def _train(spec: SweepSpec, todo: list[tuple], out: Path, done: set, bar) -> int:
    """Train the runs ``todo`` ((trial, run key, seed) each) into ``OUT/runs/``."""
    meta, jobs = {}, []
    for trial, key, seed in todo:
        w, e = trial.params[WIDTH_PARAM], trial.params[ETA_PARAM]
        meta[key] = (trial.number, trial.user_attrs["round"], e)
        jobs.append(spec.job(w, e, seed, key))
    pending = submit_jobs(jobs, resources=spec.resources.build()) if jobs else []
    stored = store_finished_batches(pending, out, spec, meta, bar)
    done.update(stored)
    return len(stored)


def _estimates(runs: pa.Table, spec: SweepSpec) -> str:
    b = estimate_boundaries(runs, sweep=spec.name, n_boot=20).to_pydict()
    parts = defaultdict(list)
    for w, kind, x in zip(b["width"], b["boundary"], b["eta_lambda0"], strict=True):
        if x == x:  # not NaN
            parts[w].append(f"{'crit' if kind == 'lazy_catapult' else 'max'}={x:.3g}")
    return "; ".join(f"n={w}: " + ",".join(v) for w, v in sorted(parts.items()))


def _figures(runs: pa.Table, boundaries: pa.Table, out: Path, spec: SweepSpec) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from ntk_dist.analysis.plots import plot_catapult, plot_phase_diagram

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    plot_catapult(runs, fig_dir / "catapult", title=spec.name)
    plot_phase_diagram(runs, boundaries, fig_dir / "phase_diagram", title=spec.name)
    for figure in sorted(fig_dir.iterdir()):  # drawn whole (atomic), then recorded
        if figure.is_file():
            append_line(out / MANIFEST, manifest_line(out, figure, figure))


def summary_table(boundaries: pa.Table) -> str:
    """The located transitions, one line per (width, boundary)."""
    b = boundaries.to_pydict()
    lines = [f"{'width':>7} {'boundary':<20} {'eta*lambda0':>12} {'95% CI':>22} {'runs':>5}"]
    for i in range(boundaries.num_rows):
        ci = f"[{b['ci_low'][i]:.4g}, {b['ci_high'][i]:.4g}]"
        lines.append(
            f"{b['width'][i]:>7} {b['boundary'][i]:<20} {b['eta_lambda0'][i]:>12.4g} "
            f"{ci:>22} {b['n_runs'][i]:>5}"
        )
    return "\n".join(lines)
