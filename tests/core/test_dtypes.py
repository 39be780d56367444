"""The float64 rule: float64 input without jax_enable_x64 is refused, never truncated."""

import jax
import numpy as np
import pytest

from ntk_dist.core.dtypes import require_x64, x64_enabled
from ntk_dist.theory.architecture import FC
from ntk_dist.theory.kernels import fc_kernel
from ntk_dist.theory.solve import kernel_regression

X = np.linspace(-1.0, 1.0, 6).reshape(3, 2)


def test_float64_without_x64_is_an_error_naming_the_fix():
    with jax.enable_x64(False):
        assert not x64_enabled()
        with pytest.raises(ValueError, match=r"fc_kernel got float64 input.*jax_enable_x64"):
            fc_kernel(X, arch=FC())
        with pytest.raises(ValueError, match=r"fc_kernel got float64.*float32 arrays"):
            fc_kernel(X.astype(np.float32), X, arch=FC())  # either argument
        with pytest.raises(ValueError, match=r"kernel_regression computes in float64"):
            kernel_regression(X, np.ones(3), arch=FC())
        # float32 stays float32, as JAX computes it
        assert fc_kernel(X.astype(np.float32), arch=FC()).ntk.dtype == np.float32


def test_float64_with_x64_is_computed_in_float64():
    with jax.enable_x64(True):
        assert x64_enabled()
        require_x64("anything")  # nothing to refuse
        k = fc_kernel(X, arch=FC())
        assert k.ntk.dtype == np.float64 and k.nngp.dtype == np.float64
