"""The phase-sweep driver: spec -> Optuna trials -> Ray batches -> Parquet rows -> boundaries.

One Optuna trial is one point (width, eta * lambda0), trained with every seed of the
spec; its runs are Ray tasks of the training engine. The driver works in **rounds**:
it asks ``search.parallel`` trials (each tagged with its round and the round's size),
trains all their runs concurrently, appends each finished batch to ``OUT/runs/``
atomically, then tells every trial its phases (``user_attrs["phases"]``) and value
(mean phase code). Samplers see only finished rounds plus the round's pending points.

Resume (rerun the same command after a crash at any moment): trials left RUNNING are
settled first. One whose runs are all in the dataset is told COMPLETE from them;
any other is told FAIL and re-enqueued with the same params, round and round size.
The round is then completed with the same number of trials, and runs already on disk
(identified by ``run_key``) are never trained again. Since the boundary sampler is a
pure function of (finished trials, pending points), the resumed sweep asks the same
points as an uninterrupted one, so the dataset and the boundaries come out the same,
each run exactly once.

An exclusive ``flock`` on ``OUT/.lock`` keeps two drivers out of one directory; the
kernel drops it when the process dies, so a crash never leaves a stale lock.

A full disk ends the run with a ValueError naming ``OUT`` (CLI exit code 2): part files
are written whole or not at all, and a journal line cut short is trimmed on resume, so
rerunning once space is freed resumes as after a crash.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pyarrow as pa
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from .boundaries import estimate_boundaries
from .execute import plan_batches, submit_jobs
from .phases import PHASE_CODES, label_runs, step_budget
from .search import ETA_PARAM, WIDTH_PARAM, grid_points, make_sampler
from .spec import SweepSpec
from .store import (
    add_run_columns,
    append_runs,
    disk_full_as_usage_error,
    read_runs,
    trim_torn_line,
    write_table_atomic,
    write_text_atomic,
)
from .train import TrainJob


@dataclass
class SweepResult:
    """What a finished sweep returns: the output directory, all runs, the boundaries."""

    out_dir: Path
    runs: pa.Table
    boundaries: pa.Table
    new_runs: int


def output_dir(spec: SweepSpec, out=None) -> Path:
    """``--out`` if given, else the spec's ``output``, else ``results/<name>``."""
    return Path(out or spec.output or Path("results") / spec.name)


def run_key(spec_hash: str, width: int, eta_lambda0: float, seed: int) -> str:
    """Identity of one run: the same key means the same training job."""
    return f"{spec_hash[:16]}:w{int(width)}:e{float(eta_lambda0)!r}:s{int(seed)}"


def steps_for(spec: SweepSpec, width: int, eta_lambda0: float) -> int:
    """The run's step budget: fixed, or the rule of ``ntk_dist.phases.step_budget``."""
    t = spec.training
    if t.steps != "auto":
        return t.steps
    b = t.budget
    return step_budget(width, eta_lambda0, base=b.base, scale=b.scale, cap=b.cap, eta_max=b.eta_max)


def make_job(spec: SweepSpec, width: int, eta_lambda0: float, seed: int, key: str) -> TrainJob:
    t = spec.training
    return TrainJob(
        spec.model.build(width),
        spec.data.build(),
        float(eta_lambda0),
        steps=steps_for(spec, width, eta_lambda0),
        seed=seed,
        lr_units="lambda0",
        optimizer=t.optimizer,
        batch_size=t.batch_size,
        dtype=t.dtype,
        tag=key,
    )


def describe_plan(spec: SweepSpec) -> str:
    """What ``run`` would do, without running anything (``validate`` / ``--dry-run``)."""
    s, t = spec.search, spec.training
    n_points = _effective_trials(spec)
    n_runs = n_points * t.seeds
    rounds = -(-n_points // s.parallel)
    etas = np.geomspace(*s.eta_lambda0, 16)
    mean_steps = {
        w: float(np.mean([steps_for(spec, w, e) for e in etas])) for w in spec.model.widths
    }
    # Seeds share a batch key, so one job per distinct point stands for all its seeds.
    size = min(s.parallel, n_points)
    points = set(zip(np.resize(spec.model.widths, size), np.resize(etas, size), strict=True))
    point_jobs = [make_job(spec, int(w), float(e), 0, "plan") for w, e in sorted(points)]
    batches = len(plan_batches([job for job in point_jobs for _ in range(t.seeds)]))
    cost = sum(mean_steps[w] * w for w in spec.model.widths) / len(spec.model.widths) * n_runs
    lines = [
        f"sweep {spec.name!r} (spec hash {spec.spec_hash()[:12]})",
        f"  model: {spec.model.kind}, widths {spec.model.widths}"
        + (
            f", depth {spec.model.depth}, {spec.model.activation}"
            if spec.model.kind == "fc"
            else ""
        ),
        f"  search: {s.sampler} sampler, eta*lambda0 in [{s.eta_lambda0[0]}, "
        f"{s.eta_lambda0[1]}], {n_points} points x {t.seeds} seeds = {n_runs} runs "
        f"in {rounds} rounds of <= {s.parallel}",
        f"  training: {t.optimizer}, steps {t.steps}"
        + (" (mean per width: " + ", ".join(f"{w}: {v:.0f}" for w, v in mean_steps.items()) + ")"),
        f"  execution: about {batches} Ray tasks per round "
        f"({spec.resources.num_cpus} CPU, {spec.resources.num_gpus} GPU each)",
        f"  estimated cost: {cost:.3g} width-steps",
    ]
    return "\n".join(lines)


def plan_text(spec) -> str:
    """:func:`describe_plan` of a sweep, or of an experiment spec."""
    if isinstance(spec, SweepSpec):
        return describe_plan(spec)
    from .experiments import describe_plan as describe_experiment

    return describe_experiment(spec)


def prepare_output(spec: SweepSpec, out: Path, *, resume: bool = False) -> None:
    """Create ``out`` (or check it belongs to this spec) before any work is done.

    Raises:
      ValueError: unwritable directory, a different spec in it, or ``resume`` with
        nothing to resume.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"output directory {out} exists and is not a directory; choose another --out"
        )
    spec_file, hash_file = out / "spec.yaml", out / "spec.sha256"
    if hash_file.exists():
        old = hash_file.read_text().strip()
        if old != spec.spec_hash():
            raise ValueError(
                f"{out} holds a sweep of a different spec (hash {old[:12]}, this spec "
                f"{spec.spec_hash()[:12]}); use a new --out, or delete {out} to start over"
            )
        return
    if resume:
        raise ValueError(f"--resume: {out} holds no sweep to resume (no {hash_file.name})")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"output directory {out} is not writable ({err.strerror}); choose another --out"
        ) from None
    with disk_full_as_usage_error(out):
        write_text_atomic(spec.to_yaml(), spec_file)
        write_text_atomic(spec.spec_hash() + "\n", hash_file)


@contextmanager
def exclusive_lock(out: Path):
    """Hold an exclusive ``flock`` on ``OUT/.lock`` (module docstring), or raise
    ValueError naming ``out`` when another driver holds it."""
    fh = open(out / ".lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ValueError(
            f"{out} is in use by another ntk-dist run; wait for it to finish "
            "or choose another --out"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def open_study(spec: SweepSpec, out: Path) -> optuna.Study:
    """The sweep's study in ``OUT/study.journal`` (created or loaded)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.search_view),
        direction="minimize",
        load_if_exists=True,
    )


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
      spec: validated :class:`SweepSpec`.
      out: output directory (default :func:`output_dir`).
      resume: require an existing sweep in ``out``.
      progress: show a tqdm progress bar on stderr.
      echo: where one-line status messages go.

    Returns:
      :class:`SweepResult`.
    """
    from .runtime import ensure_ray

    out = output_dir(spec, out)
    prepare_output(spec, out, resume=resume)
    with exclusive_lock(out), disk_full_as_usage_error(out):
        # Under our flock no other driver uses the journal, so a lock file left by a
        # driver killed mid-write is stale; Optuna would otherwise wait 30 s for it. A
        # line cut short (full disk) would make the next append unreadable: trim it.
        (out / "study.journal.lock").unlink(missing_ok=True)
        trim_torn_line(out / "study.journal")
        ensure_ray()
        study = open_study(spec, out)
        runs = read_runs(out)
        done = set(runs.column("run_key").to_pylist())
        settled = _recover(study, spec, runs)
        if settled:
            echo(f"resumed: settled {settled} interrupted trial(s)")
        total = _effective_trials(spec) * spec.training.seeds
        bar = progress_bar(progress, total, len(done))
        new = 0
        try:
            while (trials := _next_round(spec, study)) is not None:
                new += _train_round(spec, study, trials, out, done, bar)
        finally:
            if bar is not None:
                bar.close()
        runs = read_runs(out)
        boundaries = estimate_boundaries(runs, sweep=spec.name)
        write_table_atomic(boundaries, out / "boundaries.parquet")
        _figures(runs, boundaries, out, spec)
        return SweepResult(out, runs, boundaries, new)


def _effective_trials(spec: SweepSpec) -> int:
    """Points in the whole sweep: the grid's size for ``grid``, else ``n_trials``."""
    if spec.search.sampler == "grid":
        return len(grid_points(spec.search_view))
    return spec.search.n_trials


def _distributions(spec: SweepSpec) -> dict:
    low, high = spec.search.eta_lambda0
    return {
        WIDTH_PARAM: CategoricalDistribution(list(spec.model.widths)),
        ETA_PARAM: FloatDistribution(low, high, log=True),
    }


def _keys(spec: SweepSpec, params: dict) -> list[str]:
    h = spec.spec_hash()
    return [
        run_key(h, params[WIDTH_PARAM], params[ETA_PARAM], s) for s in range(spec.training.seeds)
    ]


def _phases_of(runs: pa.Table, keys: list[str]) -> list[str] | None:
    """Phase labels of the runs ``keys`` in order, or None if any is missing."""
    table = runs.select(["run_key", "phase"]).to_pydict()
    by_key = dict(zip(table["run_key"], table["phase"], strict=True))
    if not all(k in by_key for k in keys):
        return None
    return [by_key[k] for k in keys]


def _tell(study: optuna.Study, trial_number: int, phases: list[str]) -> None:
    study._storage.set_trial_user_attr(  # same storage call Trial.set_user_attr makes
        study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number),
        "phases",
        phases,
    )
    study.tell(trial_number, float(np.mean([PHASE_CODES[p] for p in phases])))


def _recover(study: optuna.Study, spec: SweepSpec, runs: pa.Table) -> int:
    """Settle trials a crash left RUNNING (module docstring); returns how many."""
    settled = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        phases = _phases_of(runs, _keys(spec, t.params)) if len(t.params) == 2 else None
        if phases is not None:
            _tell(study, t.number, phases)
        else:
            study.tell(t.number, state=TrialState.FAIL)
            if len(t.params) == 2:
                # A kill between ask and set_user_attr leaves the round attrs unset;
                # such a trial belongs to the round planned last (_next_round).
                planned = dict(
                    zip(("round", "round_size"), study.user_attrs["round_plan"], strict=True)
                )
                study.enqueue_trial(
                    t.params, user_attrs={**planned, **_round_attrs(t)}, skip_if_exists=False
                )
        settled += 1
    if spec.search.sampler == "grid" and not study.user_attrs.get("grid_enqueued"):
        for point in grid_points(spec.search_view):
            study.enqueue_trial(point)
        study.set_user_attr("grid_enqueued", True)
    return settled


def _round_attrs(trial) -> dict:
    return {k: trial.user_attrs[k] for k in ("round", "round_size") if k in trial.user_attrs}


def _next_round(spec: SweepSpec, study: optuna.Study):
    """Ask the trials of the next (or the interrupted) round; None when the sweep is done."""
    trials = study.get_trials(deepcopy=False)
    rounds = [t.user_attrs["round"] for t in trials if "round" in t.user_attrs]
    last = max(rounds, default=-1)
    waiting_last = [
        t for t in trials if t.state == TrialState.WAITING and t.user_attrs.get("round") == last
    ]
    if waiting_last:
        size = waiting_last[0].user_attrs["round_size"]
        asked = sum(
            1 for t in trials if t.user_attrs.get("round") == last and t.state != TrialState.FAIL
        )
        number = last
    else:
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        size = min(spec.search.parallel, _effective_trials(spec) - complete)
        if size <= 0:
            return None
        asked, number = 0, last + 1
        # Written before the first ask, so a crash mid-round can always tell the round.
        study.set_user_attr("round_plan", [number, size])
    dist = _distributions(spec)
    out = []
    for _ in range(len(waiting_last) + size - asked):
        trial = study.ask(dist)
        trial.set_user_attr("round", number)
        trial.set_user_attr("round_size", size)
        out.append(trial)
    return out


def store_finished_batches(pending: list, out: Path, spec, meta: dict, bar) -> list[str]:
    """Append each Ray batch of ``pending`` to ``OUT/runs/`` as soon as it finishes.

    Its rows get the sweep columns (``meta[run_key]`` = (trial, round,
    target_eta_lambda0), the spec's name and hash, the phase labels), so a crash loses at
    most the batches still training.

    Returns:
      The stored run keys, in the order they landed.
    """
    import ray

    stored = []
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        table = ray.get(ready[0])
        keys = table.column("tag").to_pylist()
        table = add_run_columns(
            table,
            sweep=spec.name,
            spec_hash=spec.spec_hash(),
            trial=[meta[k][0] for k in keys],
            round=[meta[k][1] for k in keys],
            target_eta_lambda0=[meta[k][2] for k in keys],
            phase=label_runs(table).to_pylist(),
        )
        append_runs(out, table)
        stored += keys
        if bar is not None:
            bar.update(len(keys))
    return stored


def _train_round(spec, study, trials, out: Path, done: set, bar) -> int:
    meta = {}
    jobs = []
    for trial in trials:
        for seed, key in enumerate(_keys(spec, trial.params)):
            meta[key] = (trial.number, trial.user_attrs["round"], trial.params[ETA_PARAM])
            if key not in done:
                w, e = trial.params[WIDTH_PARAM], trial.params[ETA_PARAM]
                jobs.append(make_job(spec, w, e, seed, key))
    pending = submit_jobs(jobs, resources=spec.resources.build()) if jobs else []
    stored = store_finished_batches(pending, out, spec, meta, bar)
    done.update(stored)
    runs = read_runs(out)
    for trial in trials:
        phases = _phases_of(runs, _keys(spec, trial.params))
        _tell(study, trial.number, phases)
    if bar is not None:
        bar.set_postfix_str(_estimates(runs, spec))
    return len(stored)


def _estimates(runs: pa.Table, spec: SweepSpec) -> str:
    b = estimate_boundaries(runs, sweep=spec.name, n_boot=20).to_pydict()
    parts = defaultdict(list)
    for w, kind, x in zip(b["width"], b["boundary"], b["eta_lambda0"], strict=True):
        if x == x:  # not NaN
            parts[w].append(f"{'crit' if kind == 'lazy_catapult' else 'max'}={x:.3g}")
    return "; ".join(f"n={w}: " + ",".join(v) for w, v in sorted(parts.items()))


def progress_bar(enabled: bool, total: int, initial: int):
    """A tqdm bar of runs on stderr, or None when ``enabled`` is false."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc="runs", file=sys.stderr)


def _figures(runs: pa.Table, boundaries: pa.Table, out: Path, spec: SweepSpec) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .plots import plot_catapult, plot_phase_diagram

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    plot_catapult(runs, fig_dir / "catapult", title=spec.name)
    plot_phase_diagram(runs, boundaries, fig_dir / "phase_diagram", title=spec.name)


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
