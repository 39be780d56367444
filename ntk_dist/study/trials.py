"""Optuna bookkeeping of a sweep: one trial is one point (width, eta * lambda0).

The driver (:mod:`ntk_dist.study.sweep`) works in **rounds**: it asks
``search.parallel`` trials, each tagged with its round and the round's size, trains
all their runs, then tells every trial its phases (``user_attrs["phases"]``) and its
value. Samplers see only finished rounds plus the round's pending points.

The value told to Optuna (the "objective" optuna-dashboard plots) is the mean phase code
of the point's runs (:data:`ntk_dist.analysis.phases.PHASE_CODES`: lazy 0,
sharpness_reduction 1, loss_catapult 2, divergent 3): not a quantity to optimise, but
how far past the transitions a point lies, so plotted against ``eta_lambda0`` the
dashboard draws a staircase whose steps are c_loss and c_max. The study's direction
is "minimize" only because Optuna needs one: its "best trial" is merely a lazy point.
The labels themselves are in each trial's user attributes ``phases`` and
``sharpness_catapult`` (one entry per seed), which the boundary sampler reads.

Resume: trials a crash left RUNNING are settled by :func:`recover`. One whose runs are
all in the dataset is told COMPLETE from them; any other is re-enqueued with the same
params, round and round size and told FAIL. The round is then completed with the same
number of trials. Nothing is decided from flags: every step re-derives what is missing
from the dataset and the study, so a crash inside the recovery itself resumes the same
way. Since the boundary sampler is a pure function of (finished trials,
pending points), a resumed sweep asks the same points as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pyarrow as pa
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ntk_dist.analysis.phases import phase_codes
from ntk_dist.study.samplers import make_sampler
from ntk_dist.study.search import DEPTH_PARAM, ETA_PARAM, WIDTH_PARAM
from ntk_dist.study.spec import SweepSpec

JOURNAL = "study.journal"


def open_study(spec: SweepSpec, out: Path) -> optuna.Study:
    """The sweep's study in ``OUT/study.journal`` (created or loaded)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(Path(out) / JOURNAL)))
    return optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.search_view),
        direction="minimize",
        load_if_exists=True,
    )


def journal_problems(path) -> list[str]:
    """One problem per line of the Optuna journal ``path`` that is not a journal record
    (a JSON object with an ``op_code``), naming the file and the line. A torn last line
    (no newline: a kill mid-append) is not a problem; the driver trims it.

    Optuna replays the log in order and stops at the first bad line, and every later
    append would go after it, so the driver refuses to open a journal with problems.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    problems = []
    for number, raw in enumerate(lines[:-1], 1):  # lines[-1]: b"" or a torn line
        try:
            ok = isinstance(record := json.loads(raw.decode("utf-8")), dict) and isinstance(
                record.get("op_code"), int
            )
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            ok = False
        if not ok:
            shown = raw[:60].decode("utf-8", "replace")
            problems.append(
                f"{path}: line {number} is not an Optuna journal record ({shown!r}); the study "
                "cannot be replayed past it: delete that line if something other than "
                "ntk-dist wrote it, or restore the file from a copy"
            )
    return problems


def check_spec_identity(study: optuna.Study, spec: SweepSpec, out: Path) -> None:
    """Record the spec hash in a new study, or refuse one made from another spec (the
    guard that holds when ``spec.sha256`` was deleted before any part file existed)."""
    stored = study.user_attrs.get("spec_hash")
    if stored is None:
        study.set_user_attr("spec_hash", spec.spec_hash())
    elif stored != spec.spec_hash():
        raise ValueError(
            f"{Path(out) / JOURNAL} holds the study of another spec (hash {stored[:12]}, this "
            f"spec {spec.spec_hash()[:12]}); use a new --out, or rerun with that spec"
        )


def lost_runs(study: optuna.Study, spec: SweepSpec, done: set) -> list[tuple]:
    """Runs of COMPLETE trials missing from the dataset (a corrupt part file moved to
    quarantine): (trial, key, seed) for each, to be retrained with the trial's params."""
    lost = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params = trial_params(t, spec)
        for seed, key in enumerate(point_keys(spec, params) if params else []):
            if key not in done:
                lost.append((t, key, seed))
    return lost


def point_keys(spec: SweepSpec, params: dict) -> list[str]:
    """The run keys of the trial with ``params``."""
    return spec.run_keys(params[WIDTH_PARAM], params[ETA_PARAM], params.get(DEPTH_PARAM))


def phases_of(runs: pa.Table, keys: list[str], column: str = "phase") -> list | None:
    """Phase labels (or another label ``column``, e.g. ``sharpness_catapult``) of the runs
    ``keys`` in order, or None if any is missing."""
    table = runs.select(["run_key", column]).to_pydict()
    by_key = dict(zip(table["run_key"], table[column], strict=True))
    if not all(k in by_key for k in keys):
        return None
    return [by_key[k] for k in keys]


def tell(
    study: optuna.Study,
    trial_number: int,
    phases: list[str],
    sharpness_catapult: list[bool] | None = None,
) -> None:
    """Finish a trial: its phases (and sharpness-catapult flags) as user attributes, the
    mean phase code as its value."""
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
    # the same storage call Trial.set_user_attr makes
    study._storage.set_trial_user_attr(trial_id, "phases", phases)
    if sharpness_catapult is not None:
        study._storage.set_trial_user_attr(
            trial_id, "sharpness_catapult", [bool(s) for s in sharpness_catapult]
        )
    study.tell(trial_number, float(np.mean(phase_codes(phases))))


def recover(study: optuna.Study, spec: SweepSpec, runs: pa.Table) -> int:
    """Settle trials a crash left RUNNING (module docstring); returns how many.

    Idempotent: a crash between any two of its storage writes resumes to the same study.
    A trial is settled from the dataset (its phases are re-derived, never trusted from a
    half-finished tell), and the copy of a lost trial is enqueued *before* the trial is
    told FAIL, in one journal record that names the trial it replaces
    (``user_attrs["replaces"]``), so a second pass never enqueues a second copy.
    """
    trials = study.get_trials(deepcopy=False)
    replaced = {t.user_attrs["replaces"] for t in trials if "replaces" in t.user_attrs}
    settled = 0
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        params = trial_params(t, spec)
        keys = point_keys(spec, params) if params else None
        phases = phases_of(runs, keys) if keys else None
        if phases is not None:
            tell(study, t.number, phases, phases_of(runs, keys, "sharpness_catapult"))
        else:
            if params and t.number not in replaced:
                # A kill between ask and set_user_attr leaves the round attrs unset;
                # such a trial belongs to the round planned last (next_round).
                planned = dict(
                    zip(("round", "round_size"), study.user_attrs["round_plan"], strict=True)
                )
                attrs = {**planned, **_round_attrs(t), "replaces": t.number}
                study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
            study.tell(t.number, state=TrialState.FAIL)
        settled += 1
    return settled


def trial_params(trial, spec: SweepSpec) -> dict:
    """The trial's point {width, (depth,) eta_lambda0} (:func:`distributions`): its
    params, or the enqueued params of a trial popped from the queue and killed before
    they were set; {} if not all are known."""
    names = set(distributions(spec))
    params = trial.params if set(trial.params) == names else trial.system_attrs.get("fixed_params")
    return dict(params) if params and names <= set(params) else {}


def _round_attrs(trial) -> dict:
    return {k: trial.user_attrs[k] for k in ("round", "round_size") if k in trial.user_attrs}


def distributions(spec: SweepSpec) -> dict:
    """The params of a trial: width, depth (a sweep over several depths), eta * lambda0."""
    low, high = spec.search.eta_lambda0
    dist = {WIDTH_PARAM: CategoricalDistribution(list(spec.model.widths))}
    if len(spec.model.depths) > 1:
        dist[DEPTH_PARAM] = CategoricalDistribution(list(spec.model.depths))
    dist[ETA_PARAM] = FloatDistribution(low, high, log=True)
    return dist


def next_round(spec: SweepSpec, study: optuna.Study):
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
        size = min(spec.search.parallel, spec.n_points - complete)
        if size <= 0:
            return None
        asked, number = 0, last + 1
        # Written before the first ask, so a crash mid-round can always tell the round.
        study.set_user_attr("round_plan", [number, size])
    dist = distributions(spec)
    out = []
    for _ in range(len(waiting_last) + size - asked):
        trial = study.ask(dist)
        trial.set_user_attr("round", number)
        trial.set_user_attr("round_size", size)
        out.append(trial)
    return out
