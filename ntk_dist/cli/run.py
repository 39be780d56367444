"""``ntk-dist run SPEC``: run or resume a phase sweep or an experiment from a YAML spec."""

from __future__ import annotations

import logging
import os


def _quiet(verbose: bool) -> None:
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    for name in ("ray", "jax", "absl", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _run(args) -> int:
    _quiet(args.verbose)
    from ntk_dist.study.results import output_dir
    from ntk_dist.study.spec import load_spec

    spec = load_spec(args.spec)  # a bad spec fails before jax, Ray or Optuna load
    out = output_dir(spec, args.out)
    if args.dry_run or args.estimate:
        print(spec.describe_plan(timed=args.estimate))
        print(f"  output: {out} (nothing written: --{'estimate' if args.estimate else 'dry-run'})")
        return 0
    started = []

    def connect():
        # Ray starts only when something is left to train: a finished rerun needs none.
        from ntk_dist.cli import handle_sigterm
        from ntk_dist.distributed.runtime import ensure_ray

        if ensure_ray(address=args.address, dashboard=args.dashboard, verbose=args.verbose):
            started.append(True)
        handle_sigterm()  # Ray replaced the handler

    try:
        return _execute(spec, out, args, connect)
    finally:
        if started:
            import ray

            ray.shutdown()  # stops the local instance's agents with the driver


def _execute(spec, out, args, connect) -> int:
    from ntk_dist.core.storage import join
    from ntk_dist.study.spec import ExperimentSpec

    say = (lambda *a: None) if args.quiet else print
    options = dict(
        resume=args.resume,
        progress=not (args.no_progress or args.quiet),
        echo=say,
        connect=connect,
    )
    if isinstance(spec, ExperimentSpec):
        from ntk_dist.study.experiments import run_experiment

        runs = run_experiment(spec, out, **options)
        say(f"{runs.num_rows} runs in {join(out, 'runs')}")
        say(f"reference: {join(out, 'reference.parquet')}")
        say(f"draw the figures with: ntk-dist report {out}")
        return 0
    from ntk_dist.study.sweep import run_sweep, summary_table

    result = run_sweep(spec, out, **options)
    say(f"{result.runs.num_rows} runs ({result.new_runs} new) in {join(out, 'runs')}")
    say(summary_table(result.boundaries))
    say(f"boundaries: {join(out, 'boundaries.parquet')}; figures: {join(out, 'figures')}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="run (or resume) a phase sweep from a YAML spec")
    p.add_argument("spec", help="sweep spec, e.g. sweeps/catapult_toy.yaml")
    p.add_argument(
        "--out",
        help="output directory or object-store URI such as s3://bucket/prefix "
        "(default: the spec's output, or results/NAME)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join ('auto' or host:port); default: a local instance on 127.0.0.1",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="require an existing sweep in the output directory (rerunning without it resumes too)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="--dry-run plus the wall time in seconds, from a short timed probe "
        "(a few seconds: one job of each width trained for 128 steps, in this process)",
    )
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="start Ray's dashboard on 127.0.0.1 (local instance only)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument(
        "-q", "--quiet", action="store_true", help="print errors only (no progress bar)"
    )
    noise.add_argument("-v", "--verbose", action="store_true", help="show Ray's and JAX's logs")
    p.set_defaults(func=_run)
