"""The training engine against the catapult toy's exact recursion and its phases.

docs/theory.md §5: for one sample x = 1 and y = 0, with lambda_t = (|u|^2 + |v|^2) / n,
    f_{t+1} = f_t - eta g_t lambda_t + eta^2 g_t^2 f_t / n,
    lambda_{t+1} = lambda_t + (eta g_t / n) (eta g_t lambda_t - 4 f_t),  g_t = f_t - y.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_dist.engine.data import DataSpec, load
from ntk_dist.engine.jobs import TrainJob, record_schedule
from ntk_dist.engine.records import RECORD_SCHEMA
from ntk_dist.engine.train import initial_params, train, train_batch
from ntk_dist.models.empirical import empirical_ntk
from ntk_dist.models.hessian import hessian_sharpness
from ntk_dist.models.networks import CatapultToy, FCNetwork
from tests.tolerances import rtol

TOY_STEPS = 200
TOY_RATES = {64: (0.5, 1.9, 2.5, 3.5), 4096: (0.5, 1.5, 1.9, 2.5, 3.0, 3.5, 4.5)}
F_FLOOR = 1e-4
SINGLE = DataSpec(name="single", n_train=1, dim=1)


def _toy_jobs(n):
    return [
        TrainJob(
            CatapultToy(width=n),
            SINGLE,
            rate,
            steps=TOY_STEPS,
            seed=7,
            lr_units="lambda0",
            record=tuple(range(TOY_STEPS + 1)),
            tag=f"toy-{n}-{rate}",
        )
        for rate in TOY_RATES[n]
    ]


@functools.cache
def _toy_batch(n):
    jobs = _toy_jobs(n)
    return jobs, train_batch(jobs).to_pylist()


def _recursion(f, lam, eta, n, y, steps):
    fs, lams = [f], [lam]
    for _ in range(steps):
        g = f - y
        f, lam = (
            f - eta * g * lam + eta**2 * g**2 * f / n,
            lam + (eta * g / n) * (eta * g * lam - 4 * f),
        )
        fs.append(f)
        lams.append(lam)
    return np.array(fs), np.array(lams)


@pytest.mark.parametrize("n", sorted(TOY_RATES))
def test_toy_gd_matches_exact_recursion(n):
    jobs, rows = _toy_batch(n)
    for job, row in zip(jobs, rows, strict=True):
        if job.learning_rate > 4:
            continue  # divergent: checked in test_toy_phases
        p = initial_params(job)
        n = job.model.width
        u, v = np.asarray(p["u"]), np.asarray(p["v"])
        f0 = float(v[:, 0] @ u[:, 0]) / np.sqrt(n)
        lam0 = float(np.sum(u**2) + np.sum(v**2)) / n
        eta = job.learning_rate / lam0
        assert row["lambda0"] == pytest.approx(lam0, rel=rtol(np.float64))
        assert row["learning_rate"] == pytest.approx(eta, rel=rtol(np.float64))
        fs, lams = _recursion(f0, lam0, eta, n, 0.0, TOY_STEPS)
        # lambda to 1e-9 relative at every step. The loss to 1e-9 relative while |f| is
        # above F_FLOOR; below it GD's f = v.u / sqrt(n) sits at its roundoff floor
        # (~1e-16 |u||v| / sqrt(n) ~ 1e-14 at n = 4096) where the recursion keeps
        # shrinking, so there both must agree to 1e-9 * F_FLOOR in f.
        loss_gd = np.array(row["train_loss"])
        big = np.abs(fs) >= F_FLOOR
        assert big[0], job.tag
        np.testing.assert_allclose(loss_gd[big], 0.5 * fs[big] ** 2, rtol=1e-9, err_msg=job.tag)
        np.testing.assert_allclose(
            np.sqrt(2 * loss_gd[~big]), np.abs(fs[~big]), rtol=0, atol=1e-9 * F_FLOOR
        )
        np.testing.assert_allclose(row["lambda_t"], lams, rtol=1e-9, err_msg=job.tag)


def test_toy_phases_at_width_4096():
    jobs, rows = _toy_batch(4096)
    by_rate = {job.learning_rate: row for job, row in zip(jobs, rows, strict=True)}

    lazy = by_rate[1.5]
    losses = np.array(lazy["train_loss"])
    assert np.all(np.diff(losses) <= 0)
    assert abs(lazy["lambda_final"] / lazy["lambda0"] - 1) < 0.01
    assert not lazy["diverged"] and lazy["peak_step"] == 0

    cat = by_rate[3.0]
    assert cat["loss_peak"] > 10 * cat["loss_initial"] and cat["peak_step"] > 0
    assert cat["loss_final"] < 1e-12 * cat["loss_peak"]
    assert cat["lambda_final"] < 2 / cat["learning_rate"]
    assert not cat["diverged"] and cat["diverged_step"] is None

    div = by_rate[4.5]
    assert div["diverged"] and 0 < div["diverged_step"] < TOY_STEPS
    t = div["diverged_step"]
    assert np.all(np.isnan(div["train_loss"][t + 1 :]))
    assert np.isnan(div["loss_final"]) and np.isnan(div["lambda_final"])
    assert div["peak_step"] < t

    # The divergent job in the batch leaves its neighbours untouched.
    alone = train(jobs[list(by_rate).index(3.0)]).to_pylist()[0]
    for key in ("train_loss", "lambda_t", "loss_peak", "peak_step", "param_change"):
        np.testing.assert_allclose(alone[key], cat[key], rtol=1e-10, err_msg=key)


def test_record_columns_match_schema():
    _, rows = _toy_batch(64)
    assert set(rows[0]) == set(RECORD_SCHEMA.names)
    assert rows[0]["record_steps"] == list(range(TOY_STEPS + 1))
    assert rows[0]["test_loss"] is None and rows[0]["sup_lin_gap"] is None


def test_record_schedule_dense_then_log():
    sched = record_schedule(10_000, dense=32, num=64)
    assert sched[:33] == tuple(range(33)) and sched[-1] == 10_000
    gaps = np.diff(sched[32:])
    assert np.all(gaps >= 1) and np.all(np.diff(gaps) >= -1)
    assert record_schedule(5) == (0, 1, 2, 3, 4, 5)


# --- batching: a vmapped batch gives the same records as each job alone -------------

_FC = FCNetwork.make(depth=1, width=32, activation="tanh", sigma_w=1.2, sigma_b=0.1)
_DATA = DataSpec(name="teacher", n_train=6, n_test=4, dim=2, noise=0.05, seed=2)


def _phase(row):
    if row["diverged"]:
        return "divergent"
    return "catapult" if row["loss_peak"] > row["loss_initial"] else "lazy"


def test_batch_of_64_equals_each_job_alone():
    # _FC on four data sets: each job alone runs the one compiled program of the _FC
    # tests below (16 record steps or fewer share a program, see RECORD_BUCKET), the
    # batch of 64 runs as 8 chunks of 8. Peaks and divergence are tracked at every step.
    jobs = [
        TrainJob(
            _FC,
            dataclasses.replace(_DATA, seed=s),
            rate,
            steps=60,
            seed=s,
            lr_units="lambda0",
            record=tuple(range(0, 61, 4)),
        )
        for rate in np.geomspace(0.3, 40.0, 16)
        for s in range(4)
    ]
    batch = train_batch(jobs).to_pylist()
    phases = set()
    for job, row in zip(jobs, batch, strict=True):
        alone = train(job).to_pylist()[0]
        phase = _phase(row)
        phases.add(phase)
        assert _phase(alone) == phase
        assert alone["diverged_step"] == row["diverged_step"]
        assert alone["peak_step"] == row["peak_step"]
        if phase == "lazy":
            for key in ("train_loss", "lambda_t", "param_change", "lambda0", "loss_final"):
                np.testing.assert_allclose(alone[key], row[key], rtol=1e-10, err_msg=key)
    assert phases == {"lazy", "catapult", "divergent"}


# --- linearised twin --------------------------------------------------------------


def test_linearised_gap_shrinks_with_width():
    # Lee et al. 2019: sup_t ||f_t - f_lin,t|| = O(n^{-1/2}) or faster (about n^{-0.95} is
    # measured here over 10 steps). The per-seed log gap has a standard deviation of ~1.7
    # at width 64 and ~1.1 at 1024, so the geometric means of 16 seeds have standard
    # errors of ~0.43 and ~0.27 in log and the slope between the two widths (a factor 16,
    # as between the ends of 64, 256, 1024: the middle width adds no precision to the
    # slope) one of ~0.18: -0.4 is 3 SE above the expected -0.95, and a twin trained off
    # the network's own step (a gap of O(1) at every width) has slope ~0. Each width is
    # one compiled program; the step count is a runtime value.
    # float32: the gaps (1e-4..1e-2) are far above float32 roundoff of f ~ 1.
    widths = (64, 1024)
    data = DataSpec(name="cubic", n_train=5, noise=0.01, seed=1)
    gaps = []
    for width in widths:
        net = FCNetwork.make(depth=2, width=width, activation="erf", sigma_w=1.5, sigma_b=0.05)
        jobs = [
            TrainJob(
                net,
                data,
                1.0,
                steps=10,
                seed=s,
                lr_units="lambda0",
                linearised=True,
                record=(0,),
                dtype="float32",
            )
            for s in range(16)
        ]
        per_seed = train_batch(jobs).column("sup_lin_gap").to_numpy()
        gaps.append(np.exp(np.mean(np.log(per_seed))))
    assert np.all(np.diff(gaps) < 0), gaps
    slope = np.polyfit(np.log(widths), np.log(gaps), 1)[0]
    assert slope < -0.4, (gaps, slope)


def test_toy_lazy_sharpness_change_is_order_one_over_width():
    # Lewkowycz et al. 2020, Thm 1: in the lazy phase |lambda_T - lambda0| = O(1/n).
    widths = (256, 2048, 16384)
    changes = []
    for n in widths:
        jobs = [
            TrainJob(CatapultToy(width=n), SINGLE, 1.0, steps=60, seed=s, lr_units="lambda0")
            for s in range(8)
        ]
        rows = train_batch(jobs).to_pylist()
        changes.append(np.mean([abs(r["lambda_final"] - r["lambda0"]) for r in rows]))
    slope = np.polyfit(np.log(widths), np.log(changes), 1)[0]
    assert -1.3 < slope < -0.7, (changes, slope)


def _heavy_ball_toy(u, v, eta, mu, steps):
    """Heavy-ball GD on the toy's loss (f - 0)^2 / 2, x = 1, written out by hand."""
    n = u.shape[0]
    du, dv = np.zeros_like(u), np.zeros_like(v)
    losses = []
    for _ in range(steps + 1):
        f = float(v @ u) / np.sqrt(n)
        losses.append(0.5 * f**2)
        gu, gv = f * v / np.sqrt(n), f * u / np.sqrt(n)
        du, dv = mu * du - eta * gu, mu * dv - eta * gv
        u, v = u + du, v + dv
    return np.array(losses)


def test_momentum_matches_handwritten_heavy_ball():
    job = TrainJob(
        CatapultToy(width=32), SINGLE, 0.3, steps=25, seed=3, optimizer="momentum", momentum=0.7
    )
    row = train(job).to_pylist()[0]
    p = initial_params(job)
    want = _heavy_ball_toy(np.asarray(p["u"][:, 0]), np.asarray(p["v"][:, 0]), 0.3, 0.7, 25)
    np.testing.assert_allclose(row["train_loss"], want, rtol=1e-10)
    assert row["momentum"] == 0.7 and row["learning_rate"] == 0.3


def test_sgd_with_full_batch_is_gd_and_minibatches_are_seeded():
    common = dict(steps=30, lr_units="lambda0", record=(0, 10, 30))
    gd = train(TrainJob(_FC, _DATA, 1.0, seed=1, **common)).to_pylist()[0]
    full = train(
        TrainJob(_FC, _DATA, 1.0, seed=1, optimizer="sgd", batch_size=6, **common)
    ).to_pylist()[0]
    np.testing.assert_allclose(full["train_loss"], gd["train_loss"], rtol=1e-12)
    jobs = [
        TrainJob(_FC, _DATA, 1.0, seed=s, optimizer="sgd", batch_size=2, **common)
        for s in (1, 1, 2)
    ]
    a, b, c = train_batch(jobs).to_pylist()
    assert a["train_loss"] == b["train_loss"]
    assert a["train_loss"] != gd["train_loss"]
    assert a["loss_final"] < 0.5 * a["loss_initial"] and c["loss_final"] < 0.5 * c["loss_initial"]


def test_probe_ntk_predictions_and_test_loss():
    job = TrainJob(
        _FC,
        _DATA,
        0.5,
        steps=20,
        seed=4,
        lr_units="lambda0",
        probe_points=3,
        predict_test=True,
        record=(0, 5, 20),
    )
    row = train(job).to_pylist()[0]
    p = initial_params(job)
    data = load(_DATA)
    ntk0 = empirical_ntk(_FC, p, jnp.asarray(data.x_train[:3]), implementation="jacobian")
    np.testing.assert_allclose(row["probe_ntk"][0], np.ravel(ntk0), rtol=1e-10)
    assert len(row["probe_ntk"]) == 3 and len(row["probe_ntk"][0]) == 9
    np.testing.assert_allclose(row["test_pred"][0], np.ravel(_FC.apply(p, data.x_test)), rtol=1e-12)
    for pred, loss in zip(row["test_pred"], row["test_loss"], strict=True):
        want = 0.5 * np.sum((np.array(pred) - data.y_test[:, 0]) ** 2) / 4
        assert loss == pytest.approx(want, rel=1e-10)
    # The NTK moves, but little, in the lazy regime of a width-32 net.
    drift = np.linalg.norm(np.subtract(row["probe_ntk"][-1], row["probe_ntk"][0]))
    assert 0 < drift < 0.5 * np.linalg.norm(row["probe_ntk"][0])


def test_absolute_learning_rate_and_float32():
    common = dict(steps=40, seed=5, record=(0, 20, 40))
    r64 = train(TrainJob(_FC, _DATA, 0.2, **common)).to_pylist()[0]
    r32 = train(TrainJob(_FC, _DATA, 0.2, dtype="float32", **common)).to_pylist()[0]
    assert r64["learning_rate"] == 0.2 and r64["lr_units"] == "absolute"
    assert r64["eta_lambda0"] == pytest.approx(0.2 * r64["lambda0"], rel=1e-15)
    np.testing.assert_allclose(r32["train_loss"], r64["train_loss"], rtol=rtol(np.float32) * 10)
    assert r32["dtype"] == "float32"


# --- bad job definitions --------------------------------------------------------------

_TOY = CatapultToy(width=8)


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: TrainJob(CatapultToy(width=0), SINGLE, 1.0, steps=5), "width"),
        (lambda: TrainJob(FCNetwork.make(depth=1, width=-4), SINGLE, 1.0, steps=5), "width"),
        (lambda: TrainJob(_TOY, SINGLE, 0.0, steps=5), "learning_rate"),
        (lambda: TrainJob(_TOY, SINGLE, -1.0, steps=5), "learning_rate"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=0), "steps"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, optimizer="adam"), "optimizer"),
        (lambda: TrainJob(_TOY, DataSpec(name="mnist"), 1.0, steps=5), "data.name"),
        (
            lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, optimizer="sgd", batch_size=2),
            "batch_size",
        ),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, optimizer="sgd"), "batch_size"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, lr_units="eta"), "lr_units"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, dtype="float16"), "dtype"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, sharpness="gn"), "sharpness"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, seed=-1), "seed"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, momentum=0.5), "momentum"),
        (
            lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, optimizer="momentum", momentum=1.0),
            "momentum",
        ),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, record=(0, 9)), "record"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, predict_test=True), "predict_test"),
        (lambda: TrainJob(_TOY, SINGLE, 1.0, steps=5, probe_points=2), "probe_points"),
        (lambda: TrainJob(CatapultToy(width=8, out_dim=2), SINGLE, 1.0, steps=5), "out_dim"),
        (
            lambda: TrainJob(FCNetwork((8, 8), activation=["erf", "relu"]), SINGLE, 1.0, steps=5),
            "per-layer activation",
        ),
        (
            lambda: TrainJob(FCNetwork((8,), sigma_w=[1.0, 2.0]), SINGLE, 1.0, steps=5),
            "per-layer sigma_w",
        ),
    ],
)
def test_bad_jobs_raise_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_train_batch_rejects_mixed_shapes():
    a = TrainJob(_TOY, SINGLE, 1.0, steps=5)
    b = TrainJob(CatapultToy(width=16), SINGLE, 1.0, steps=5)
    with pytest.raises(ValueError, match="plan_batches"):
        train_batch([a, b])
    with pytest.raises(ValueError, match="empty"):
        train_batch([])


def test_initial_params_are_the_training_start():
    job = TrainJob(_TOY, SINGLE, 0.1, steps=3)
    p = initial_params(job)
    row = train(job).to_pylist()[0]
    f0 = float(jnp.sum(p["u"][:, 0] * p["v"][:, 0])) / np.sqrt(8)
    assert row["loss_initial"] == pytest.approx(0.5 * f0**2, rel=1e-12)
    assert p["u"].dtype == jnp.float64 and jax.tree_util.tree_leaves(p)[0].shape == (8, 1)


def test_training_names_are_exported():
    import ntk_dist

    for name in (
        "TrainJob",
        "DataSpec",
        "train_batch",
        "run_jobs",
        "submit_jobs",
        "plan_batches",
        "RECORD_SCHEMA",
        "Resources",
        "initial_params",
    ):
        assert name in ntk_dist.__all__ and getattr(ntk_dist, name) is not None


def test_standard_parameterisation_with_hessian_sharpness_on_digits():
    # Kalra & Barkeshli's setting in miniature: SP, relu, no biases, sigma_w^2 = 2 in the
    # hidden layer and 1 in the readout, eta = c / lambda0^H.
    net = FCNetwork(
        (16,), 10, "relu", 2**0.5, 0.0, parameterization="standard", readout_sigma_w=1.0
    )
    job = TrainJob(
        net,
        DataSpec("digits", n_train=6, dim=64, standardise=True),
        1.5,
        steps=2,
        lr_units="lambda0",
        sharpness="hessian",
    )
    row = train(job).to_pylist()[0]
    assert (row["parameterization"], row["sharpness"], row["readout_sigma_w"]) == (
        "standard",
        "hessian",
        1.0,
    )
    data = load(job.data)
    x, y = data.x_train, data.y_train
    p0 = initial_params(job)
    with jax.enable_x64(True):
        lam0 = float(hessian_sharpness(net, p0, x, y))
        loss = lambda p: 0.5 * jnp.sum((net.apply(p, x) - y) ** 2) / x.shape[0]
        eta = 1.5 / lam0
        p1 = jax.tree_util.tree_map(lambda q, g: q - eta * g, p0, jax.grad(loss)(p0))
        loss1 = float(loss(p1))
    np.testing.assert_allclose(row["lambda0"], lam0, rtol=1e-10)
    np.testing.assert_allclose(row["lambda_t"][0], lam0, rtol=1e-10)
    np.testing.assert_allclose(row["learning_rate"], eta, rtol=1e-12)
    np.testing.assert_allclose(row["train_loss"][1], loss1, rtol=1e-10)
