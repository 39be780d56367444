"""The interim demo runs end to end at a small size, and its numbers are physical."""

import json
import math

import pytest

from ntk_dist.cli.demo import kernel_demo

SMALL = dict(n_nets=3, width=128, steps=150)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, kernel_demo(out, **SMALL, verbose=False)


def test_kernel_demo_small_run_agrees_with_the_ntk_gp(small_demo):
    n_nets = SMALL["n_nets"]
    out, s = small_demo
    assert (out / "finite_vs_infinite.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text()) == s
    # Each net's own lambda0 fluctuates O(n^{-1/2}) around the infinite-width value.
    assert abs(s["eta_lambda0_finite_mean"] - 1.0) < 0.25
    # The ensemble mean sits within 3 standard errors (RMS over the grid) of the NTK-GP mean,
    se = s["mean_std_ntk_gp"] / math.sqrt(n_nets)
    assert s["rmse_ensemble_mean_vs_ntk_gp_mean"] < 3 * se
    # the spreads agree within the sampling error of 3 nets, the training losses within 2x,
    assert 0.3 < s["mean_std_ensemble"] / s["mean_std_ntk_gp"] < 2.0
    assert 0.5 < s["train_loss_finite_mean"] / s["train_loss_ntk_gp_expected"] < 2.0
    # and both fit x^3 on [0, 1].
    assert s["rmse_vs_target_ensemble_mean"] < 0.2 and s["rmse_vs_target_ntk_gp_mean"] < 0.2


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(n_nets=1), "n_nets"), (dict(steps=0), "steps"), (dict(width=-1), "width")],
)
def test_kernel_demo_rejects_bad_sizes(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernel_demo(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_rerun_of_the_finished_demo_trains_nothing(small_demo, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(small_demo[0], tmp_path / "demo")

    def no_training(*args, **kwargs):
        raise AssertionError("the finished demo was trained again")

    monkeypatch.setattr("ntk_dist.models.networks.FCNetwork.from_arch", no_training)
    assert kernel_demo(tmp_path / "demo", **SMALL, verbose=False) == small_demo[1]
    with pytest.raises(AssertionError, match="trained again"):  # other arguments: a new run
        kernel_demo(tmp_path / "demo", **{**SMALL, "steps": 151}, verbose=False)
