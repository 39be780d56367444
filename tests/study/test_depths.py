"""Sweeps over several depths: the spec's depth list, groups (width, depth) in the search
and the sampler, and one located boundary per (width, depth, boundary)."""

import math
from collections import Counter

import pytest

from ntk_dist.analysis.boundaries import estimate_boundaries
from ntk_dist.distributed.execute import run_jobs
from ntk_dist.study.results import RUN_SCHEMA
from ntk_dist.study.samplers import BoundarySampler, outcome
from ntk_dist.study.search import DEPTH_PARAM, ETA_PARAM, WIDTH_PARAM, grid_points
from ntk_dist.study.spec import parse_spec
from ntk_dist.study.trials import distributions, next_round, open_study, point_keys, recover

FC = {
    "name": "depths",
    "model": {"kind": "fc", "widths": [8, 16], "depth": [1, 3], "activation": "relu"},
    "data": {"name": "gaussian", "n_train": 4, "dim": 2},
    "training": {"seeds": 1, "steps": 16, "dtype": "float64"},
    "search": {"eta_lambda0": [0.5, 40.0], "n_trials": 8, "parallel": 8},
}


def test_depth_list_spec_makes_width_depth_groups():
    spec = parse_spec(FC)
    assert spec.model.depths == (1, 3)
    assert list(distributions(spec)) == [WIDTH_PARAM, DEPTH_PARAM, ETA_PARAM]
    assert spec.job(8, 2.0, 0, "k", 3).model.depth == 3
    assert spec.job(8, 2.0, 0, "k").model.depth == 1
    k1, k3 = spec.run_key(8, 2.0, 0, 1), spec.run_key(8, 2.0, 0, 3)
    assert k1 != k3 and ":d3:" in k3
    # One depth: run keys as before (no depth part), so existing sweeps keep their keys.
    one = parse_spec({**FC, "model": {**FC["model"], "depth": 2}})
    assert ":d" not in one.run_key(8, 2.0, 0, 2) and one.search_view["depths"] is None
    points = grid_points(spec.search_view)
    assert {(p[WIDTH_PARAM], p[DEPTH_PARAM]) for p in points} == {
        (w, d) for w in (8, 16) for d in (1, 3)
    }


@pytest.mark.parametrize(
    ("depth", "words"),
    [([1, 1], "depths must be distinct"), ([], "must not be empty"), ([0, 2], "")],
)
def test_bad_depth_lists_are_rejected(depth, words):
    with pytest.raises(ValueError, match=f"f.yaml: model.depth.*{words}"):
        parse_spec({**FC, "model": {**FC["model"], "depth": depth}}, "f.yaml")


def test_an_experiment_takes_one_depth():
    spec = {
        "name": "e",
        "experiment": "width_scaling",
        "model": {"kind": "fc", "widths": [8], "depth": [1, 2]},
        "training": {"steps": 4, "learning_rate": 0.1},
    }
    with pytest.raises(ValueError, match="an experiment takes one model.depth"):
        parse_spec(spec, "e.yaml")


def _edge(depth):
    """Made-up edges that move with depth: c_loss = 2 + (depth - 1) / 2, c_max = 3 c_loss."""
    return 2 + (depth - 1) / 2, 3 * (2 + (depth - 1) / 2)


def test_sampler_bisects_every_boundary_of_every_group():
    sampler = BoundarySampler(widths=[8, 16], depths=[1, 3], eta_low=0.5, eta_high=40.0)
    observed, pending = [], []
    for _ in range(4 * 24):
        group, eta = sampler.propose(observed, pending)
        lo, hi = _edge(group[1])
        label = "lazy" if eta < lo else "loss_catapult" if eta < hi else "divergent"
        sharp = eta >= hi
        observed.append((group, eta, outcome([label], [sharp])))
    for group in [(w, d) for w in (8, 16) for d in (1, 3)]:
        etas = sorted(e for g, e, _ in observed if g == group)
        for edge in _edge(group[1]):
            below = max(e for e in etas if e < edge)
            above = min(e for e in etas if e >= edge)
            assert above / below - 1 < 0.02, (group, edge, below, above)


def test_depth_sweep_trials_carry_the_depth_into_run_keys(tmp_path):
    spec = parse_spec(FC)
    study = open_study(spec, tmp_path)
    recover(study, spec, RUN_SCHEMA.empty_table())
    trials = next_round(spec, study)
    groups = {(t.params[WIDTH_PARAM], t.params[DEPTH_PARAM]) for t in trials}
    assert groups == {(w, d) for w in (8, 16) for d in (1, 3)}  # the coarse grid covers all
    for t in trials:
        (key,) = point_keys(spec, t.params)
        assert key == spec.run_key(t.params[WIDTH_PARAM], t.params[ETA_PARAM], 0, t.params["depth"])


@pytest.mark.slow  # two compiled FC programs (about 20 s each on a loaded 2-core box)
def test_depth_list_spec_gives_one_boundary_row_per_width_depth_and_boundary():
    # One width, so two compiled programs (one per depth); 2 points per group.
    model = {**FC["model"], "widths": [8], "depth": [1, 2]}
    spec = parse_spec({**FC, "model": model, "search": {**FC["search"], "n_trials": 4}})
    points = grid_points(spec.search_view)
    jobs = [
        spec.job(p[WIDTH_PARAM], p[ETA_PARAM], 0, f"k{i}", p[DEPTH_PARAM])
        for i, p in enumerate(points)
    ]
    runs = run_jobs(jobs)
    groups = {(8, 1), (8, 2)}
    assert set(zip(runs["width"].to_pylist(), runs["depth"].to_pylist(), strict=True)) == groups
    bounds = estimate_boundaries(runs, sweep="depths", n_boot=20)
    cols = [bounds[c].to_pylist() for c in ("width", "depth", "boundary")]
    keys = sorted(zip(*cols, strict=True))
    assert keys == sorted((w, d, b) for w, d in groups for b in ("c_loss", "c_sharp", "c_max"))
    per_group = Counter(zip(runs["width"].to_pylist(), runs["depth"].to_pylist(), strict=True))
    for r in bounds.to_pylist():
        assert r["n_runs"] == per_group[r["width"], r["depth"]] == 2
        assert math.isnan(r["eta_lambda0"]) or r["ci_low"] <= r["eta_lambda0"] <= r["ci_high"]
