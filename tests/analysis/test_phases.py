"""Phase labels: constructed trajectories, the toy's exact recursion (docs/theory.md §5, §7)
and real engine runs."""

import numpy as np
import pyarrow as pa
import pytest

from ntk_dist.analysis.phases import (
    PHASES,
    classify_runs,
    label_runs,
    phase_codes,
    read_label,
    relabel,
    step_budget,
)
from ntk_dist.distributed.execute import run_jobs
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.models.networks import CatapultToy


def _run(loss, lam, *, eta_lambda0=1.0, diverged=False, **extra):
    """A record whose trajectory is recorded at every step 0..T (T = len(loss) - 1)."""
    loss, lam = np.asarray(loss, float), np.asarray(lam, float)
    finite = np.where(np.isfinite(loss), loss, -np.inf)
    return {
        "diverged": diverged,
        "loss_initial": loss[0],
        "loss_peak": float(finite.max()),
        "peak_step": int(finite.argmax()),
        "eta_lambda0": eta_lambda0,
        "lambda0": lam[0],
        "steps": len(loss) - 1,
        "record_steps": list(range(len(loss))),
        "train_loss": loss.tolist(),
        "lambda_t": lam.tolist(),
        **extra,
    }


def _oracle_record(n, eta_lambda0, steps, *, f0=1.0, lambda0=2.0, factor=1e3):
    """Test oracle: the toy's exact GD recursion for y = 0 (docs/theory.md §5), as a record."""
    eta = eta_lambda0 / lambda0
    f, lam = f0, lambda0
    losses, lams, diverged = [0.5 * f0**2], [lambda0], False
    for _ in range(steps):
        if diverged:  # the engine freezes a diverged run
            losses.append(np.nan)
            lams.append(np.nan)
            continue
        f, lam = (1 - eta * lam + eta**2 * f**2 / n) * f, lam + eta * f**2 / n * (eta * lam - 4)
        loss = 0.5 * f**2
        if not np.isfinite(loss) or loss > factor * n * max(1.0, losses[0]):
            diverged = True
        losses.append(np.nan if diverged else loss)
        lams.append(np.nan if diverged else lam)
    return _run(losses, lams, eta_lambda0=eta_lambda0, diverged=diverged)


def _table(records):
    return pa.Table.from_pylist(records)


def test_sharpness_reduction_without_loss_rise_is_not_a_loss_catapult():
    falls = _run([1.0, 0.6, 0.3, 0.1], [2.0, 1.8, 1.6, 1.5], eta_lambda0=2.5)
    flat = _run([1.0, 0.6, 0.3, 0.1], [2.0, 1.99, 1.98, 1.97], eta_lambda0=1.0)
    labels = classify_runs(_table([falls, flat]))
    assert labels.column("phase").to_pylist() == ["sharpness_reduction", "lazy"]
    assert labels.column("sharpness_catapult").to_pylist() == [False, False]


def test_a_loss_rise_is_a_loss_catapult():
    rise = _run([1.0, 1.4, 3.0, 0.2, 0.01], [2.0, 2.0, 1.5, 1.2, 1.2], eta_lambda0=3.0)
    tiny = _run([1.0, 1.0005, 0.5, 0.2, 0.01], [2.0, 2.0, 2.0, 2.0, 2.0], eta_lambda0=1.9)
    assert label_runs(_table([rise, tiny])).to_pylist() == ["loss_catapult", "lazy"]


def test_lambda_rise_above_lambda0_flags_a_sharpness_catapult():
    up = _run([1.0, 5.0, 0.5, 0.1], [2.0, 2.6, 1.0, 0.9], eta_lambda0=5.0)
    down = _run([1.0, 5.0, 0.5, 0.1], [2.0, 1.9, 1.0, 0.9], eta_lambda0=3.0)
    labels = classify_runs(_table([up, down]))
    assert labels.column("sharpness_catapult").to_pylist() == [True, False]
    assert labels.column("phase").to_pylist() == ["loss_catapult", "loss_catapult"]


def test_divergence_rule_unchanged():
    # The engine's width-scaled flag alone decides divergence, whatever the trajectory.
    dead = _run([1.0, 50.0, np.nan], [2.0, 9.0, np.nan], eta_lambda0=6.0, diverged=True)
    big = _run([1.0, 900.0, 0.5], [2.0, 2.5, 1.0], eta_lambda0=3.5)
    labels = classify_runs(_table([dead, big]))
    assert labels.column("phase").to_pylist() == ["divergent", "loss_catapult"]
    assert labels.column("sharpness_catapult").to_pylist() == [True, True]


def test_early_window_ignores_later_rises():
    late = _run([1.0, 0.8, 0.6, 0.5, 2.0, 0.1], [2.0, 2.0, 2.0, 2.0, 3.0, 1.0])
    assert label_runs(_table([late])).to_pylist() == ["loss_catapult"]
    early = classify_runs(_table([late]), early_steps=3)
    assert early.column("phase").to_pylist() == ["lazy"]
    assert early.column("sharpness_catapult").to_pylist() == [False]


def test_minibatch_noise_is_not_a_catapult():
    sgd = dict(optimizer="sgd", batch_size=4, n_train=16, width=64, depth=2, activation="relu")
    # At eta * lambda0 = 0.5 the full-batch loss wiggles up 2% from noise alone ...
    ref = _run([1.0, 1.02, 0.7, 0.4], [2.0, 2.0, 2.0, 2.0], eta_lambda0=0.5, **sgd)
    # ... so at 3.0 a 10% wiggle is noise (tolerance 3 * (0.02 / 0.5) * 3.0 = 0.36), a
    # doubling is a catapult.
    wiggle = _run([1.0, 1.1, 0.7, 0.4], [2.0, 2.0, 1.99, 1.99], eta_lambda0=3.0, **sgd)
    jump = _run([1.0, 2.0, 0.7, 0.4], [2.0, 2.0, 1.5, 1.5], eta_lambda0=3.0, **sgd)
    # A minibatch catapult at 1.0 (SGD lowers the edges) is no noise reference: only the
    # smallest point is, so it does not inflate the tolerance above it.
    early = _run([1.0, 2.5, 0.7, 0.4], [2.0, 2.0, 1.5, 1.5], eta_lambda0=1.0, **sgd)
    labels = classify_runs(_table([ref, wiggle, jump, early]))
    phases = ["lazy", "lazy", "loss_catapult", "loss_catapult"]
    assert labels.column("phase").to_pylist() == phases
    np.testing.assert_allclose(labels.column("rise_tol").to_pylist()[1], 0.36)
    # Full-batch runs with the same trajectories keep the small tolerance.
    gd = dict(sgd, optimizer="gd", batch_size=None)
    runs = [dict(r, **gd) for r in (ref, wiggle)]
    assert label_runs(_table(runs)).to_pylist() == ["loss_catapult", "loss_catapult"]


@pytest.mark.parametrize(
    ("eta_lambda0", "expected"), [(1.5, "lazy"), (3.0, "loss_catapult"), (4.5, "divergent")]
)
def test_oracle_phases_at_n4096(eta_lambda0, expected):
    labels = label_runs(_table([_oracle_record(4096, eta_lambda0, 300)]))
    assert labels.to_pylist() == [expected]


def test_near_two_short_budget_is_classified_without_convergence():
    # 20 steps: far too few for the catapult at 2.02 to finish (lambda has barely moved) ...
    above = _oracle_record(4096, 2.02, 20)
    below = _oracle_record(4096, 1.98, 20)
    assert above["lambda_t"][-1] * 2.02 / above["lambda0"] > 2.0
    # ... yet the loss already rose, so it is a loss catapult; 1.98 stays lazy.
    assert label_runs(_table([above, below])).to_pylist() == ["loss_catapult", "lazy"]


def test_engine_toy_runs_n4096():
    data = DataSpec(name="single", n_train=1, n_test=0, dim=1)
    etas = (1.5, 3.0, 4.5)
    jobs = [
        TrainJob(CatapultToy(4096), data, e, steps=200, seed=s, lr_units="lambda0")
        for e in etas
        for s in range(3)
    ]
    labels = classify_runs(run_jobs(jobs))
    assert labels.column("phase").to_pylist() == (
        ["lazy"] * 3 + ["loss_catapult"] * 3 + ["divergent"] * 3
    )
    # The toy's lambda rises only for eta * lambda0 > 4 (docs/theory.md §5 recursion).
    assert labels.column("sharpness_catapult").to_pylist() == [False] * 6 + [True] * 3


def test_relabel_reads_old_labels():
    old = _table([dict(_oracle_record(64, 3.0, 40), phase="catapult")])
    new = relabel(old)
    assert new.column("phase").to_pylist() == ["loss_catapult"]
    assert new.column("sharpness_catapult").to_pylist() == [False]
    assert read_label("catapult") == "loss_catapult"
    assert relabel(old.drop(["phase"])).column_names[-2:] == ["phase", "sharpness_catapult"]


def test_phase_codes_and_bad_inputs():
    assert phase_codes(["divergent", "lazy", "loss_catapult"]).tolist() == [3, 0, 2]
    assert phase_codes(["catapult", "sharpness_reduction"]).tolist() == [2, 1]
    assert PHASES == ("lazy", "sharpness_reduction", "loss_catapult", "divergent")
    with pytest.raises(ValueError, match=r"labels\[1\] must be one of"):
        phase_codes(["lazy", "chaotic"])
    with pytest.raises(ValueError, match="missing column"):
        label_runs(pa.table({"diverged": [False]}))
    with pytest.raises(ValueError, match="rise_rtol must be >= 0"):
        label_runs(_table([_oracle_record(64, 1.0, 5)]), rise_rtol=-1)
    with pytest.raises(ValueError, match="early_steps must be a positive"):
        label_runs(_table([_oracle_record(64, 1.0, 5)]), early_steps=0)


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


@pytest.mark.slow  # one compiled FC program
def test_sgd_records_and_labels_the_full_batch_loss():
    # At a vanishing learning rate the full-batch loss stays at L_0 at every step, while
    # the loss of each step's minibatch of 2 would differ from L_0 by O(1) from batch
    # to batch: the record holds the full-batch loss, so no rise and no catapult.
    from ntk_dist.models.networks import FCNetwork
    from ntk_dist.theory.architecture import FC

    data = DataSpec(name="gaussian", n_train=8, dim=3)
    net = FCNetwork.from_arch(FC(1, "relu"), 16)
    job = TrainJob(net, data, 1e-9, steps=8, optimizer="sgd", batch_size=2, lr_units="lambda0")
    run = run_jobs([job])
    loss = np.asarray(run.column("train_loss")[0].as_py())
    np.testing.assert_allclose(loss, run.column("loss_initial")[0].as_py(), rtol=1e-6)
    assert label_runs(run).to_pylist() == ["lazy"]
