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
An object-store output (``s3://bucket/prefix``, :mod:`ntk_dist.core.storage`) is
worked on as a staged local copy: part files, boundaries and figures are uploaded as
whole objects when written, and ``study.journal`` after each ask and each tell of a
round, so a driver whose disk is lost resumes from the remote copy alone, as after a
crash (one driver per location: object stores have no lock).
A full disk ends the run with a ValueError naming ``OUT`` (CLI exit code 2): part files
are written whole or not at all, and a journal line cut short is trimmed on resume, so
rerunning once space is freed resumes as after a crash.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ntk_dist.analysis.boundaries import estimate_boundaries
from ntk_dist.analysis.phases import relabel
from ntk_dist.core.files import (
    append_line,
    disk_full_as_usage_error,
    exclusive_lock,
    remove_temp_files,
    trim_torn_line,
    write_table_atomic,
)
from ntk_dist.core.integrity import MANIFEST, manifest_line
from ntk_dist.core.storage import publish, staged
from ntk_dist.distributed.runtime import ensure_ray
from ntk_dist.study import trials as _trials
from ntk_dist.study.driver import progress_bar, store_finished_batches, submit_runs
from ntk_dist.study.results import output_dir, prepare_output, read_runs
from ntk_dist.study.search import DEPTH_PARAM, ETA_PARAM, WIDTH_PARAM
from ntk_dist.study.spec import SweepSpec
from ntk_dist.study.verify import repair


@dataclass
class SweepResult:
    """What a finished sweep returns: the output directory, all runs, the boundaries."""

    out_dir: Path | str
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
    connect=None,
) -> SweepResult:
    """Run (or resume) a sweep to completion; see the module docstring.

    Args:
      spec: validated :class:`ntk_dist.study.spec.SweepSpec`.
      out: output directory (default :func:`ntk_dist.study.results.output_dir`).
      resume: require an existing sweep in ``out``.
      progress: show a tqdm progress bar on stderr.
      echo: where one-line status messages go.
      connect: called once, before the first training job is submitted, to connect
        to Ray (default :func:`ntk_dist.distributed.runtime.ensure_ray`); a rerun with
        nothing left to train never calls it, so it starts no Ray.

    Returns:
      :class:`SweepResult`; ``out_dir`` is the location as given (a Path or a URI).
    """
    location = output_dir(spec, out)
    with staged(location) as local:
        result = _sweep(spec, local, resume, progress, echo, connect)
    result.out_dir = location
    return result


def _sweep(spec: SweepSpec, out: Path, resume: bool, progress: bool, echo, connect):
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
        study = _trials.open_study(spec, out)
        _trials.check_spec_identity(study, spec, out)
        runs = _labelled(read_runs(out), spec)
        done = set(runs.column("run_key").to_pylist())
        settled = _trials.recover(study, spec, runs)
        publish(journal)  # a remote output keeps the study with the runs (core.storage)
        if settled:
            echo(f"resumed: settled {settled} interrupted trial(s)")
        lost = _trials.lost_runs(study, spec, done)
        bar = progress_bar(progress, spec.n_points * spec.training.seeds, len(done))
        new = 0
        try:
            if lost:
                echo(f"retraining {len(lost)} run(s) of complete trials missing from {out}/runs")
                new += _train(spec, lost, out, done, bar, connect)
            while (trials := _trials.next_round(spec, study)) is not None:
                publish(journal)  # the round's points, before any of it trains
                new += _train_round(spec, study, trials, out, done, bar, connect)
                publish(journal)
        finally:
            if bar is not None:
                bar.close()
        runs = read_runs(out)
        digest = _runs_digest(runs)
        boundaries = _stored_boundaries(out, digest)
        if boundaries is None or not _figures_drawn(out):
            # A rerun of a finished sweep keeps both: estimates and figures are functions
            # of the runs, and the digest says they were made from exactly these runs.
            boundaries = estimate_boundaries(
                runs, sweep=spec.name, early_steps=spec.training.early_steps
            )
            meta = {**(boundaries.schema.metadata or {}), _DIGEST_KEY: digest.encode()}
            write_table_atomic(
                boundaries.replace_schema_metadata(meta), out / _BOUNDARIES, checksums=out
            )
            _figures(runs, boundaries, out, spec)
        return SweepResult(out, runs, boundaries, new)


#: Schema metadata of ``boundaries.parquet``: sha256 of the run keys it was estimated from.
_DIGEST_KEY = b"ntk_dist.runs_sha256"
_FIGURE_STEMS = ("catapult", "phase_diagram", "critical")
_BOUNDARIES = "boundaries.parquet"


def _runs_digest(runs: pa.Table) -> str:
    keys = "\n".join(sorted(runs.column("run_key").to_pylist()))
    return hashlib.sha256(keys.encode()).hexdigest()


def _stored_boundaries(out: Path, digest: str) -> pa.Table | None:
    """``boundaries.parquet`` if it was estimated from runs of this ``digest``, else None."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(out / _BOUNDARIES)
    except (OSError, pa.ArrowInvalid):
        return None
    stored = (table.schema.metadata or {}).get(_DIGEST_KEY)
    return table if stored == digest.encode() else None


def _figures_drawn(out: Path) -> bool:
    from ntk_dist.analysis.figures import FORMATS

    fig_dir = out / "figures"
    return all((fig_dir / f"{s}.{f}").is_file() for s in _FIGURE_STEMS for f in FORMATS)


def _train_round(spec: SweepSpec, study, trials, out: Path, done: set, bar, connect) -> int:
    todo = [
        (trial, key, seed)
        for trial in trials
        for seed, key in enumerate(_trials.point_keys(spec, trial.params))
        if key not in done
    ]
    stored = _train(spec, todo, out, done, bar, connect)
    runs = _labelled(read_runs(out), spec)
    for trial in trials:
        keys = _trials.point_keys(spec, trial.params)
        _trials.tell(
            study,
            trial.number,
            _trials.phases_of(runs, keys),
            _trials.phases_of(runs, keys, "sharpness_catapult"),
        )
    if bar is not None:
        bar.set_postfix_str(_estimates(runs, spec))
    return stored


def _train(spec: SweepSpec, todo: list[tuple], out: Path, done: set, bar, connect) -> int:
    """Train the runs ``todo`` ((trial, run key, seed) each) into ``OUT/runs/``;
    ``connect`` (default :func:`ensure_ray`) is called first when there is any."""
    meta, jobs = {}, []
    for trial, key, seed in todo:
        w, e = trial.params[WIDTH_PARAM], trial.params[ETA_PARAM]
        d = trial.params.get(DEPTH_PARAM)
        meta[key] = (trial.number, trial.user_attrs["round"], e)
        jobs.append(spec.job(w, e, seed, key, d))
    pending = []
    if jobs:
        (connect or ensure_ray)()  # a no-op once connected
        pending = submit_runs(spec, jobs)
    stored = store_finished_batches(pending, out, spec, meta, bar)
    done.update(stored)
    return len(stored)


def _labelled(runs: pa.Table, spec: SweepSpec) -> pa.Table:
    """Runs with their labels recomputed over all runs so far: a batch labelled alone
    lacks the small-eta runs that set the SGD noise tolerance (docs/theory.md §7)."""
    return relabel(runs, early_steps=spec.training.early_steps) if runs.num_rows else runs


def _estimates(runs: pa.Table, spec: SweepSpec) -> str:
    b = estimate_boundaries(
        runs, sweep=spec.name, n_boot=20, early_steps=spec.training.early_steps
    ).to_pydict()
    parts = defaultdict(list)
    for w, d, kind, x in zip(b["width"], b["depth"], b["boundary"], b["eta_lambda0"], strict=True):
        if x == x:  # not NaN
            parts[w, d].append(f"{kind}={x:.3g}")
    return "; ".join(f"n={w},L={d}: " + ",".join(v) for (w, d), v in sorted(parts.items()))


def _figures(runs: pa.Table, boundaries: pa.Table, out: Path, spec: SweepSpec) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from ntk_dist.analysis.phase_plots import plot_catapult, plot_critical, plot_phase_diagram

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    catapult, phase_diagram, critical = _FIGURE_STEMS
    plot_catapult(runs, fig_dir / catapult, title=spec.name)
    plot_phase_diagram(
        runs,
        boundaries,
        fig_dir / phase_diagram,
        title=spec.name,
        early_steps=spec.training.early_steps,
    )
    plot_critical(boundaries, fig_dir / critical, title=spec.name)
    for figure in sorted(fig_dir.iterdir()):  # drawn whole (atomic), then recorded
        if figure.is_file():
            append_line(out / MANIFEST, manifest_line(out, figure, figure))


def summary_table(boundaries: pa.Table) -> str:
    """The located critical values, one line per (width, depth, boundary)."""
    b = boundaries.to_pydict()
    lines = [
        f"{'width':>7} {'depth':>5} {'boundary':<8} {'eta*lambda0':>12} {'95% CI':>22} {'runs':>5}"
    ]
    for i in range(boundaries.num_rows):
        ci = f"[{b['ci_low'][i]:.4g}, {b['ci_high'][i]:.4g}]"
        lines.append(
            f"{b['width'][i]:>7} {b['depth'][i]:>5} {b['boundary'][i]:<8} "
            f"{b['eta_lambda0'][i]:>12.4g} {ci:>22} {b['n_runs'][i]:>5}"
        )
    return "\n".join(lines)
