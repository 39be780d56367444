"""Session-wide test setup: float64 JAX, one local Ray instance on loopback."""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

# Precision-critical tests compare to 1e-10; float32 tests pass float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance (2 CPUs, 127.0.0.1, dashboard off), started once per session."""
    import ray

    from ntk_dist.distributed.runtime import ensure_ray

    started = ensure_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()
