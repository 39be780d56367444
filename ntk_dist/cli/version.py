"""``ntk-dist version``: versions of ntk_dist and the libraries results depend on."""

from __future__ import annotations

from ntk_dist.core.provenance import versions


def _run(args) -> int:
    for name, ver in versions().items():
        print(f"{name:10s} {ver}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("version", help="print versions of ntk_dist and its dependencies")
    p.set_defaults(func=_run)
