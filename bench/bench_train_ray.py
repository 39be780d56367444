"""Benchmark (b): the catapult grid through Ray on 2 local workers vs in-process.

Toy model n = 4096 on one sample (docs/theory.md §5), 64 values of eta * lambda0 in
[0.5, 5] x 8 seeds x 2000 GD steps = 512 jobs. In-process: ``run_jobs`` with the
local backend (XLA may use both cores). Ray: a local 2-CPU loopback instance,
``max_batch`` chosen so that the grid splits into 2 batches, one per 1-CPU worker.
Reported cold (compile and worker start-up included) and warm (second call).
Overhead is ray_time / local_time - 1 at equal cores (2).

    PYTHONPATH=. python bench/bench_train_ray.py [--steps 2000]
"""

import argparse
import time

import numpy as np

from ntk_dist import CatapultToy, DataSpec, TrainJob, ensure_ray, run_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rates", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()

    toy = CatapultToy(width=4096)
    data = DataSpec(name="single", n_train=1, dim=1)
    jobs = [
        TrainJob(toy, data, float(r), steps=args.steps, seed=s, lr_units="lambda0", tag=f"{r}:{s}")
        for r in np.linspace(0.5, 5.0, args.rates)
        for s in range(args.seeds)
    ]
    half = (len(jobs) + 1) // 2

    def timed(backend, max_batch):
        start = time.perf_counter()
        table = run_jobs(jobs, backend=backend, max_batch=max_batch)
        return table, time.perf_counter() - start

    ensure_ray(num_cpus=2)
    # Cold: compile (and, for Ray, worker start-up) included; warm: the same call again,
    # compiled programs cached in this process and in the reused workers.
    local, t_local = timed("local", len(jobs))
    _, t_local_warm = timed("local", len(jobs))
    remote, t_ray = timed("ray", half)
    _, t_ray_warm = timed("ray", half)

    same = np.array_equal(
        np.asarray(local.column("loss_final")),
        np.asarray(remote.column("loss_final")),
        equal_nan=True,
    )
    phases = np.asarray(local.column("diverged"))
    print(f"jobs={len(jobs)} steps={args.steps} diverged={int(phases.sum())}")
    print(
        f"cold: in-process {t_local:.1f} s, ray (2 workers x 1 CPU) {t_ray:.1f} s, "
        f"overhead {100 * (t_ray / t_local - 1):+.1f}%"
    )
    print(
        f"warm: in-process {t_local_warm:.1f} s, ray {t_ray_warm:.1f} s, "
        f"overhead {100 * (t_ray_warm / t_local_warm - 1):+.1f}%"
    )
    print(f"identical loss_final: {same}")


if __name__ == "__main__":
    main()
