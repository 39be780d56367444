"""The infinite-width reference an experiment is compared with (docs/theory.md §4, §6).

- ``finite_vs_infinite`` and ``ensemble``: the NTK-GP mean and variance over
  initialisations at every record step (discrete gradient descent with the runs' eta,
  Lee et al. 2019) and the NNGP posterior, on the training and test inputs.
- ``ntk_convergence``: the analytic Theta(x0, x) and K(x0, x) along the unit circle.
- ``width_scaling``: none (exponents are fitted by ``ntk_dist.analysis.stats``).
"""

from __future__ import annotations

import jax
import numpy as np
import pyarrow as pa

from ntk_dist.engine.data import load
from ntk_dist.study.spec import ExperimentSpec
from ntk_dist.theory.gp import nngp_posterior, ntk_gp
from ntk_dist.theory.kernels import fc_kernel

REFERENCE_DOCS = {
    "step": "gradient-descent step t (the runs' record steps)",
    "split": "'train' or 'test'",
    "index": "point index within its split (the data set's order)",
    "x": "input (d = 1)",
    "y": "target: noisy for train, noise-free f*(x) for test",
    "gp_mean": "NTK-GP mean of f(x) at step t over initialisations (docs/theory.md §4, gd)",
    "gp_var": "NTK-GP variance of f(x) at step t",
    "nngp_mean": "NNGP posterior mean with the data's label-noise variance",
    "nngp_var": "NNGP posterior variance (latent f)",
    "angle": "g in [-pi, pi): x = (cos g, sin g)",
    "x1": "first input coordinate",
    "x2": "second input coordinate",
    "ntk": "analytic Theta(x0, x), x0 = x_test[0] = (1, 0)",
    "nngp": "analytic K(x0, x)",
}


def reference(spec: ExperimentSpec, runs: pa.Table) -> pa.Table:
    """The infinite-width reference of ``spec`` (module docstring), in float64; empty for
    ``width_scaling``."""
    with jax.enable_x64(True):
        return _reference(spec, runs)


def _reference(spec: ExperimentSpec, runs: pa.Table) -> pa.Table:
    data = load(spec.data.build())
    if spec.experiment == "ntk_convergence":
        x = data.x_test
        k = fc_kernel(x[:1], x, spec.model.arch())
        cols = {
            "index": np.arange(len(x)),
            "angle": np.arctan2(x[:, 1], x[:, 0]),
            "x1": x[:, 0],
            "x2": x[:, 1],
            "ntk": np.asarray(k.ntk)[0],
            "nngp": np.asarray(k.nngp)[0],
        }
    elif spec.experiment in ("finite_vs_infinite", "ensemble"):
        cols = _gp_reference(spec, data, runs)
    else:
        cols = {}
    fields = [
        pa.field(n, pa.array(v).type, metadata={"doc": REFERENCE_DOCS[n]}) for n, v in cols.items()
    ]
    meta = {"experiment": spec.experiment, "spec_hash": spec.spec_hash()}
    return pa.table(cols, schema=pa.schema(fields, metadata=meta))


def _gp_reference(spec: ExperimentSpec, data, runs: pa.Table) -> dict:
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    pts = np.concatenate([x, xt])
    arch = spec.model.arch()
    kx = fc_kernel(x, arch=arch)
    kp = fc_kernel(pts, x, arch)
    kpp = fc_kernel(pts, arch=arch, get="nngp")
    etas = np.unique(runs.column("learning_rate").to_numpy())
    if len(etas) != 1:
        raise ValueError(
            f"experiment {spec.name!r}: runs have {len(etas)} learning rates; the NTK-GP "
            "reference needs one: use training.lr_units 'absolute' or 'lambda_inf'"
        )
    steps = np.asarray(spec.training.schedule())
    gp = ntk_gp(
        kx.ntk, kp.ntk, kx.nngp, kp.nngp, kpp.nngp, y, steps, lr=float(etas[0]), dynamics="gd"
    )
    post = nngp_posterior(kx.nngp, kp.nngp, kpp.nngp, y, noise_var=spec.data.noise**2)
    mean = np.asarray(gp.mean)[..., 0]  # (T, N)
    var = np.diagonal(np.asarray(gp.cov), axis1=-2, axis2=-1)
    n_t, n_p = mean.shape
    split = ["train"] * len(x) + ["test"] * len(xt)
    index = np.concatenate([np.arange(len(x)), np.arange(len(xt))])
    tile = lambda a: np.tile(np.asarray(a), n_t)
    return {
        "step": np.repeat(steps, n_p),
        "split": tile(split).tolist(),
        "index": tile(index),
        "x": tile(pts[:, 0]),
        "y": tile(np.concatenate([y[:, 0], yt[:, 0]])),
        "gp_mean": mean.ravel(),
        "gp_var": np.maximum(var, 0.0).ravel(),
        "nngp_mean": tile(np.asarray(post.mean)[:, 0]),
        "nngp_var": tile(np.maximum(np.diagonal(np.asarray(post.cov)), 0.0)),
    }
