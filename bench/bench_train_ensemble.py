"""Benchmark (a): the seeds' ensemble, ``train_batch`` against hand-written JAX.

100 erf networks (2 hidden layers of width 512, sigma_w = 1.5, sigma_b = 0.05) trained
by full-batch GD on the 5-point cubic problem (docs/theory.md §6.1), eta * lambda0 = 1,
float32. Arms, interleaved over ``--repeats`` passes (best pass kept), all warm
(compiled before timing):

- "ntk_dist": ``train_batch(jobs)`` with automatic settings (chunk size from the CPU
  table, default record schedule: loss, lambda_t at ~100 steps, divergence tracking);
- "ntk_dist chunk 10": the same with ``chunk_size=10``;
- "plain lax.map/10": the same networks from the same initial parameters, a
  hand-written jitted GD loop (``lax.fori_loop``) with ``lax.map(batch_size=10)`` over
  members, recording nothing but the final loss;
- "plain vmap" (``--vmap``): the same loop vmapped over all members at once.

Prints member-steps/s of each arm and ntk_dist's ratio to the best plain arm.

    PYTHONPATH=. python bench/bench_train_ensemble.py [--members 100] [--steps 1000]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_dist import DataSpec, FCNetwork, TrainJob, train_batch
from ntk_dist.engine.data import load
from ntk_dist.engine.train import initial_params


def ensemble_problem(members: int):
    """The ensemble of the module docstring: ``(jobs, params, eta, one)``, with
    ``jobs(steps, dtype="float32")`` its TrainJobs, ``params`` their initial parameters
    stacked along a leading axis, ``eta`` their learning rates and ``one(p, lr, steps)``
    the final loss of a hand-written GD loop on one member."""
    data = DataSpec(name="cubic", n_train=5, noise=0.01, seed=0)
    net = FCNetwork.make(depth=2, width=512, activation="erf", sigma_w=1.5, sigma_b=0.05)

    def jobs(steps, dtype="float32"):
        return [
            TrainJob(net, data, 1.0, steps=steps, seed=s, lr_units="lambda0", dtype=dtype)
            for s in range(members)
        ]

    d = load(data)
    x, y = jnp.asarray(d.x_train, jnp.float32), jnp.asarray(d.y_train, jnp.float32)
    params = jax.tree.map(lambda *a: jnp.stack(a), *[initial_params(j) for j in jobs(1)])
    eta = jnp.asarray(train_batch(jobs(1)).column("learning_rate").to_numpy(), jnp.float32)
    loss = lambda p: 0.5 * jnp.sum((net.apply(p, x) - y) ** 2) / x.shape[0]

    def one(p, lr, steps):
        step = lambda _, q: jax.tree.map(lambda a, g: a - lr * g, q, jax.grad(loss)(q))
        return loss(jax.lax.fori_loop(0, steps, step, p))

    return jobs, params, eta, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vmap", action="store_true", help="add the plain vmap arm (slow)")
    args = parser.parse_args()

    jobs, params, eta, one = ensemble_problem(args.members)
    mapped = jax.jit(lambda p, lr, n: jax.lax.map(lambda a: one(*a, n), (p, lr), batch_size=10))
    vmapped = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    arms = {
        "ntk_dist": lambda n: train_batch(jobs(n)).column("loss_final").to_numpy(),
        "ntk_dist chunk 10": lambda n: (
            train_batch(jobs(n), chunk_size=10).column("loss_final").to_numpy()
        ),
        "plain lax.map/10": lambda n: np.asarray(mapped(params, eta, n)),
    }
    if args.vmap:
        arms["plain vmap"] = lambda n: np.asarray(vmapped(params, eta, n))
    for arm in arms.values():
        arm(2)  # compile (step counts are runtime values in every arm)
    best = dict.fromkeys(arms, float("inf"))
    finals = {}
    for _ in range(args.repeats):
        for name, arm in arms.items():
            start = time.perf_counter()
            finals[name] = arm(args.steps)
            best[name] = min(best[name], time.perf_counter() - start)
            print(f"  {name}: {time.perf_counter() - start:.2f} s", flush=True)
    member_steps = args.members * args.steps
    rate = {name: member_steps / t for name, t in best.items()}
    print(f"device={jax.devices()[0].platform} float32 members={args.members} steps={args.steps}")
    for name, r in rate.items():
        print(f"{name:18s} {best[name]:7.2f} s  {r:10,.0f} member-steps/s")
    plain = max(r for name, r in rate.items() if name.startswith("plain"))
    print(f"ntk_dist / best plain: {rate['ntk_dist'] / plain:.2f}")
    gap = np.max(np.abs(finals["ntk_dist"] - finals["plain lax.map/10"]) / finals["ntk_dist"])
    print(f"final losses agree to {gap:.1e} (relative)")


if __name__ == "__main__":
    main()
