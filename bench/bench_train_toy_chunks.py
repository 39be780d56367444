"""Calibration of the toy chunk budget (ntk_dist.engine.chunks.TOY_CHUNK_BYTES), all cores busy.

The toy grid of ``bench/bench_train_ray.py`` (n = 4096, 64 rates x 4 seeds x 1000 steps,
float64, default records) is split between ``--processes`` concurrent single-thread
processes, as between a sweep's 1-CPU Ray workers; each trains its share with one
``train_batch`` per chunk size after a compile call, all starting together. Prints,
per chunk size and pass, the slowest process's seconds (``--processes 1``: one
process alone).

    PYTHONPATH=. python bench/bench_train_toy_chunks.py [--processes 2] [--chunks 2,4,8,16,32]
"""

import argparse
import json
import os
import subprocess
import sys
import time

SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def share(part: int, processes: int, chunk: int, start_at: float, steps: int) -> None:
    from bench.bench_train_ray import ntk_jobs
    from ntk_dist.engine.train import train_batch

    jobs = ntk_jobs(steps)[part::processes]
    train_batch(jobs[:chunk], chunk_size=chunk)  # compile
    time.sleep(max(0.0, start_at - time.time()))
    start = time.perf_counter()
    train_batch(jobs, chunk_size=chunk)
    print(json.dumps(time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--chunks", default="2,4,8,16,32")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--share", nargs=3, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.share:
        part, chunk, start_at = args.share
        return share(int(part), args.processes, int(chunk), start_at, args.steps)
    env = dict(os.environ, XLA_FLAGS=SINGLE_THREAD, OMP_NUM_THREADS="1", JAX_PLATFORMS="cpu")
    print(f"processes={args.processes} load={os.getloadavg()}", flush=True)
    for _ in range(args.repeats):
        for chunk in (int(c) for c in args.chunks.split(",")):
            start_at = time.time() + 15  # after every process has imported and compiled
            cmd = [sys.executable, "-m", "bench.bench_train_toy_chunks", "--steps", str(args.steps)]
            cmd += ["--processes", str(args.processes), "--share"]
            procs = [
                subprocess.Popen(
                    [*cmd, str(p), str(chunk), str(start_at)], stdout=subprocess.PIPE, env=env
                )
                for p in range(args.processes)
            ]
            times = [float(p.communicate()[0].decode().split()[-1]) for p in procs]
            print(f"chunk {chunk:3d}: slowest process {max(times):.3f} s", flush=True)


if __name__ == "__main__":
    main()
