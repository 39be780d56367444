"""One contract, run against every sampler of ``ntk_dist.study.search.SAMPLERS``.

Each sampler is built as a sweep builds it (``make_sampler(spec.search_view)`` inside
``ntk_dist.study.trials.open_study``, journal file included) and driven by the sweep's
own round bookkeeping (``recover``, ``next_round``, ``tell``). Nothing trains: a point's
phases follow the toy's infinite-width rule in eta * lambda0 (lazy below 2, catapult
below 4, divergent above), so the whole file runs in seconds.
"""

import pyarrow as pa
import pytest
from optuna.trial import TrialState

from ntk_dist.study.search import ETA_PARAM, SAMPLERS, WIDTH_PARAM
from ntk_dist.study.spec import parse_spec
from ntk_dist.study.trials import next_round, open_study, recover, tell

WIDTHS = [64, 256]
ETA_RANGE = [1.0, 6.0]
N_TRIALS, PARALLEL, SEEDS = 12, 4, 2  # three rounds of four points
#: A run table with no runs: what a crashed driver has stored for the trials it lost.
NO_RUNS = pa.table({"run_key": pa.array([], pa.string()), "phase": pa.array([], pa.string())})
#: Rounds a driver may take before the test calls it stuck (a sweep here needs three).
MAX_ROUNDS = 10


def _label(eta_lambda0: float) -> str:
    return "lazy" if eta_lambda0 < 2 else "loss_catapult" if eta_lambda0 < 4 else "divergent"


def _spec(sampler: str, seed: int = 3):
    return parse_spec(
        {
            "name": f"contract_{sampler}",
            "model": {"kind": "toy", "widths": WIDTHS},
            "training": {"seeds": SEEDS, "steps": 64},
            "search": {
                "sampler": sampler,
                "eta_lambda0": ETA_RANGE,
                "n_trials": N_TRIALS,
                "parallel": PARALLEL,
                "seed": seed,
            },
        }
    )


def _point(trial) -> tuple[int, float]:
    return trial.params[WIDTH_PARAM], trial.params[ETA_PARAM]


def _drive(spec, out, *, crash_in_round=None):
    """Run the sweep's rounds with labelled points instead of training.

    With ``crash_in_round``, that round's first two trials are told and the driver stops
    (the others stay RUNNING, as a killed driver leaves them). Returns the points of each
    round asked, in order.
    """
    out.mkdir(exist_ok=True)
    study = open_study(spec, out)
    recover(study, spec, NO_RUNS)
    rounds = []
    for number in range(MAX_ROUNDS):
        trials = next_round(spec, study)
        if trials is None:
            return rounds
        rounds.append([_point(t) for t in trials])
        told = trials[:2] if number == crash_in_round else trials
        for t in told:
            tell(study, t.number, [_label(t.params[ETA_PARAM])] * SEEDS)
        if number == crash_in_round:
            return rounds
    pytest.fail(f"the sweep did not finish in {MAX_ROUNDS} rounds: {rounds}")


def _complete(spec, out) -> list[tuple[int, float]]:
    """Points of the COMPLETE trials in trial order, read back from the journal."""
    trials = open_study(spec, out).get_trials(states=(TrialState.COMPLETE,))
    return [_point(t) for t in sorted(trials, key=lambda t: t.number)]


@pytest.fixture(params=SAMPLERS)
def sampler(request) -> str:
    return request.param


def test_asks_the_right_number_of_points_in_rounds(sampler, tmp_path):
    spec = _spec(sampler)
    rounds = _drive(spec, tmp_path / "out")
    assert [len(r) for r in rounds] == [PARALLEL] * (N_TRIALS // PARALLEL)
    assert len(_complete(spec, tmp_path / "out")) == spec.n_points == N_TRIALS


def test_every_point_lies_in_the_search_space(sampler, tmp_path):
    spec = _spec(sampler)
    points = [p for r in _drive(spec, tmp_path / "out") for p in r]
    assert points
    for width, eta in points:
        assert width in WIDTHS
        assert isinstance(eta, float) and ETA_RANGE[0] <= eta <= ETA_RANGE[1]


def test_same_seed_and_history_ask_the_same_points(sampler, tmp_path):
    first = _drive(_spec(sampler), tmp_path / "a")
    second = _drive(_spec(sampler), tmp_path / "b")
    assert first == second


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_study_reloaded_from_its_journal_asks_the_same_points(name, tmp_path):
    spec = _spec(name)
    _drive(spec, tmp_path / "uninterrupted")
    # A driver killed in round 1 with two of its four trials told; a new driver reloads
    # the journal (a fresh sampler), settles the lost trials and finishes the sweep.
    crashed = _drive(spec, tmp_path / "resumed", crash_in_round=1)
    assert len(crashed) == 2
    resumed = _drive(spec, tmp_path / "resumed")
    assert resumed, "the reloaded study asked nothing"
    assert _complete(spec, tmp_path / "resumed") == _complete(spec, tmp_path / "uninterrupted")
