"""Benchmark (a): the seeds' ensemble, one batched program vs a loop of single runs.

100 erf networks (2 hidden layers of width 512, sigma_w = 1.5, sigma_b = 0.05) trained
by full-batch GD on the 5-point cubic problem (docs/theory.md §6.1), eta * lambda0 = 1.
"batched": one ``train_batch`` call (its automatic chunking); "loop": a Python loop of
``train`` calls, one separately dispatched jitted run per network (compiled once,
timed warm). Prints member-steps/s for both and their ratio. The loop can be timed on
a subset (``--loop-members``) and is then extrapolated linearly, as reported.

    PYTHONPATH=. python bench/bench_train_ensemble.py [--members 100] [--steps 10000]
"""

import argparse
import time

import jax

from ntk_dist import DataSpec, FCNetwork, TrainJob, train, train_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--loop-members", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args()

    data = DataSpec(name="cubic", n_train=5, noise=0.01, seed=0)
    net = FCNetwork.make(depth=2, width=512, activation="erf", sigma_w=1.5, sigma_b=0.05)
    jobs = [
        TrainJob(net, data, 1.0, steps=args.steps, seed=s, lr_units="lambda0", dtype=args.dtype)
        for s in range(args.members)
    ]
    member_steps = args.members * args.steps

    start = time.perf_counter()
    train_batch(jobs)
    batched = time.perf_counter() - start  # compile included (once per shape)

    train(jobs[0])  # compile the single-network program
    start = time.perf_counter()
    for job in jobs[: args.loop_members]:
        train(job)
    loop = (time.perf_counter() - start) * args.members / args.loop_members

    print(
        f"device={jax.devices()[0].platform} dtype={args.dtype} members={args.members} "
        f"steps={args.steps} loop timed on {args.loop_members} members, extrapolated"
    )
    print(f"batched: {batched:.1f} s, {member_steps / batched:,.0f} member-steps/s")
    print(f"loop:    {loop:.1f} s, {member_steps / loop:,.0f} member-steps/s")
    print(f"speed-up batched/loop: {loop / batched:.2f}x")


if __name__ == "__main__":
    main()
