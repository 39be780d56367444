"""Samplers: one contract for all of them, and the BoundarySampler's own promises."""

import math
import types

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from ntk_dist.study.samplers import BoundarySampler, history, make_sampler
from ntk_dist.study.search import ETA_PARAM, SAMPLERS, WIDTH_PARAM, grid_points

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = {
    "widths": [1024, 4096],
    "eta_low": 1.0,
    "eta_high": 6.0,
    "sampler": "boundary",
    "n_trials": 24,
    "parallel": 4,
    "resolution": 0.01,
    "seed": 3,
}
DISTS = {
    WIDTH_PARAM: CategoricalDistribution(SPEC["widths"]),
    ETA_PARAM: FloatDistribution(SPEC["eta_low"], SPEC["eta_high"]),
}


def _toy_label(eta_lambda0):
    """The toy's infinite-width phases (docs/theory.md §5): edges at 2 and 4."""
    return "lazy" if eta_lambda0 < 2 else "loss_catapult" if eta_lambda0 < 4 else "divergent"


def _round(study, parallel, seeds=2):
    """One driver round: ask ``parallel`` trials, then label and tell them all."""
    trials = [study.ask(DISTS) for _ in range(parallel)]
    for t in trials:
        t.set_user_attr("phases", [_toy_label(t.params[ETA_PARAM])] * seeds)
        study.tell(t, 1.0)
    return [(t.params[WIDTH_PARAM], t.params[ETA_PARAM]) for t in trials]


def _points(study):
    return [(t.params[WIDTH_PARAM], t.params[ETA_PARAM]) for t in study.trials if t.params]


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_contract(name):
    spec = dict(SPEC, sampler=name)
    study = optuna.create_study(sampler=make_sampler(spec))
    if name == "grid":
        for p in grid_points(spec):
            study.enqueue_trial(p)
    for _ in range(3):
        for w, eta in _round(study, SPEC["parallel"]):
            assert w in SPEC["widths"]
            assert SPEC["eta_low"] <= eta <= SPEC["eta_high"]
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 12


def test_boundary_sampler_is_deterministic_given_history():
    runs = [optuna.create_study(sampler=make_sampler(SPEC)) for _ in range(2)]
    for study in runs:
        for _ in range(6):
            _round(study, 4)
    assert _points(runs[0]) == _points(runs[1])
    sampler = make_sampler(SPEC)
    observed = [(w, e, (_toy_label(e),)) for w, e in _points(runs[0])]
    first = sampler.propose(observed, [])
    assert sampler.propose(list(reversed(observed)), []) == first  # order-free


def test_resume_after_a_crashed_round_gives_the_same_points():
    reference = optuna.create_study(sampler=make_sampler(SPEC))
    for _ in range(7):
        _round(reference, 4)

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", sampler=make_sampler(SPEC))
    for _ in range(3):
        _round(study, 4)
    crashed = [study.ask(DISTS) for _ in range(4)]  # asked, never told: the driver died
    # Resume: a fresh sampler and study object; the crashed round is re-created as is.
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(SPEC))
    for t in crashed:
        resumed.tell(t.number, state=TrialState.FAIL)
        resumed.enqueue_trial(t.params)
    for _ in range(4):
        _round(resumed, 4)
    done = [
        (t.params[WIDTH_PARAM], t.params[ETA_PARAM])
        for t in resumed.trials
        if t.state == TrialState.COMPLETE
    ]
    assert done == _points(reference)


def test_pending_points_are_spread():
    # One width, after its coarse grid: two brackets, around 2 and around 4.
    sampler = BoundarySampler(widths=[64], eta_low=1.0, eta_high=6.0, resolution=0.01)
    grid = sampler._coarse
    observed = [(64, e, (_toy_label(e),)) for e in grid]
    pending = []
    for _ in range(4):
        pending.append(sampler.propose(observed, pending))
    etas = [e for _, e in pending]
    assert len(set(etas)) == 4
    # The first two split the two brackets (around 2 and around 4), then quarter points.
    lo_bracket = max(e for e in grid if e < 2), min(e for e in grid if e > 2)
    hi_bracket = max(e for e in grid if e < 4), min(e for e in grid if e > 4)
    assert any(lo_bracket[0] < e < lo_bracket[1] for e in etas[:2])
    assert any(hi_bracket[0] < e < hi_bracket[1] for e in etas[:2])


def test_concentrates_near_the_boundaries_and_resolves_them():
    study = optuna.create_study(sampler=make_sampler(dict(SPEC, widths=[1024])))
    dists = {WIDTH_PARAM: CategoricalDistribution([1024]), ETA_PARAM: DISTS[ETA_PARAM]}
    for _ in range(30):
        t = study.ask(dists)
        t.set_user_attr("phases", [_toy_label(t.params[ETA_PARAM])])
        study.tell(t, 1.0)
    etas = sorted(t.params[ETA_PARAM] for t in study.trials)
    after_coarse = [t.params[ETA_PARAM] for t in study.trials[9:]]
    near = [e for e in after_coarse if abs(math.log(e / 2)) < 0.1 or abs(math.log(e / 4)) < 0.1]
    assert len(near) >= 0.9 * len(after_coarse)
    for edge in (2.0, 4.0):
        below = max(e for e in etas if e < edge)
        above = min(e for e in etas if e >= edge)
        assert above / below - 1 < 0.01


def test_grid_points_layout():
    pts = grid_points(dict(SPEC, n_trials=10))
    assert len(pts) == 10
    assert {p[WIDTH_PARAM] for p in pts} == {1024, 4096}
    etas = sorted({p[ETA_PARAM] for p in pts})
    assert etas[0] == pytest.approx(1.0) and etas[-1] == pytest.approx(6.0)
    ratios = [b / a for a, b in zip(etas, etas[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))


def test_grid_sampler_asks_each_grid_point_once_then_refuses():
    spec = dict(SPEC, sampler="grid", n_trials=6)
    study = optuna.create_study(sampler=make_sampler(spec))
    asked = []
    for _ in grid_points(spec):
        trial = study.ask(DISTS)
        asked.append(dict(trial.params))
        study.tell(trial, 0.0)
    assert asked == grid_points(spec)  # in grid order, none twice
    with pytest.raises(ValueError, match="every one of the 6 grid points is taken"):
        study.ask(DISTS)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sampler": "annealing"}, "search.sampler must be one of"),
        ({"eta_high": 0.5}, "eta_high must be > eta_low"),
        ({"eta_low": -1.0}, "eta_low must be > 0"),
        ({"widths": [0]}, r"widths\[0\] must be a positive integer"),
        ({"resolution": 0.0}, "resolution must be > 0"),
    ],
)
def test_bad_specs_are_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        make_sampler(dict(SPEC, **change))


def test_missing_field_and_foreign_params_are_rejected():
    with pytest.raises(ValueError, match="missing the field 'widths'"):
        make_sampler({"sampler": "boundary", "eta_low": 1.0, "eta_high": 2.0})
    study = optuna.create_study(sampler=make_sampler(SPEC))
    with pytest.raises(ValueError, match="samples only 'width' and 'eta_lambda0'"):
        study.ask({"depth": CategoricalDistribution([1, 2])})
    with pytest.raises(ValueError, match="must be suggested as a float in"):
        study.ask({ETA_PARAM: FloatDistribution(0.5, 6.0)})


def test_history_counts_enqueued_and_failed_points_as_taken():
    study = optuna.create_study(sampler=make_sampler(SPEC))
    _round(study, 2)
    failed = study.ask(DISTS)
    study.tell(failed, state=TrialState.FAIL)
    study.enqueue_trial({WIDTH_PARAM: 4096, ETA_PARAM: 3.0})
    observed, pending = history(study)
    assert len(observed) == 2 and all(len(p) == 2 for _, _, p in observed)
    assert (4096, 3.0) in pending
    assert (failed.params[WIDTH_PARAM], failed.params[ETA_PARAM]) in pending
    # A proposal never repeats a taken point.
    assert make_sampler(SPEC).propose(observed, pending) not in pending


def test_attribute_style_specs_are_accepted():
    spec = types.SimpleNamespace(**SPEC)
    sampler = make_sampler(spec)
    assert isinstance(sampler, BoundarySampler) and sampler.resolution == 0.01
    assert grid_points(spec) == grid_points(SPEC)


def test_history_reads_old_labels_and_sharpness_flags():
    # A journal of an older sweep holds the label "catapult" and no sharpness flags.
    study = optuna.create_study()
    for eta, phases, sharp in (
        (1.0, ["lazy"], None),
        (3.0, ["catapult"], None),
        (3.5, ["loss_catapult"], [True]),
        (5.0, ["divergent"], [False]),
    ):
        study.enqueue_trial({WIDTH_PARAM: 1024, ETA_PARAM: eta})
        t = study.ask(DISTS)
        t.set_user_attr("phases", phases)
        if sharp is not None:
            t.set_user_attr("sharpness_catapult", sharp)
        study.tell(t, 1.0)
    observed, pending = history(study)
    assert [o[:2] for o in observed] == [(1024, 1.0), (1024, 3.0), (1024, 3.5), (1024, 5.0)]
    assert [o[2] for o in observed] == [
        ("",),
        ("c_loss",),
        ("c_loss+c_sharp",),
        ("c_loss+c_sharp+c_max",),
    ]
    assert pending == []
    t = study.ask(DISTS)
    t.set_user_attr("phases", ["chaotic"])
    study.tell(t, 1.0)
    with pytest.raises(ValueError, match=r"user_attrs\['phases'\]: phase label must be one of"):
        history(study)
