"""Data sets: seeded, the promised functions, splits, noise and standardisation."""

import numpy as np
import pytest

from ntk_dist.engine.data import DATASETS, DataSpec, load


@pytest.mark.parametrize("name", [n for n in DATASETS if n not in ("single", "digits", "file")])
def test_same_spec_same_arrays_other_seed_other_arrays(name):
    dim = 1 if name == "cubic" else 3
    spec = DataSpec(name=name, n_train=6, n_test=3, dim=dim, noise=0.1, seed=4)
    a, b = load(spec), load(DataSpec(name=name, n_train=6, n_test=3, dim=dim, noise=0.1, seed=4))
    c = load(DataSpec(name=name, n_train=6, n_test=3, dim=dim, noise=0.1, seed=5))
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert getattr(a, field).dtype == np.float64
    assert not np.allclose(a.x_train, c.x_train)
    assert a.x_train.shape == (6, dim) and a.y_train.shape == (6, 1)
    assert a.x_test.shape == (3, dim) and a.y_test.shape == (3, 1)


def test_targets_are_the_promised_functions():
    cubic = load(DataSpec(name="cubic", n_train=50, n_test=20, noise=0.0))
    assert np.all((cubic.x_train >= 0) & (cubic.x_train <= 1))
    np.testing.assert_array_equal(cubic.y_test, cubic.x_test**3)
    prod = load(DataSpec(name="product", n_train=5, n_test=5, dim=2))
    np.testing.assert_allclose(prod.y_train[:, 0], prod.x_train[:, 0] * prod.x_train[:, 1])
    sphere = load(DataSpec(name="sphere", n_train=5, dim=4))
    np.testing.assert_allclose(np.linalg.norm(sphere.x_train, axis=1), 1.0, rtol=1e-14)
    single = load(DataSpec(name="single", n_train=1, dim=1, target=0.5))
    assert single.x_train.tolist() == [[1.0]] and single.y_train.tolist() == [[0.5]]
    assert single.x_test.shape == (0, 1)


def test_noise_on_training_targets_only_with_its_standard_deviation():
    clean = load(DataSpec(name="cubic", n_train=4000, n_test=10, seed=2))
    noisy = load(DataSpec(name="cubic", n_train=4000, n_test=10, seed=2, noise=0.3))
    np.testing.assert_array_equal(clean.x_train, noisy.x_train)
    np.testing.assert_array_equal(clean.y_test, noisy.y_test)
    resid = (noisy.y_train - clean.y_train)[:, 0]
    # Sample std of 4000 Gaussians: standard error 0.3 / sqrt(2 * 4000) ~ 0.0034.
    assert abs(resid.std() - 0.3) < 4 * 0.3 / np.sqrt(8000)


def test_standardise_uses_training_statistics():
    raw = load(DataSpec(name="gaussian", n_train=50, n_test=7, dim=3, seed=1))
    std = load(DataSpec(name="gaussian", n_train=50, n_test=7, dim=3, seed=1, standardise=True))
    np.testing.assert_allclose(std.x_train.mean(axis=0), 0.0, atol=1e-14)
    np.testing.assert_allclose(std.x_train.std(axis=0), 1.0, rtol=1e-13)
    mu, sd = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
    np.testing.assert_allclose(std.x_test, (raw.x_test - mu) / sd, rtol=1e-13)


def test_teacher_targets_depend_on_the_teacher():
    a = load(DataSpec(name="teacher", n_train=8, dim=2, teacher_width=32))
    b = load(
        DataSpec(name="teacher", n_train=8, dim=2, teacher_width=32, teacher_activation="relu")
    )
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.allclose(a.y_train, b.y_train) and np.all(np.isfinite(a.y_train))


def test_digits_subsample_one_hot():
    pytest.importorskip("sklearn")
    d = load(DataSpec(name="digits", n_train=100, n_test=50, dim=64, seed=3))
    assert d.x_train.shape == (100, 64) and d.y_train.shape == (100, 10)
    assert d.x_test.shape == (50, 64)
    np.testing.assert_array_equal(d.y_train.sum(axis=1), 1.0)
    assert d.x_train.min() >= 0 and d.x_train.max() <= 1
    # Train and test are disjoint draws (no repeated image across the split).
    rows = {r.tobytes() for r in d.x_train}
    assert sum(r.tobytes() in rows for r in d.x_test) <= 2  # the data set has a few duplicates


def test_arrays_are_read_only():
    d = load(DataSpec(name="gaussian", n_train=3))
    with pytest.raises(ValueError):
        d.x_train[0, 0] = 1.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="mnist"), "data.name"),
        (dict(n_train=0), "data.n_train"),
        (dict(n_test=-1), "data.n_test"),
        (dict(dim=0), "data.dim"),
        (dict(noise=-0.1), "data.noise"),
        (dict(seed=-2), "data.seed"),
        (dict(name="single", n_train=2), "n_train=1"),
        (dict(name="single", n_train=1, standardise=True), "data.standardise"),
        (dict(name="cubic", dim=2), "data.dim"),
        (dict(name="product", dim=1), "data.dim"),
        (dict(name="digits", dim=3), "data.dim"),
        (dict(name="digits", dim=64, n_train=1800), "data.n_train"),
        (dict(name="teacher", teacher_activation="swish"), "data.teacher_activation"),
    ],
)
def test_bad_specs_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DataSpec(**kwargs)
