"""``make demo``: a small, real study that runs in seconds to minutes on 2 CPUs.

Prints the sharpness lambda0 of erf networks of growing width (it concentrates as
the width grows, science.md §2) and writes a figure under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/demo"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntk_dist import FCNetwork, sharpness

    x = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
    widths = (16, 64, 256, 1024)
    rows = []
    for width in widths:
        net = FCNetwork.make(depth=2, width=width, activation="erf", sigma_w=1.5, sigma_b=0.05)
        keys = jax.random.split(jax.random.PRNGKey(width), 8)
        lams = np.array([float(sharpness(net, net.init(k, 4, jnp.float32), x)) for k in keys])
        rows.append((width, lams.mean(), lams.std(ddof=1)))
        print(f"width {width:5d}: lambda0 = {lams.mean():.4f} +/- {lams.std(ddof=1):.4f} (8 inits)")
    args.out.mkdir(parents=True, exist_ok=True)
    w, mean, std = map(np.array, zip(*rows, strict=True))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(w, mean, yerr=std, marker="o", capsize=3)
    ax.set(xscale="log", xlabel="width", ylabel="lambda0", title="erf net, depth 2")
    fig.tight_layout()
    fig.savefig(args.out / "lambda0_vs_width.png", dpi=120)
    print(f"figure: {args.out / 'lambda0_vs_width.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
