"""``ntk-dist report OUT``: figures and ``OUT/report.md`` from the Parquet results alone.

``OUT`` is one experiment or sweep directory, or a root of several (``ntk_dist.study.report``).
Nothing is trained. A missing or corrupt input file is named and the exit code is 2,
before anything is written.
"""

from __future__ import annotations


def _run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ntk_dist.core.storage import join, staged
    from ntk_dist.study.report import write_report

    # An object-store URI: report.md and the figures are uploaded as they are written.
    with staged(args.out) as local:
        rep = write_report(local, n_boot=args.n_boot)
    if not args.quiet:
        print(rep.text.replace(str(local), args.out))
    markdown = join(args.out, str(rep.markdown.relative_to(local)))
    print(f"wrote {markdown} and {len(rep.figures)} figure files (PNG + PDF)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="draw figures and report.md from a results directory")
    p.add_argument(
        "out",
        help="results directory or s3://... URI (one experiment/sweep, or a root of several)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the report's text")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.set_defaults(func=_run)
