"""Square NNGP+NTK Gram (fc_kernel) in float32 against neural-tangents and the X X^T floor.

Usage:
  python -m bench.bench_kernels [--sizes 4096 8192] [--activations erf relu]
      [--repeats 3] [--rounds 1] [--depth 3] [--dim 64] [--nt-python PATH]

Each measurement runs in its own subprocess: ntk_dist (this interpreter) and
neural-tangents 0.6.5 (``--nt-python``, or the ``NT_PYTHON`` environment variable),
alternating which side goes first. neural-tangents does not import on current JAX,
so it needs a venv of its own:

  python3 -m venv /tmp/ntvenv
  /tmp/ntvenv/bin/pip install neural-tangents==0.6.5 'jax[cpu]==0.4.30' 'numpy<2'

Without it only ntk_dist and the floor are measured. Each line: best-of-``repeats``
seconds and entries/s counting all N^2 entries (both kernels), and for ntk_dist the
X X^T product alone on the same X (the floor), its ratio to it, and the largest
float32 error against the float64 Gram, relative to sqrt(K(x, x) K(x', x'))
(docs/theory.md §2.4).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _inputs(n: int, dim: int):
    import numpy as np

    return np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)


def _best(fn, repeats: int) -> float:
    fn()  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _worker_ntk_dist(n, act, depth, dim, repeats, check) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # float32 inputs stay float32
    import jax.numpy as jnp
    import numpy as np

    from ntk_dist.theory.kernels import fc_kernel

    x = jnp.asarray(_inputs(n, dim))
    kw = dict(depth=depth, activation=act, sigma_w=1.5, sigma_b=0.05)
    gram = jax.jit(lambda a: jnp.matmul(a, a.T, precision=jax.lax.Precision.HIGHEST))
    out = {"floor_s": _best(lambda: gram(x).block_until_ready(), repeats)}
    out["seconds"] = _best(lambda: jax.block_until_ready(tuple(fc_kernel(x, **kw))), repeats)
    if check:
        k32, k64 = fc_kernel(x, **kw), fc_kernel(np.asarray(x, np.float64), **kw)
        err = 0.0
        for name in ("nngp", "ntk"):
            hi = np.asarray(getattr(k64, name))
            d = np.sqrt(np.diag(hi))
            lo = np.asarray(getattr(k32, name), np.float64)
            err = max(err, float((np.abs(lo - hi) / np.outer(d, d)).max()))
        out["float32_error"] = err
    return out


def _worker_nt(n, act, depth, dim, repeats, check) -> dict:
    import jax
    import neural_tangents as nt
    from neural_tangents import stax

    phi = {"erf": stax.Erf, "relu": stax.Relu}[act]
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=1.5, b_std=0.05), phi()]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=1.5, b_std=0.05))
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    x = jax.numpy.asarray(_inputs(n, dim))
    seconds = _best(lambda: jax.block_until_ready(kernel_fn(x, None, ("nngp", "ntk"))), repeats)
    return {"seconds": seconds, "version": nt.__version__, "jax": jax.__version__}


def _run(side: str, python: str, args, n: int, act: str) -> dict:
    script = os.path.abspath(__file__)
    cmd = [python, script, "--worker", side, "--sizes", str(n), "--activations", act]
    cmd += ["--depth", str(args.depth), "--dim", str(args.dim), "--repeats", str(args.repeats)]
    if args.check_size and n >= args.check_size:
        cmd.append("--check")
    root = os.path.dirname(os.path.dirname(script))
    env = dict(os.environ, PYTHONPATH=root if side == "ntk_dist" else "")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--activations", nargs="+", default=["erf", "relu"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the two sides")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--nt-python", default=os.environ.get("NT_PYTHON"))
    parser.add_argument(
        "--check-size", type=int, default=8192, help="float32-vs-float64 check from this N (0: off)"
    )
    parser.add_argument("--worker", choices=["ntk_dist", "nt"], help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        fn = _worker_ntk_dist if args.worker == "ntk_dist" else _worker_nt
        n, act = args.sizes[0], args.activations[0]
        print(json.dumps(fn(n, act, args.depth, args.dim, args.repeats, args.check)))
        return
    sides = [("ntk_dist", sys.executable)]
    if args.nt_python:
        sides.append(("nt", args.nt_python))
    else:
        print("neural-tangents not measured: pass --nt-python (see the module docstring)")
    print(f"loadavg at start {os.getloadavg()}")
    turn = 0
    for n in args.sizes:
        for act in args.activations:
            best = {}
            for _ in range(args.rounds):
                order = sides if turn % 2 == 0 else sides[::-1]
                turn += 1
                for side, python in order:
                    res = _run(side, python, args, n, act)
                    if side not in best or res["seconds"] < best[side]["seconds"]:
                        best[side] = res
            ours = best["ntk_dist"]
            line = (
                f"N={n} {act} depth={args.depth}: ntk_dist {ours['seconds']:.3f} s "
                f"{n * n / ours['seconds'] / 1e6:.1f} M/s; X X^T floor "
                f"{n * n / ours['floor_s'] / 1e6:.1f} M/s ({ours['seconds'] / ours['floor_s']:.1f}x"
                " its time)"
            )
            if "float32_error" in ours:
                line += f"; float32 error {ours['float32_error']:.1e}"
            if "nt" in best:
                theirs = best["nt"]["seconds"]
                line += (
                    f"; neural-tangents {best['nt']['version']} {theirs:.3f} s "
                    f"{n * n / theirs / 1e6:.1f} M/s; ratio {theirs / ours['seconds']:.2f}x"
                )
            print(line + f"; loadavg {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
