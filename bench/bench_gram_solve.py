"""Matrix-free PCG vs dense kernel regression (NTK, synthetic d = 32): agreement and peak RSS.

Usage: python bench/bench_gram_solve.py N [RANK]
Runs the matrix-free solve, then the dense solve in a child process (so this
process's peak RSS is the matrix-free one), and prints iterations, residuals,
relative difference of the solutions, wall times and peak RSS vs 8 N^2 bytes.
"""

import json
import resource
import subprocess
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from ntk_dist.solve import kernel_regression  # noqa: E402

CFG = dict(depth=1, activation="relu", sigma_w=1.5, sigma_b=0.1, kind="ntk", diag_reg=1e-6)


def problem(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32))
    return x, np.sin(x[:, 0]) + 0.1 * rng.normal(size=n)


def main():
    n = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "dense":
        x, y = problem(n)
        t = time.perf_counter()
        r = kernel_regression(x, y, method="dense", **CFG)
        np.save(f"/tmp/bench_solve_dense_{n}.npy", r.alpha)
        print(json.dumps(dict(dense_s=time.perf_counter() - t)))
        return
    rank = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    x, y = problem(n)
    t = time.perf_counter()
    r = kernel_regression(x, y, method="cg", rank=rank, tol=1e-8, **CFG)
    cg_s = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dense = subprocess.run(
        [sys.executable, __file__, str(n), "dense"], capture_output=True, text=True
    )
    alpha = np.load(f"/tmp/bench_solve_dense_{n}.npy")
    diff = np.linalg.norm(r.alpha - alpha) / np.linalg.norm(alpha)
    print(
        json.dumps(
            dict(
                n=n,
                rank=rank,
                iterations=r.iterations,
                cg_residual=r.residual,
                rel_diff_vs_dense=diff,
                cg_s=cg_s,
                **json.loads(dense.stdout.splitlines()[-1]),
                peak_rss_gib=rss / 2**30,
                dense_matrix_gib=8 * n * n / 2**30,
            )
        )
    )


if __name__ == "__main__":
    main()
