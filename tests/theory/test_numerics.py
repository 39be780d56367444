"""Numerical hazards: singular kernels (duplicated or nearly equal inputs) are regularised
with a NumericalWarning, never NaN; float32 precision loss is detected and reported."""

import warnings

import numpy as np
import pytest
import yaml

from ntk_dist import NumericalWarning, fc_kernel, float32_check, kernel_regression
from ntk_dist.cli import main
from ntk_dist.study.spec import parse_spec
from ntk_dist.theory.gp import nngp_posterior, ntk_gp
from ntk_dist.theory.predict import linearized_predict

KERNEL = dict(depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1)


def _inputs(twin_offset):
    """6 training points whose last one repeats the first (+ offset); 3 test points."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3))
    x_train = np.concatenate([x[:5], x[:1] + twin_offset])
    y = np.sin(x_train[:, :1])
    return x_train, y, x[5:]


def _kernels(x, xt, dtype=np.float64):
    x, xt = x.astype(dtype), xt.astype(dtype)
    train, cross, test = fc_kernel(x, **KERNEL), fc_kernel(xt, x, **KERNEL), fc_kernel(xt, **KERNEL)
    return train, cross, test


@pytest.mark.parametrize("offset", [0.0, 1e-12], ids=["duplicate", "x+1e-12"])
def test_singular_kernels_are_regularised_with_a_warning_not_nan(offset):
    x, y, xt = _inputs(offset)
    train, cross, test = _kernels(x, xt)
    # Reference: the same problem without the twin point (its label is the same).
    ref = kernel_regression(x[:5], y[:5], xt, kind="ntk", diag_reg=0.0, **KERNEL).mean

    with pytest.warns(NumericalWarning, match="k_train is singular or ill-conditioned"):
        post = nngp_posterior(train.nngp, cross.nngp, test.nngp, y)
    with pytest.warns(NumericalWarning, match="theta_train is singular or ill-conditioned"):
        gp = ntk_gp(train.ntk, cross.ntk, train.nngp, cross.nngp, test.nngp, y, np.inf, lr=0.1)
    with pytest.warns(NumericalWarning, match="theta_train"):
        lin = linearized_predict(train.ntk, np.zeros_like(y), y, np.inf, lr=0.1)
    with pytest.warns(NumericalWarning, match=r"K\(x_train, x_train\)"):
        reg = kernel_regression(x, y, xt, kind="ntk", diag_reg=0.0, **KERNEL)
    for a in (post.mean, post.cov, gp.mean, gp.cov, lin.train, reg.mean):
        assert np.all(np.isfinite(np.asarray(a)))
    # The twin adds no information, so the regularised answers are the reference's.
    np.testing.assert_allclose(reg.mean, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gp.mean), ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(lin.train), y, atol=1e-6)


def test_well_conditioned_kernels_raise_no_warning():
    x, y, xt = _inputs(1.0)
    train, cross, test = _kernels(x, xt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        nngp_posterior(train.nngp, cross.nngp, test.nngp, y)
        ntk_gp(train.ntk, cross.ntk, train.nngp, cross.nngp, test.nngp, y, np.inf, lr=0.1)
        kernel_regression(x, y, xt, kind="ntk", diag_reg=0.0, **KERNEL)


def test_float32_kernel_that_loses_all_digits_advises_float64():
    x, y, xt = _inputs(1e-3)  # near twins: fine in float64, hopeless in float32
    train64, cross64, test64 = _kernels(x, xt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        nngp_posterior(train64.nngp, cross64.nngp, test64.nngp, y)
    train, cross, test = _kernels(x, xt, np.float32)
    with pytest.warns(NumericalWarning, match="compute it in float64"):
        post = nngp_posterior(train.nngp, cross.nngp, test.nngp, y.astype(np.float32))
    assert np.all(np.isfinite(np.asarray(post.mean)))


F32 = {
    "name": "f32",
    "model": {"kind": "fc", "widths": [64], "depth": 1},
    "data": {"name": "teacher", "n_train": 8, "dim": 4},
    "training": {"dtype": "float32", "steps": 10},
}


def test_float32_training_check_compares_lambda0_and_loss_with_float64(tmp_path, capsys):
    spec = parse_spec(F32)
    job = spec.job(64, 1.0, 0, "t")
    report = float32_check(job)
    assert report.ok and report.rel_error < 1e-4
    np.testing.assert_allclose(*report.lambda0, rtol=1e-4)
    with pytest.warns(NumericalWarning, match="use dtype float64"):
        strict = float32_check(job, rtol=1e-12)  # float32 always differs at this level
    assert not strict.ok and strict.rel_error == report.rel_error
    path = tmp_path / "f32.yaml"
    path.write_text(yaml.safe_dump(F32))
    assert main(["validate", str(path)]) == 0
    assert "float32 check (width 64): lambda0" in capsys.readouterr().out
