"""Predictions: one eigendecomposition for many times against a solve per time.

Measures, in one run (ratios only; the machine is shared):
  1. ntk_gp at T times, vectorised (one eigh), against T separate calls.
  2. linearized_predict's closed form for T GD steps against iterating
     f <- f - eta/m Theta (f - y) on the training set for the same steps.
Run: PYTHONPATH=. python bench/bench_predict.py
"""

from __future__ import annotations

import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from ntk_dist.theory.gp import ntk_gp  # noqa: E402
from ntk_dist.theory.predict import linearized_predict, max_learning_rate  # noqa: E402

M, N, T, REPEATS = 400, 400, 64, 3


def _kernel(rng, n, p):
    phi = np.tanh(rng.normal(size=(n, p)))
    return phi @ phi.T / p + 1e-3 * np.eye(n)


def _best(fn) -> float:
    fn()  # warm-up: compile and caches
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    theta, k = _kernel(rng, M + N, 2000), _kernel(rng, M + N, 2000)
    y = rng.normal(size=(M, 1))
    lr = 0.5 * max_learning_rate(theta[:M, :M])
    ts = np.arange(T) * 10
    args = (theta[:M, :M], theta[M:, :M], k[:M, :M], k[M:, :M], k[M:, M:], y)

    vec = _best(lambda: ntk_gp(*args, ts, lr=lr, dynamics="gd").cov)
    loop = _best(lambda: [ntk_gp(*args, int(t), lr=lr, dynamics="gd").cov for t in ts])
    print(f"ntk_gp, m={M}, N={N}, T={T}: vectorised {vec:.3f} s, per-time loop {loop:.3f} s")
    print(f"  ratio {loop / vec:.1f}x")

    th = theta[:M, :M]
    f0 = rng.normal(size=(M, 1))
    steps = int(ts[-1])

    def iterate():
        f, out = f0.ravel(), []
        for step in range(steps + 1):
            if step % 10 == 0:
                out.append(f)
            f = f - lr / M * th @ (f - y.ravel())
        return np.stack(out)

    closed = _best(lambda: linearized_predict(th, f0, y, ts, lr=lr, dynamics="gd").train)
    direct = _best(iterate)
    traj = linearized_predict(th, f0, y, ts, lr=lr, dynamics="gd").train
    err = np.abs(np.asarray(traj)[..., 0] - iterate()).max()
    print(f"linearised train trajectory, m={M}, {steps} GD steps recorded at {T} times:")
    print(f"  closed form {closed:.3f} s, iterated {direct:.3f} s, ratio {direct / closed:.1f}x")
    print(f"  max |closed form - iterated| = {err:.1e}")


if __name__ == "__main__":
    main()
