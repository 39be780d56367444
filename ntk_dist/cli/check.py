"""``ntk-dist check OUT``: verify a sweep, experiment or Gram output directory.

Exit code 0 with a one-line summary when the directory is consistent; exit code 2
with one line per problem, each naming the file, otherwise (``ntk_dist.study.check``).
``--repair`` first moves corrupt part files of a sweep to ``OUT/quarantine/``
(``ntk_dist.study.verify``); the next ``ntk-dist run`` retrains exactly their runs.
"""

from __future__ import annotations

import sys


def _check(args) -> int:
    from ntk_dist.core.storage import staged
    from ntk_dist.study.check import check_results

    if args.repair:
        from ntk_dist.core.files import exclusive_lock
        from ntk_dist.core.storage import is_uri
        from ntk_dist.study.verify import repair

        if is_uri(args.out):
            raise ValueError(
                f"check --repair works on a local directory, got {args.out}; a resumed "
                "`ntk-dist run` quarantines and retrains corrupt part files there too"
            )
        with exclusive_lock(args.out, "ntk-dist run or check --repair"):
            if repair(args.out, echo=lambda line: print(line, file=sys.stderr)):
                print(f"rerun `ntk-dist run` on {args.out} to retrain the quarantined runs")
    # An object-store URI is checked on a downloaded copy; nothing is written there.
    with staged(args.out, mirror=False) as local:
        report = check_results(local)
    named = lambda line: line.replace(str(local), args.out)  # noqa: E731
    if not report.problems:
        print(f"{named(report.summary)}: OK")
        return 0
    print(named(report.summary), file=sys.stderr)
    print(f"{len(report.problems)} problem(s):", file=sys.stderr)
    for line in report.problems:
        print(f"  {named(line)}", file=sys.stderr)
    return 2


def register(sub) -> None:
    p = sub.add_parser("check", help="verify a results directory (schemas, files, study)")
    p.add_argument("out", help="output directory (or s3://... URI) of a sweep, experiment or Gram")
    p.add_argument(
        "--repair",
        action="store_true",
        help="move corrupt part files to OUT/quarantine/ (the next `ntk-dist run` retrains "
        "their runs), then check",
    )
    p.set_defaults(func=_check)
