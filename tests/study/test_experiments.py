"""Fixed-grid experiments (docs/theory.md §6): specs, new engine records, physics at small size."""

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ntk_dist import empirical_ntk, initial_params, ntk_matrix
from ntk_dist.engine.data import DataSpec, load
from ntk_dist.study.experiments import run_experiment
from ntk_dist.study.spec import ExperimentSpec, load_spec, parse_spec

REPRODUCTIONS = [
    "finite_vs_infinite",
    "ensemble",
    "ntk_convergence",
    "width_scaling_fc",
    "width_scaling_toy",
]


def _spec(**overrides) -> ExperimentSpec:
    body = dict(
        name="ens",
        experiment="ensemble",
        model=dict(kind="fc", depth=2, widths=[128], activation="erf", sigma_w=1.5, sigma_b=0.05),
        data=dict(name="cubic", n_train=5, n_test=17, noise=0.01, test_grid=True),
        training=dict(
            steps=200,
            learning_rate=1.0,
            lr_units="lambda_inf",
            seeds=24,
            predict_test=True,
            record_steps=[0, 50, 200],
        ),
    )
    for key, value in overrides.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value
    return parse_spec(body)


def test_test_grids():
    circle = load(DataSpec(name="product", dim=2, n_train=3, n_test=16, test_grid=True))
    x = circle.x_test
    np.testing.assert_allclose(x[0], [1.0, 0.0])
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    angles = np.sort(np.arctan2(x[:, 1], x[:, 0]))
    np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 16)
    np.testing.assert_allclose(circle.y_test[:, 0], x[:, 0] * x[:, 1])
    cubic = load(DataSpec(name="cubic", n_train=5, n_test=11, test_grid=True))
    np.testing.assert_allclose(cubic.x_test[:, 0], np.linspace(0, 1, 11))
    np.testing.assert_allclose(cubic.y_test, cubic.x_test**3)
    with pytest.raises(ValueError, match="data.test_grid"):
        DataSpec(name="gaussian", dim=3, n_test=4, test_grid=True)


def test_lambda_inf_is_the_wide_network_sharpness():
    """lambda_inf against finite networks of the spec's own architecture: the top
    eigenvalue of the empirical Theta_hat(X, X) / m averaged over 64 initialisations of
    width 512, within 4 standard errors of the 64 per-network sharpnesses (SE ~0.8% of
    lambda_inf; the O(1/n) finite-width shift of the mean, ~2e-3 relative, is far below
    4 SE)."""
    spec = _spec()
    lam = spec.lambda_inf()
    x = load(spec.data.build()).x_train
    net = spec.model.build(512)
    inits = [net.init(jax.random.PRNGKey(s), 1, jnp.float64) for s in range(64)]
    thetas = [np.asarray(ntk_matrix(empirical_ntk(net, p, x))) for p in inits]
    each = np.array([np.linalg.eigvalsh(t)[-1] for t in thetas]) / len(x)
    se = each.std(ddof=1) / np.sqrt(len(each))
    mean_top = np.linalg.eigvalsh(np.mean(thetas, axis=0))[-1] / len(x)
    assert se < 0.02 * lam  # sharp enough to tell a wrong lambda_inf (e.g. a lost / m)
    assert abs(mean_top - lam) < 4 * se, (mean_top, lam, se)


def test_lambda_inf_units_give_one_absolute_rate():
    spec = _spec()
    lam = spec.lambda_inf()
    etas = [job.learning_rate for job in spec.jobs()]
    assert etas == [pytest.approx(1.0 / lam, rel=1e-12)] * 24
    assert {job.lr_units for job in spec.jobs()} == {"absolute"}


def test_ensemble_matches_ntk_gp_and_resumes(ray_local, tmp_path):
    """docs/theory.md §6.2 at small size: 24 networks of width 128 against the NTK-GP at the
    same gradient-descent step, with standard errors from the ensemble itself."""
    spec = _spec()
    runs = run_experiment(spec, tmp_path, progress=False)
    assert runs.num_rows == 24 and len(set(runs.column("run_key").to_pylist())) == 24
    ref = pq.read_table(tmp_path / "reference.parquet").to_pandas()
    for step_index, step in enumerate([50, 200]):
        pred = np.array([r[step_index + 1] for r in runs.column("test_pred").to_pylist()])
        r = ref[(ref.step == step) & (ref.split == "test")].sort_values("index")
        mean, sd = pred.mean(0), pred.std(0, ddof=1)
        z = (mean - r.gp_mean.to_numpy()) / (sd / np.sqrt(len(pred)))
        assert np.mean(np.abs(z) < 3) >= 0.9, z
        # A sample std of 24 Gaussians has relative SE 1/sqrt(46) = 0.15: a factor 1.5 is
        # about 3 SE above (and 2.7 below), so >= 90% of points must fall inside.
        ratio = sd / np.sqrt(r.gp_var.to_numpy())
        assert np.mean((ratio > 1 / 1.5) & (ratio < 1.5)) >= 0.9, ratio
    # Resume: keep 1 run of each stored batch (4 of 24, no batch whole); rerunning trains
    # exactly the other 20, as four batches of 5: the chunk size (8) of the batches of 6,
    # so the workers reuse the programs they compiled for the first run.
    parts = sorted((tmp_path / "runs").glob("*.parquet"))
    assert len(parts) == 4  # 24 jobs, 2 task slots: two batches of 6 per slot
    kept = pa.concat_tables([pq.read_table(p).slice(0, 1) for p in parts])
    for part in parts:
        part.unlink()
    pq.write_table(kept, parts[0])
    messages = []
    again = run_experiment(spec, tmp_path, progress=False, echo=messages.append)
    assert messages == ["resumed: 4 of 24 runs already stored"]
    assert sorted(again.column("run_key").to_pylist()) == sorted(runs.column("run_key").to_pylist())


def test_ntk_convergence_small(ray_local, tmp_path):
    """docs/theory.md §2/§6.3: Theta_hat(x0, x) fluctuates O(n^-1/2) around the analytic Theta."""
    spec = parse_spec(
        dict(
            name="conv",
            experiment="ntk_convergence",
            model=dict(kind="fc", depth=2, widths=[64, 1024], activation="relu", sigma_w=1.0),
            data=dict(name="product", dim=2, n_train=8, n_test=24, test_grid=True),
            training=dict(
                steps=20, learning_rate=1.0, seeds=8, test_ntk=True, record_steps=[0, 20]
            ),
        )
    )
    runs = run_experiment(spec, tmp_path, progress=False)
    ref = pq.read_table(tmp_path / "reference.parquet").to_pandas().sort_values("index")
    widths = np.array(runs["width"].to_pylist())
    first = np.array([r[0] for r in runs["test_ntk"].to_pylist()])  # at initialisation
    # The recorded row is Theta_hat(x_test[0], x_test) of the job's own initial network.
    job = {j.tag: j for j in spec.jobs()}[runs["run_key"][0].as_py()]
    x = load(job.data).x_test
    at_init = np.asarray(empirical_ntk(job.model, initial_params(job), x[:1], x)).ravel()
    np.testing.assert_allclose(first[0], at_init, rtol=1e-10)
    later = np.array([r[1] for r in runs["test_ntk"].to_pylist()])
    assert np.abs(later - first).max() > 1e-6  # training moved the kernel
    rows = {w: first[widths == w] for w in (64, 1024)}
    std = {w: rows[w].std(0, ddof=1).mean() for w in rows}
    assert std[1024] / std[64] < 0.5  # sqrt(64 / 1024) = 0.25
    se = rows[1024].std(0, ddof=1) / np.sqrt(8)
    assert np.mean(np.abs(rows[1024].mean(0) - ref.ntk.to_numpy()) < 4 * se + 1e-9) >= 0.9


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_reproduction_specs_validate(name):
    spec = load_spec(f"sweeps/{name}.yaml")
    assert isinstance(spec, ExperimentSpec) and spec.name == name


@pytest.mark.parametrize(
    "change, field",
    [
        ({"experiment": "nope"}, "experiment"),
        ({"training": {"predict_test": False}}, "predict_test"),
        ({"training": {"record_steps": [0, 999]}}, "record_steps"),
        ({"training": {"learning_rate": -1.0}}, "training.learning_rate"),
        ({"experiment": "ntk_convergence"}, "test_ntk"),
        ({"training": {"probe_points": 9}}, "probe_points"),
        ({"data": {"test_grid": "sometimes"}}, "data.test_grid"),
    ],
)
def test_bad_experiment_specs_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        _spec(**change)
