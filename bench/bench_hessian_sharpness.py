"""Hessian vs NTK sharpness at initialisation in Kalra & Barkeshli 2023's setting (relu,
standard parameterisation, no biases, sigma_w^2 = 2 hidden / 1 readout, digits), and
the Lanczos iteration count the Hessian sharpness needs (docs/theory.md §3, §7).

Run: PYTHONPATH=$PWD python bench/bench_hessian_sharpness.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_dist.engine.data import DataSpec, load
from ntk_dist.models.empirical import sharpness
from ntk_dist.models.hessian import hessian_sharpness
from ntk_dist.models.networks import FCNetwork


def _net(depth, width):
    return FCNetwork.make(
        depth=depth,
        width=width,
        out_dim=10,
        activation="relu",
        sigma_w=2**0.5,
        sigma_b=0.0,
        parameterization="standard",
        readout_sigma_w=1.0,
    )


def main():
    jax.config.update("jax_enable_x64", True)
    data = load(DataSpec("digits", n_train=64, dim=64, standardise=True))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    print("Lanczos steps vs dense eigvalsh (depth 2, width 16, m = 64):")
    net = _net(2, 16)
    p = net.init(jax.random.PRNGKey(0), 64, jnp.float64)
    dense = float(hessian_sharpness(net, p, x, y, method="dense"))
    for it in (8, 16, 20, 32):
        got = float(hessian_sharpness(net, p, x, y, num_iters=it))
        print(f"  {it:3d} steps: relative error {abs(got - dense) / dense:.1e}")
    print("lambda^H / lambda^NTK at init, 3 seeds (m = 64):")
    for depth, width in ((1, 64), (3, 64), (8, 64), (1, 256), (3, 256)):
        net = _net(depth, width)
        ratios, times = [], []
        for seed in range(3):
            p = net.init(jax.random.PRNGKey(seed), 64, jnp.float64)
            lam_ntk = float(sharpness(net, p, x))
            hessian_sharpness(net, p, x, y).block_until_ready()  # compile
            start = time.perf_counter()
            lam_h = float(hessian_sharpness(net, p, x, y))
            times.append(time.perf_counter() - start)
            ratios.append(lam_h / lam_ntk)
        print(
            f"  depth {depth}, width {width}: ratio {np.mean(ratios):.4f} "
            f"(seeds {', '.join(f'{r:.4f}' for r in ratios)}), "
            f"Hessian sharpness {np.median(times) * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
