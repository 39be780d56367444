"""What recording costs: the toy grid with the default record schedule vs steps 0 and T.

Toy n = 4096, ``--jobs`` runs of ``--steps`` GD steps in one ``train_batch`` (automatic
chunking), single-threaded. "default": ``record_schedule(steps)`` (every step to 32,
then ~64 log-spaced: loss and lambda_t at ~97 steps); "ends": ``record=(0, steps)``.
Per-step values are never stored: the scan over record intervals computes a record
only at record steps. Arms interleaved, best of ``--repeats``.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    PYTHONPATH=. python bench/bench_train_records.py [--jobs 64] [--steps 1000]
"""

import argparse
import time

import numpy as np

from ntk_dist import CatapultToy, DataSpec, TrainJob, train_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    toy, data = CatapultToy(width=4096), DataSpec(name="single", n_train=1, dim=1)
    rates = np.linspace(0.5, 5.0, args.jobs)

    def jobs(record):
        return [
            TrainJob(
                toy, data, float(r), steps=args.steps, seed=0, lr_units="lambda0", record=record
            )
            for r in rates
        ]

    arms = {"default": jobs(None), "ends": jobs((0, args.steps))}
    for batch in arms.values():
        train_batch(batch)  # compile
    best = dict.fromkeys(arms, float("inf"))
    for _ in range(args.repeats):
        for name, batch in arms.items():
            start = time.perf_counter()
            train_batch(batch)
            best[name] = min(best[name], time.perf_counter() - start)
    for name, t in best.items():
        print(
            f"{name:8s} {len(arms[name][0].record):3d} records  {t:6.2f} s  "
            f"{args.jobs / t:6.1f} runs/s"
        )
    print(f"recording cost: {100 * (best['default'] / best['ends'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
