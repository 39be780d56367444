"""Numerical tolerances, in one place, keyed by dtype (style.md: Tests)."""

import numpy as np

#: Relative tolerance for comparing two exact computations of the same quantity.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
#: Absolute floor for entries that should be zero.
ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def rtol(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def atol(dtype) -> float:
    return ATOL[np.dtype(dtype)]
