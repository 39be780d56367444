"""The float64 rule of the public kernel entry points.

JAX computes in float32 unless ``jax_enable_x64`` is on, and silently truncates float64
arrays to float32 when it is off. ntk_dist never lets that happen unannounced: float64
in means float64 computed and returned, so an entry point given float64 input (or one
that always works in float64) while x64 is off raises a ValueError that says how to turn
it on. Float32 input is computed in float32 either way. (``ntk_dist.gram`` needs no
check: its Ray workers enable x64 themselves for float64 input.)
"""

from __future__ import annotations

import numpy as np


def x64_enabled() -> bool:
    """Whether JAX computes float64 here and now (``jax_enable_x64``, or inside
    ``jax.enable_x64(True)``)."""
    import jax

    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


def require_x64(what: str, *arrays) -> None:
    """Refuse float64 work while JAX would truncate it to float32 (module docstring).

    Args:
      what: the entry point, named in the message (``"fc_kernel"``).
      arrays: its inputs (``None`` entries are skipped); with none given, ``what``
        always computes in float64 and x64 is required outright.

    Raises:
      ValueError: ``what`` needs float64 and ``jax_enable_x64`` is off.
    """
    given = [a for a in arrays if a is not None]
    wide = [a for a in given if np.dtype(getattr(a, "dtype", np.float32)) == np.float64]
    if (given and not wide) or x64_enabled():
        return
    cause, alternative = (
        ("got float64 input", ", or pass float32 arrays")
        if given
        else (
            "computes in float64",
            "",
        )
    )
    raise ValueError(
        f"{what} {cause}, but jax_enable_x64 is off and JAX would silently truncate it to "
        "float32; call jax.config.update('jax_enable_x64', True) first (or run inside "
        f"`with jax.enable_x64(True):`){alternative}"
    )
