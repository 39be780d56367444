"""The sweep's trial bookkeeping survives a kill at each of its own journal writes.

Fast, no training: phases follow the toy's rule in eta * lambda0, and the "kill" is
:class:`Crash`, raised instead of the k-th journal append.
"""

import os

import pyarrow as pa
import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ntk_dist.study.search import ETA_PARAM, WIDTH_PARAM, grid_points
from ntk_dist.study.spec import parse_spec
from ntk_dist.study.trials import next_round, open_study, recover, tell, trial_params

NO_RUNS = pa.table({"run_key": pa.array([], pa.string()), "phase": pa.array([], pa.string())})


class Crash(BaseException):
    """A SIGKILL just before this journal write."""


@pytest.fixture
def crash_at(monkeypatch):
    """``crash_at(k)``: the k-th journal append from now raises Crash (None: never)."""
    state = {"n": 0, "at": None}
    append = JournalFileBackend.append_logs

    def append_logs(self, logs):
        state["n"] += 1
        if state["n"] == state["at"]:
            raise Crash
        append(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", append_logs)
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # speed: durability is not tested here

    def arm(k):
        state["n"], state["at"] = 0, k
        return lambda: state["n"]

    return arm


def _spec(sampler, n_trials, parallel):
    return parse_spec(
        {
            "name": f"recovery_{sampler}",
            "model": {"kind": "toy", "widths": [64, 256]},
            "training": {"seeds": 1, "steps": 64},
            "search": {"sampler": sampler, "eta_lambda0": [1.0, 6.0], "n_trials": n_trials,
                       "parallel": parallel},
        }
    )  # fmt: skip


def _phase(trial):
    eta = trial.params[ETA_PARAM]
    return ["lazy" if eta < 2 else "catapult" if eta < 4 else "divergent"]


def _finish(spec, out):
    """A driver that resumes and finishes the sweep (rounds told from the toy rule)."""
    out.mkdir(exist_ok=True)
    study = open_study(spec, out)
    recover(study, spec, NO_RUNS)
    while (trials := next_round(spec, study)) is not None:
        for t in trials:
            tell(study, t.number, _phase(t))
    return study


def _points(study):
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((t.params[WIDTH_PARAM], t.params[ETA_PARAM]) for t in done)


def test_kill_at_every_write_while_a_whole_grid_round_is_asked(crash_at, tmp_path):
    # The grid is one round (parallel = n_trials): a kill anywhere in it, or in the
    # recovery after it, leaves every grid point trained exactly once.
    spec = _spec("grid", 6, 6)
    expected = sorted((p[WIDTH_PARAM], p[ETA_PARAM]) for p in grid_points(spec.search_view))
    writes = crash_at(None)
    _finish(spec, tmp_path / "ref")
    total = writes()
    for k in range(1, total + 1):
        out = tmp_path / f"k{k}"
        crash_at(k)
        with pytest.raises(Crash):
            _finish(spec, out)
        crash_at(None)
        assert _points(_finish(spec, out)) == expected, f"killed at write {k} of {total}"


def test_kill_at_every_write_of_the_recovery_keeps_each_lost_trial(crash_at, tmp_path):
    # Four trials asked and lost (RUNNING, no runs): the recovery re-enqueues each once,
    # whichever of its writes a kill interrupts (kill between FAIL and enqueue dropped
    # a trial; before the fix, a boundary moved).
    spec = _spec("boundary", 8, 4)
    base = tmp_path / "base"
    base.mkdir()
    asked = next_round(spec, open_study(spec, base))
    lost = sorted((t.params[WIDTH_PARAM], t.params[ETA_PARAM]) for t in asked)
    study = open_study(spec, base)
    writes = crash_at(None)
    recover(study, spec, NO_RUNS)
    total = writes()
    assert total == 2 * len(lost)  # one enqueue and one FAIL per lost trial
    reference = _points(_finish(spec, base))
    for k in range(1, total + 1):
        out = tmp_path / f"k{k}"
        out.mkdir()
        crash_at(None)
        next_round(spec, open_study(spec, out))
        study = open_study(spec, out)
        crash_at(k)
        with pytest.raises(Crash):
            recover(study, spec, NO_RUNS)
        crash_at(None)
        study = open_study(spec, out)
        recover(study, spec, NO_RUNS)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert sorted(tuple(trial_params(t, spec).values()) for t in waiting) == lost, k
        assert _points(_finish(spec, out)) == reference, f"killed at write {k} of {total}"
