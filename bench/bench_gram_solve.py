"""Matrix-free PCG vs dense kernel regression (NTK, synthetic d = 32): agreement and peak RSS.

Usage: python bench/bench_gram_solve.py N [RANK] [OUTDIR]
This process runs the matrix-free solve (``kernel_regression(method="cg")``) and records
its wall time, iterations, residual history and peak RSS (``ru_maxrss``, taken before any
child starts), saving alpha to OUTDIR/alpha_cg_N.npy. A SEPARATE process then builds the
dense K in float64 (blocks of the same ``fc_kernel``, 8 N^2 bytes), computes the relative
residual ||(K + r I) alpha_cg - y|| / ||y|| of the matrix-free solution in the dense
system, solves by Cholesky in place, and compares ||alpha_cg - alpha_dense|| / ||alpha_dense||.
Prints one JSON line (also written to OUTDIR/result_N.json).

Settings: diag_reg = 1e-6 (relative ridge r = 1e-6 mean(diag K)); the smallest eigenvalue
of this K is ~4e-2 mean(diag K) (N = 4000), so the ridge only guards rounding and the
solution is the interpolating NTK-GP mean. CG tol = 1e-7 = target residual 1e-6 / 10.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from ntk_dist.theory.solve import kernel_regression, symmetric_blocks  # noqa: E402

KERNEL = dict(depth=1, activation="relu", sigma_w=1.5, sigma_b=0.1)
DIAG_REG, TARGET = 1e-6, 1e-6


def problem(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32))
    return x, np.sin(x[:, 0]) + 0.1 * rng.normal(size=n)


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def dense(n, out):
    """The dense reference: K in one float64 array, residual of alpha_cg, Cholesky in place."""
    from scipy.linalg import cho_factor, cho_solve

    x, y = problem(n)
    alpha_cg = np.load(out / f"alpha_cg_{n}.npy")
    t = time.perf_counter()
    k = np.empty((n, n))
    for ri, rj, blk in symmetric_blocks(x, 2048, get=("ntk",), **KERNEL):
        k[ri, rj], k[rj, ri] = blk, blk.T
    kernel_s = time.perf_counter() - t
    shift = DIAG_REG * np.mean(np.diag(k))
    residual = np.linalg.norm(k @ alpha_cg + shift * alpha_cg - y) / np.linalg.norm(y)
    t = time.perf_counter()
    k[np.diag_indices(n)] += shift
    alpha = cho_solve(cho_factor(k, lower=True, overwrite_a=True, check_finite=False), y)
    cholesky_s = time.perf_counter() - t
    diff = np.linalg.norm(alpha_cg - alpha) / np.linalg.norm(alpha)
    return dict(
        dense_kernel_s=kernel_s,
        dense_cholesky_s=cholesky_s,
        dense_peak_rss_gib=peak_rss_gib(),
        residual_of_cg_in_dense_system=residual,
        rel_diff_cg_vs_dense=diff,
    )


def main():
    n = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "dense":
        print(json.dumps(dense(n, Path(sys.argv[3]))))
        return
    rank = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    out = Path(sys.argv[3] if len(sys.argv) > 3 else "/tmp/bench_gram_solve")
    out.mkdir(parents=True, exist_ok=True)
    x, y = problem(n)
    t = time.perf_counter()
    r = kernel_regression(
        x, y, **KERNEL, kind="ntk", method="cg", rank=rank, diag_reg=DIAG_REG, tol=TARGET / 10
    )
    cg_s = time.perf_counter() - t
    rss = peak_rss_gib()
    np.save(out / f"alpha_cg_{n}.npy", r.alpha[:, 0])
    res = dict(
        n=n,
        rank=rank,
        diag_reg=DIAG_REG,
        cg_tol=TARGET / 10,
        iterations=r.iterations,
        cg_residual=r.residual,
        residual_history=[float(v) for v in r.residuals],
        cg_s=cg_s,
        cg_peak_rss_gib=rss,
        dense_matrix_gib=8 * n * n / 2**30,
    )
    print(json.dumps({k: v for k, v in res.items() if k != "residual_history"}), flush=True)
    child = subprocess.run(
        [sys.executable, __file__, str(n), "dense", str(out)], capture_output=True, text=True
    )
    if child.returncode:
        sys.exit(f"dense reference failed:\n{child.stderr}")
    res.update(json.loads(child.stdout.splitlines()[-1]))
    res["passed"] = bool(
        res["residual_of_cg_in_dense_system"] <= TARGET
        and res["cg_peak_rss_gib"] < res["dense_matrix_gib"]
    )
    (out / f"result_{n}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
