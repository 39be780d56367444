"""The interim demo runs end to end at a small size, and its numbers are physical."""

import json
import math

import pytest

from ntk_dist.cli.demo import kernel_demo


def test_kernel_demo_small_run_agrees_with_the_ntk_gp(tmp_path):
    n_nets = 3
    s = kernel_demo(tmp_path / "demo", n_nets=n_nets, width=128, steps=150, verbose=False)
    assert (tmp_path / "demo" / "finite_vs_infinite.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "demo" / "summary.json").read_text()) == s
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
