"""Benchmark (b): the catapult toy grid through Ray against hand-written JAX and Ray Tune.

Toy model n = 4096 on one sample (docs/theory.md §5), 64 values of eta * lambda0 in
[0.5, 5] x 4 seeds x 1000 GD steps = 256 runs, float64, default record schedule.

- "ntk_dist": ``run_jobs(jobs, backend="ray")`` with automatic settings on a local
  2-CPU Ray instance (1-CPU tasks), warm (the second call: workers and compiled
  programs reused).
- "hand-written": two single-thread processes (XLA single-threaded), each training
  half of the grid from the same initial parameters with a jitted GD loop, recording
  the final loss and lambda only; timed warm inside each process (after a compile
  call), the wall time of the pair. Each process times every variant of
  :data:`VARIANTS` (gradient by ``jax.grad`` or in closed form, runs batched by
  ``lax.map`` in chunks or one ``vmap``) and the best variant's pair time is kept.
- "cold": fresh processes end to end (Python start, Ray start, imports, compiles;
  ntk_dist with an empty compilation cache): ntk_dist ``run_jobs`` against Ray Tune
  + OptunaSearch (``reuse_actors=True``, 1 CPU per trial, a grid sampler over the
  same 256 runs, each trial the hand-written single-run loop).

The warm arms alternate over ``--repeats`` passes; the best pass is kept.

    PYTHONPATH=. python bench/bench_train_ray.py [--steps 1000] [--repeats 2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

WIDTH, RATES, SEEDS = 4096, 64, 4
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def grid():
    return [(float(r), s) for r in np.linspace(0.5, 5.0, RATES) for s in range(SEEDS)]


def toy_step_fn():
    """Plain-JAX GD on the toy, f = v.u x / sqrt(n), x = 1, y = 0 (loss f^2 / 2)."""
    import jax
    import jax.numpy as jnp

    def loss(p):
        return 0.5 * (p["v"][:, 0] @ p["u"][:, 0] / jnp.sqrt(WIDTH)) ** 2

    def one(p, rate, steps):
        lam0 = (jnp.sum(p["u"] ** 2) + jnp.sum(p["v"] ** 2)) / WIDTH
        eta = rate / lam0
        step = lambda _, q: jax.tree.map(lambda a, g: a - eta * g, q, jax.grad(loss)(q))
        q = jax.lax.fori_loop(0, steps, step, p)
        return loss(q), (jnp.sum(q["u"] ** 2) + jnp.sum(q["v"] ** 2)) / WIDTH

    return one


def toy_closed_form():
    """The same GD in closed form on flat vectors: f = v.u / sqrt(n), du = f v / sqrt(n),
    dv = f u / sqrt(n); lambda = (|u|^2 + |v|^2) / n only at the end."""
    import jax

    scale = 1.0 / np.sqrt(WIDTH)

    def one(p, rate, steps):
        u, v = p["u"][:, 0], p["v"][:, 0]
        eta = rate * WIDTH / (u @ u + v @ v)

        def step(_, c):
            u, v = c
            g = eta * (v @ u) * scale * scale
            return u - g * v, v - g * u

        u, v = jax.lax.fori_loop(0, steps, step, (u, v))
        return 0.5 * ((v @ u) * scale) ** 2, (u @ u + v @ v) / WIDTH

    return one


#: Hand-written variants: (gradient, batching); ("map", c) is ``lax.map`` in chunks of
#: c runs, ("vmap", None) one ``vmap`` over all runs of the process.
VARIANTS = [
    ("grad", ("map", 8)),
    ("closed", ("map", 1)),
    ("closed", ("map", 4)),
    ("closed", ("map", 16)),
    ("closed", ("vmap", None)),
]


def initial(points):
    import jax

    from ntk_dist import CatapultToy, DataSpec, TrainJob
    from ntk_dist.engine.train import initial_params

    data = DataSpec(name="single", n_train=1, dim=1)
    params = [
        initial_params(TrainJob(CatapultToy(width=WIDTH), data, r, steps=1, seed=s))
        for r, s in points
    ]
    return jax.tree.map(lambda *a: np.stack(a), *params)


def handwritten(part: int, steps: int) -> None:
    """One of the two hand-written processes: prints each variant's warm time (JSON)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    points = grid()[part::2]
    params = initial(points)
    rates = np.asarray([r for r, _ in points])
    times = {}
    for grad, (batching, size) in VARIANTS:
        one = toy_step_fn() if grad == "grad" else toy_closed_form()
        if batching == "map":
            fn = lambda p, r, n, one=one, size=size: jax.lax.map(
                lambda a: one(*a, n), (p, r), batch_size=size
            )
        else:
            fn = lambda p, r, n, one=one: jax.vmap(one, in_axes=(0, 0, None))(p, r, n)
        run = jax.jit(fn)
        jax.block_until_ready(run(params, rates, 1))
        start = time.perf_counter()
        jax.block_until_ready(run(params, rates, steps))
        times[f"{grad} {batching} {size or 'all'}"] = time.perf_counter() - start
    print(json.dumps(times))


def handwritten_pair(steps: int) -> dict:
    """Pair wall time of each variant (the slower of the two processes)."""
    env = dict(os.environ, XLA_FLAGS=SINGLE_THREAD, OMP_NUM_THREADS="1", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, __file__, "--steps", str(steps), "--handwritten"]
    procs = [subprocess.Popen([*cmd, str(p)], stdout=subprocess.PIPE, env=env) for p in (0, 1)]
    outs = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1]) for p in procs]
    return {name: max(o[name] for o in outs) for name in outs[0]}


def ntk_jobs(steps):
    from ntk_dist import CatapultToy, DataSpec, TrainJob

    data = DataSpec(name="single", n_train=1, dim=1)
    return [
        TrainJob(
            CatapultToy(width=WIDTH),
            data,
            r,
            steps=steps,
            seed=s,
            lr_units="lambda0",
            tag=f"{r}:{s}",
        )
        for r, s in grid()
    ]


def cold_ntk(steps: int) -> None:
    from ntk_dist import ensure_ray, run_jobs

    ensure_ray(num_cpus=2)
    table = run_jobs(ntk_jobs(steps), backend="ray")
    print(json.dumps({"runs": table.num_rows}))


def cold_tune(steps: int) -> None:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from ntk_dist.distributed.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    rates = sorted({r for r, _ in grid()})

    def trainable(config):
        import jax

        jax.config.update("jax_enable_x64", True)
        global _TUNE_RUN  # compiled once per actor; reuse_actors keeps the process
        if "_TUNE_RUN" not in globals():
            _TUNE_RUN = jax.jit(toy_step_fn(), static_argnums=2)
        params = jax.tree.map(lambda a: a[0], initial([(config["rate"], config["seed"])]))
        loss, lam = _TUNE_RUN(params, config["rate"], steps)
        tune.report({"loss": float(loss), "lambda": float(lam)})

    space = {"rate": rates, "seed": list(range(SEEDS))}
    search = OptunaSearch(
        space={"rate": tune.choice(rates), "seed": tune.choice(list(range(SEEDS)))},
        sampler=optuna.samplers.GridSampler(space, seed=0),
        metric="loss",
        mode="min",
    )
    env = {"XLA_FLAGS": SINGLE_THREAD, "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(
                search_alg=search, num_samples=len(grid()), reuse_actors=True
            ),
            run_config=tune.RunConfig(storage_path=tmp, verbose=0),
        )
        os.environ.update(env)
        results = tuner.fit()
    print(json.dumps({"runs": len(results)}))
    ray.shutdown()


def cold(arm: str, steps: int) -> float:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        env["NTK_DIST_CACHE_DIR"] = cache
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--steps", str(steps), "--cold", arm],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--handwritten", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cold", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--cold-only", action="store_true")
    args = parser.parse_args()
    if args.handwritten is not None:
        return handwritten(args.handwritten, args.steps)
    if args.cold is not None:
        return cold_ntk(args.steps) if args.cold == "ntk_dist" else cold_tune(args.steps)

    from ntk_dist import ensure_ray, run_jobs

    n = len(grid())
    print(f"load before: {os.getloadavg()}", flush=True)
    if args.cold_only:
        return cold_arms(n, args)
    ensure_ray(num_cpus=2)
    jobs = ntk_jobs(args.steps)
    run_jobs(jobs, backend="ray")  # workers started, programs compiled
    best = {"ntk_dist": float("inf")}
    for _ in range(args.repeats):
        start = time.perf_counter()
        run_jobs(jobs, backend="ray")
        best["ntk_dist"] = min(best["ntk_dist"], time.perf_counter() - start)
        for name, t in handwritten_pair(args.steps).items():
            best[name] = min(best.get(name, float("inf")), t)
    for name, t in best.items():
        print(f"warm {name:18s} {t:6.2f} s  {n / t:6.1f} runs/s", flush=True)
    hand = min(t for name, t in best.items() if name != "ntk_dist")
    print(f"ntk_dist / best hand-written: {hand / best['ntk_dist']:.2f}", flush=True)
    print(f"load after: {os.getloadavg()}", flush=True)
    if args.skip_cold:
        return
    import ray

    ray.shutdown()
    cold_arms(n, args)


def cold_arms(n, args) -> None:
    times = {}
    for arm in ("ntk_dist", "tune", "ntk_dist", "tune")[: 2 * args.repeats]:
        times[arm] = min(times.get(arm, float("inf")), cold(arm, args.steps))
    for arm, t in times.items():
        print(f"cold {arm:9s} {t:6.1f} s  {n / t:6.1f} runs/s", flush=True)
    print(f"cold tune / ntk_dist: {times['tune'] / times['ntk_dist']:.2f}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
