"""``ntk-dist report OUT``: figures and ``OUT/report.md`` from the Parquet results alone.

``OUT`` is one experiment or sweep directory, or a root of several (``ntk_dist.study.report``).
Nothing is trained. A missing or corrupt input file is named and the exit code is 2,
before anything is written.
"""

from __future__ import annotations


def _run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ntk_dist.study.report import write_report

    rep = write_report(args.out, n_boot=args.n_boot)
    print(rep.text)
    print(f"wrote {rep.markdown} and {len(rep.figures)} figure files (PNG + PDF)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="draw figures and report.md from a results directory")
    p.add_argument("out", help="results directory (one experiment/sweep, or a root of several)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.set_defaults(func=_run)
