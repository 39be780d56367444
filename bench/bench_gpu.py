"""The accelerator check: training and kernel throughput, and float32 precision, in one run.

Meant for a GPU node (it runs on any JAX backend; on CPU it only shows that it works):

- ensemble: the seeds' 100 erf networks (2 hidden layers of width 512, 5 points,
  float32, GD, eta * lambda0 = 1), ``train_batch`` with automatic settings (on an
  accelerator the whole batch is one vmapped chunk) against a hand-written vmapped
  GD loop from the same initial parameters: member-steps/s of each;
- toy grid: 64 values of eta * lambda0 in [0.5, 5] x 4 seeds x 1000 steps of the toy
  at n = 4096, float64 (one ``train_batch``): runs/s;
- kernels: ``fc_kernel`` NNGP + NTK, depth 3, d = 64, float32, N x N: entries/s;
- float32 precision: the relative error of a float32 1024 x 1024 matmul against
  float64 under JAX's default precision and under the "highest" precision that
  ``train_batch`` sets (TF32 on a GPU shows as ~1e-3 against ~1e-6), and the ensemble's
  final losses in float32 against the same jobs in float64.

    PYTHONPATH=. python -m bench.bench_gpu [--quick]    # --quick: small sizes

Prints one line per figure; bench/RESULTS.md records them with the machine and date.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.bench_train_ensemble import ensemble_problem
from ntk_dist import CatapultToy, DataSpec, TrainJob, train_batch
from ntk_dist.theory.architecture import FC
from ntk_dist.theory.kernels import fc_kernel


def best_of(fn, repeats=3):
    fn()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def ensemble(members: int, steps: int) -> None:
    jobs, params, eta, one = ensemble_problem(members)
    plain = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    with jax.default_matmul_precision("highest"):
        t_plain = best_of(lambda: plain(params, eta, steps))
    t_ntk = best_of(lambda: train_batch(jobs(steps)).column("loss_final").to_numpy())
    rate = members * steps
    print(
        f"ensemble {members} x {steps} steps, member-steps/s: train_batch {rate / t_ntk:,.0f}, "
        f"plain vmap (highest precision) {rate / t_plain:,.0f}; ratio {t_plain / t_ntk:.2f}"
    )
    f32 = train_batch(jobs(steps)).column("loss_final").to_numpy()
    with jax.enable_x64(True):
        f64 = train_batch(jobs(steps, "float64")).column("loss_final").to_numpy()
    gap = np.max(np.abs(f32 / f64 - 1))
    print(f"  final loss float32 vs float64: max relative difference {gap:.1e}")


def toy_grid(width: int, steps: int) -> None:
    data = DataSpec(name="single", n_train=1, dim=1)
    jobs = [
        TrainJob(CatapultToy(width=width), data, float(r), steps=steps, seed=s, lr_units="lambda0")
        for r in np.linspace(0.5, 5.0, 64)
        for s in range(4)
    ]
    t = best_of(lambda: train_batch(jobs).column("loss_final").to_numpy())
    print(f"toy grid 256 runs x {steps} steps, n={width}, float64: {len(jobs) / t:,.1f} runs/s")


def kernels(n: int) -> None:
    x = np.random.default_rng(0).normal(size=(n, 64)).astype(np.float32)
    for act in ("erf", "relu"):
        arch = FC(depth=3, activation=act, sigma_w=1.5, sigma_b=0.05)
        t = best_of(lambda arch=arch: fc_kernel(x, arch=arch, get=("nngp", "ntk")).ntk)
        print(f"fc_kernel {act} depth 3, N={n}, float32: {n * n / t / 1e6:,.0f} M entries/s")


def precision() -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(1024, 1024)).astype(np.float32) for _ in range(2))
    exact = a.astype(np.float64) @ b.astype(np.float64)
    for name in ("default", "highest"):
        with jax.default_matmul_precision(name):
            got = np.asarray(jax.jit(jnp.matmul)(a, b), np.float64)
        err = np.max(np.abs(got - exact)) / np.max(np.abs(exact))
        print(f"float32 matmul, precision {name!r}: relative error {err:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU smoke run)")
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}: {jax.devices()[0].device_kind}")
    precision()
    ensemble(8, 50) if args.quick else ensemble(100, 1000)
    toy_grid(256, 100) if args.quick else toy_grid(4096, 1000)
    kernels(512) if args.quick else kernels(8192)


if __name__ == "__main__":
    main()
