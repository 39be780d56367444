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
all in the dataset is told COMPLETE from them; any other is told FAIL and re-enqueued
with the same params, round and round size. The round is then completed with the same
number of trials. Since the boundary sampler is a pure function of (finished trials,
pending points), a resumed sweep asks the same points as an uninterrupted one.
"""

from __future__ import annotations

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
from ntk_dist.study.search import DEPTH_PARAM, ETA_PARAM, WIDTH_PARAM, grid_points
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
    """Settle trials a crash left RUNNING (module docstring); returns how many."""
    settled = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        complete = set(t.params) == set(distributions(spec))
        keys = point_keys(spec, t.params) if complete else None
        phases = phases_of(runs, keys) if keys else None
        if phases is not None:
            tell(study, t.number, phases, phases_of(runs, keys, "sharpness_catapult"))
        else:
            study.tell(t.number, state=TrialState.FAIL)
            if complete:
                # A kill between ask and set_user_attr leaves the round attrs unset;
                # such a trial belongs to the round planned last (next_round).
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
