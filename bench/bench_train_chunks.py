"""Calibration of the CPU chunk table (ntk_dist.engine.chunks.CPU_CHUNKS).

For a few networks (parameter count P, training points m), member-steps/s of
``train_batch`` at each chunk size, single-threaded as in a 1-CPU Ray task. Each
chunk size is compiled once (a 1-step call; steps are runtime values) and then timed
on ``--steps`` steps; chunk sizes are interleaved over ``--repeats`` passes and the
best pass is kept.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    PYTHONPATH=. python bench/bench_train_chunks.py [--steps 300] [--members 16]
"""

import argparse
import time

import jax

from ntk_dist import CatapultToy, DataSpec, FCNetwork, TrainJob, train_batch
from ntk_dist.engine.chunks import cpu_chunk
from ntk_dist.models.networks import param_count


def _cases():
    single = DataSpec(name="single", n_train=1, dim=1)
    cubic = DataSpec(name="cubic", n_train=5, noise=0.01, seed=0)
    erf = dict(depth=2, activation="erf", sigma_w=1.5, sigma_b=0.05)
    return {
        "toy n=1024": (CatapultToy(width=1024), single),
        "toy n=4096": (CatapultToy(width=4096), single),
        "toy n=65536": (CatapultToy(width=65536), single),
        "erf 2x128": (FCNetwork.make(width=128, **erf), cubic),
        "erf 2x512": (FCNetwork.make(width=512, **erf), cubic),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--chunks", default="1,2,4,8,16")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    for name, (net, data) in _cases().items():

        def jobs(steps, net=net, data=data):
            return [
                TrainJob(
                    net,
                    data,
                    1.0,
                    steps=steps,
                    seed=s,
                    lr_units="lambda0",
                    record=(0, steps),
                    dtype="float32",
                )
                for s in range(args.members)
            ]

        for c in chunks:
            train_batch(jobs(1), chunk_size=c)
        best = dict.fromkeys(chunks, float("inf"))
        for _ in range(args.repeats):
            for c in chunks:
                start = time.perf_counter()
                train_batch(jobs(args.steps), chunk_size=c)
                best[c] = min(best[c], time.perf_counter() - start)
        rate = {c: args.members * args.steps / t for c, t in best.items()}
        top = max(rate, key=rate.get)
        shapes = jax.eval_shape(lambda net=net, d=data.dim: net.init(jax.random.PRNGKey(0), d))
        p = param_count(shapes)
        cells = "  ".join(f"c={c}: {r:,.0f}" for c, r in rate.items())
        print(
            f"{name:12s} P={p:>8,d} m={data.n_train}  {cells}  best c={top} "
            f"(table: {cpu_chunk(p, data.n_train)})",
            flush=True,
        )


if __name__ == "__main__":
    main()
