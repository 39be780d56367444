"""Throughput of the square NNGP+NTK Gram (fc_kernel), float32, against the X X^T floor.

Usage:
  python -m bench.bench_kernels [--sizes 4096 8192] [--repeats 3] [--depth 3] [--dim 64]

Prints one line per (activation, N): best-of-repeats seconds and entries/s counting
all N^2 entries, plus the X X^T product alone at the same size (the floor).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_dist.theory.kernels import fc_kernel


def _best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--activations", nargs="+", default=["erf", "relu"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, devices {jax.devices()}, loadavg {os.getloadavg()}")
    for n in args.sizes:
        x = jnp.asarray(np.random.default_rng(0).normal(size=(n, args.dim)), jnp.float32)
        gram = jax.jit(lambda a: jnp.matmul(a, a.T, precision=jax.lax.Precision.HIGHEST))
        t_mm = _best(lambda x=x, gram=gram: gram(x), args.repeats)
        print(f"N={n} X X^T alone: {t_mm:.3f} s, {n * n / t_mm / 1e6:.1f} M entries/s")
        for act in args.activations:

            def run(x=x, act=act):
                k = fc_kernel(x, depth=args.depth, activation=act, sigma_w=1.5, sigma_b=0.05)
                return k.nngp, k.ntk

            t = _best(run, args.repeats)
            print(
                f"N={n} {act} depth={args.depth} NNGP+NTK: {t:.3f} s, "
                f"{n * n / t / 1e6:.1f} M entries/s ({t / t_mm:.1f}x the X X^T time)"
            )


if __name__ == "__main__":
    main()
