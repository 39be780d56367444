"""Boundary estimates: located toy edges from real engine runs, CIs, transition regions."""

import math

import numpy as np
import pyarrow as pa
import pytest

from ntk_dist.analysis.boundaries import BOUNDARY_SCHEMA, estimate_boundaries
from ntk_dist.distributed.execute import run_jobs
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.models.networks import CatapultToy

DATA = DataSpec(name="single", n_train=1, n_test=0, dim=1)
# A coarse grid plus points on either side of each edge, as a sweep's bisection leaves them.
ETAS = (1.2, 1.6, 1.9, 1.97, 2.03, 2.1, 2.6, 3.2, 3.8, 3.95, 4.05, 4.2, 4.8)


@pytest.fixture(scope="module")
def toy_runs():
    jobs = [
        TrainJob(CatapultToy(n), DATA, e, steps=256, seed=s, lr_units="lambda0")
        for n in (1024, 4096)
        for e in ETAS
        for s in range(3)
    ]
    return run_jobs(jobs)


def _row(table, width, boundary):
    rows = [r for r in table.to_pylist() if r["width"] == width and r["boundary"] == boundary]
    assert len(rows) == 1
    return rows[0]


def test_toy_boundaries_from_engine_runs(toy_runs):
    table = estimate_boundaries(toy_runs, sweep="toy")
    assert table.schema.equals(BOUNDARY_SCHEMA)
    assert table.num_rows == 6
    for width in (1024, 4096):
        crit = _row(table, width, "c_loss")
        sharp = _row(table, width, "c_sharp")
        emax = _row(table, width, "c_max")
        assert 1.9 <= crit["eta_lambda0"] <= 2.15
        assert 3.85 <= emax["eta_lambda0"] <= 4.15
        # The toy's lambda rises only above 4 (docs/theory.md §5): c_sharp = c_max.
        assert sharp["eta_lambda0"] == emax["eta_lambda0"]
        for r in (crit, sharp, emax):
            assert r["ci_low"] <= r["eta_lambda0"] <= r["ci_high"]
            assert r["region_low"] <= r["region_high"]
            assert r["n_runs"] == 3 * len(ETAS) and r["sweep"] == "toy"
        # Labels switch cleanly at the linear-stability edges: the bracket is the region.
        assert (crit["region_low"], crit["region_high"]) == (1.97, 2.03)
        assert (emax["region_low"], emax["region_high"]) == (3.95, 4.05)
        assert not crit["mixed"] and not emax["mixed"]


def test_transition_region_in_absolute_eta_narrows_with_width():
    # At fixed eta the catapult needs eta > 2 / lambda0 of the run's own network;
    # lambda0 fluctuates O(n^{-1/2}), so seeds disagree over a band that narrows with n.
    etas = np.geomspace(0.8, 1.25, 15)
    jobs = [
        TrainJob(CatapultToy(n), DATA, float(e), steps=64, seed=s)
        for n in (128, 4096)
        for e in etas
        for s in range(12)
    ]
    table = estimate_boundaries(run_jobs(jobs), sweep="abs", coordinate="learning_rate")
    narrow, wide = (_row(table, n, "c_loss") for n in (4096, 128))
    assert wide["mixed"]
    assert narrow["region_high"] - narrow["region_low"] < 0.5 * (
        wide["region_high"] - wide["region_low"]
    )
    for r in (narrow, wide):  # eta_crit = 2 / lambda_inf = 1 for the toy
        assert r["ci_low"] <= 1.0 <= r["ci_high"]


def _synthetic(xs_above_below, width=64, depth=1):
    rows = []
    for x, phase in xs_above_below:
        loss = [1.0, 5.0 if phase == "catapult" else 0.5, 0.1]
        rows.append(
            {
                "width": width,
                "depth": depth,
                "activation": "identity",
                "eta_lambda0": x,
                "learning_rate": x / 2,
                "lambda0": 2.0,
                "diverged": phase == "divergent",
                "loss_initial": 1.0,
                "loss_peak": max(loss),
                "peak_step": int(np.argmax(loss)),
                "steps": 2,
                "record_steps": [0, 1, 2],
                "train_loss": loss,
                "lambda_t": [2.0, 2.0, 1.0 if phase == "catapult" else 2.0],
            }
        )
    return pa.Table.from_pylist(rows)


def test_mixed_labels_give_a_region_and_a_bootstrap_interval():
    rng = np.random.default_rng(1)
    xs = rng.uniform(1.5, 2.5, 200)
    # P(catapult) rises smoothly from 0 to 1 across [1.8, 2.2]: the true edge is 2.
    catapult = rng.uniform(size=xs.size) < np.clip((xs - 1.8) / 0.4, 0, 1)
    runs = _synthetic([(x, "catapult" if c else "lazy") for x, c in zip(xs, catapult, strict=True)])
    a = estimate_boundaries(runs, sweep="s", n_boot=200, seed=5)
    b = estimate_boundaries(runs, sweep="s", n_boot=200, seed=5)
    assert a.to_pandas().equals(b.to_pandas())  # NaN-aware
    r = _row(a, 64, "c_loss")
    assert r["mixed"] and 1.75 < r["region_low"] < 2.0 < r["region_high"] < 2.25
    assert r["ci_low"] <= 2.0 <= r["ci_high"] and r["ci_high"] - r["ci_low"] < 0.3
    assert abs(r["eta_lambda0"] - 2.0) < 0.1
    missing = _row(a, 64, "c_max")  # no divergent runs: not located
    assert math.isnan(missing["eta_lambda0"]) and missing["n_above"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sweep": ""}, "sweep must be a non-empty string"),
        ({"sweep": "s", "confidence": 1.5}, r"confidence must be in \(0, 1\)"),
        ({"sweep": "s", "coordinate": "eta"}, "coordinate must be one of"),
        ({"sweep": "s", "n_boot": 0}, "n_boot must be a positive integer"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_boundaries(_synthetic([(1.0, "lazy"), (3.0, "catapult")]), **kwargs)
    with pytest.raises(ValueError, match="missing column"):
        estimate_boundaries(pa.table({"width": [1]}), sweep="s")


def test_one_row_per_width_depth_and_boundary():
    grid = [(x, "lazy" if x < 2 else "catapult" if x < 4 else "divergent") for x in (1, 3, 5)]
    runs = pa.concat_tables(
        [_synthetic(grid, width=w, depth=d) for w in (32, 64) for d in (1, 3, 8)]
    )
    table = estimate_boundaries(runs, sweep="s", n_boot=10)
    keys = list(
        zip(*(table.column(c).to_pylist() for c in ("width", "depth", "boundary")), strict=True)
    )
    assert sorted(keys) == sorted(
        (w, d, b) for w in (32, 64) for d in (1, 3, 8) for b in ("c_loss", "c_sharp", "c_max")
    )
    assert all(r["n_runs"] == 3 for r in table.to_pylist())
