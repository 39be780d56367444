"""``ntk-dist version``: versions of ntk_dist and the libraries results depend on."""

from __future__ import annotations

import importlib.metadata as md
import platform


def versions() -> dict[str, str]:
    """Versions of ntk_dist, jax, jaxlib, ray, optuna, pyarrow, numpy and the platform."""
    out = {}
    for dist in ("ntk_dist", "jax", "jaxlib", "ray", "optuna", "pyarrow", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    return out


def _run(args) -> int:
    for name, ver in versions().items():
        print(f"{name:10s} {ver}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("version", help="print versions of ntk_dist and its dependencies")
    p.set_defaults(func=_run)
