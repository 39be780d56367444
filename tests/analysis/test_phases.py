"""Phase labels: against the toy's exact recursion (docs/theory.md §5) and real engine runs."""

import numpy as np
import pyarrow as pa
import pytest

from ntk_dist.analysis.phases import PHASES, label_runs, phase_codes, step_budget
from ntk_dist.distributed.execute import run_jobs
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.models.networks import CatapultToy


def _oracle_record(n, eta_lambda0, steps, *, f0=1.0, lambda0=2.0, factor=1e3):
    """Test oracle: the toy's exact GD recursion for y = 0 (docs/theory.md §5), as a record."""
    eta = eta_lambda0 / lambda0
    f, lam = f0, lambda0
    loss0 = 0.5 * f0**2
    peak, diverged = loss0, False
    for _ in range(steps):
        f, lam = (1 - eta * lam + eta**2 * f**2 / n) * f, lam + eta * f**2 / n * (eta * lam - 4)
        loss = 0.5 * f**2
        if not np.isfinite(loss) or loss > factor * n * max(1.0, loss0):
            diverged = True
            break
        peak = max(peak, loss)
    return {
        "diverged": diverged,
        "loss_initial": loss0,
        "loss_peak": peak,
        "eta_lambda0": eta_lambda0,
        "lambda0": lambda0,
        "lambda_final": np.nan if diverged else lam,
    }


def _table(records):
    return pa.Table.from_pylist(records)


@pytest.mark.parametrize(
    ("eta_lambda0", "expected"), [(1.5, "lazy"), (3.0, "catapult"), (4.5, "divergent")]
)
def test_oracle_phases_at_n4096(eta_lambda0, expected):
    labels = label_runs(_table([_oracle_record(4096, eta_lambda0, 300)]))
    assert labels.to_pylist() == [expected]


def test_near_two_short_budget_is_classified_without_convergence():
    # 20 steps: far too few for the catapult at 2.02 to finish (lambda has barely moved) ...
    above = _oracle_record(4096, 2.02, 20)
    below = _oracle_record(4096, 1.98, 20)
    assert above["lambda_final"] * 2.02 / above["lambda0"] > 2.0
    # ... yet the loss already rose, so it is a catapult; 1.98 stays lazy.
    assert label_runs(_table([above, below])).to_pylist() == ["catapult", "lazy"]


def test_crossing_the_edge_without_loss_rise_is_catapult():
    # Loss never above its start, but lambda went from above 2/eta to below it.
    rec = {
        "diverged": False,
        "loss_initial": 1.0,
        "loss_peak": 1.0,
        "eta_lambda0": 2.5,
        "lambda0": 2.0,
        "lambda_final": 1.5,
    }
    lazy = dict(rec, eta_lambda0=1.9, lambda_final=1.99)
    assert label_runs(_table([rec, lazy])).to_pylist() == ["catapult", "lazy"]


def test_engine_toy_runs_n4096():
    data = DataSpec(name="single", n_train=1, n_test=0, dim=1)
    etas = (1.5, 3.0, 4.5)
    jobs = [
        TrainJob(CatapultToy(4096), data, e, steps=200, seed=s, lr_units="lambda0")
        for e in etas
        for s in range(3)
    ]
    labels = label_runs(run_jobs(jobs)).to_pylist()
    assert labels == ["lazy"] * 3 + ["catapult"] * 3 + ["divergent"] * 3


def test_phase_codes_and_bad_inputs():
    assert phase_codes(["divergent", "lazy", "catapult"]).tolist() == [2, 0, 1]
    assert PHASES == ("lazy", "catapult", "divergent")
    with pytest.raises(ValueError, match=r"labels\[1\] must be one of"):
        phase_codes(["lazy", "chaotic"])
    with pytest.raises(ValueError, match="missing column"):
        label_runs(pa.table({"diverged": [False]}))
    with pytest.raises(ValueError, match="rise_rtol must be >= 0"):
        label_runs(_table([_oracle_record(64, 1.0, 5)]), rise_rtol=-1)


def test_step_budget_scales_with_distance_to_the_edges():
    far = step_budget(4096, 3.0)
    near = step_budget(4096, 2.01)
    assert near > far
    assert step_budget(4096, 2.0) == 4096  # capped
    assert step_budget(1 << 20, 3.0) >= step_budget(1024, 3.0)  # ln(n) growth
    for x in (1.0, 1.9, 2.05, 3.0, 3.99, 4.5):
        t = step_budget(1024, x)
        assert t >= 64 and (t == 4096 or (t & (t - 1)) == 0 and t % 64 == 0)
    assert step_budget(1024, 11.9, eta_max=12.0) > step_budget(1024, 11.9)
    with pytest.raises(ValueError, match="cap must be >= base"):
        step_budget(1024, 3.0, base=128, cap=64)
