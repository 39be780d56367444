"""Software provenance: the versions a stored result depends on."""

from __future__ import annotations

import importlib.metadata as md
import platform


def versions() -> dict[str, str]:
    """Versions of ntk_dist, jax, jaxlib, ray, optuna, pyarrow, numpy, Python and the
    platform, read from the installed distributions (nothing is imported)."""
    out = {}
    for dist in ("ntk_dist", "jax", "jaxlib", "ray", "optuna", "pyarrow", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    return out
