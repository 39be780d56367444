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


#: The smallest sweep tests compare against: one toy width, 6 points in 2 rounds of 3
#: (two part files), one seed, 64 steps.
TINY_SWEEP = {
    "name": "tiny",
    "model": {"kind": "toy", "widths": [64]},
    "training": {"seeds": 1, "steps": 64},
    "search": {"eta_lambda0": [1.0, 5.0], "n_trials": 6, "parallel": 3},
}


@pytest.fixture
def tiny_sweep_spec() -> dict:
    """The spec of :func:`tiny_sweep`, as a fresh dict a test may change."""
    import copy

    return copy.deepcopy(TINY_SWEEP)


@pytest.fixture(scope="session")
def tiny_sweep(ray_local, tmp_path_factory):
    """:data:`TINY_SWEEP`, run once per session (a SweepResult). Read only: a test that
    changes the directory copies ``out_dir`` first (``shutil.copytree`` to tmp_path)."""
    from ntk_dist.study.spec import parse_spec
    from ntk_dist.study.sweep import run_sweep

    out = tmp_path_factory.mktemp("tiny_sweep") / "out"
    return run_sweep(parse_spec(TINY_SWEEP), out, progress=False)


@pytest.fixture
def no_figures(monkeypatch):
    """Sweeps run in this process draw no figures (seconds of matplotlib each), for tests
    of something else; ``ntk-dist run`` subprocesses still draw theirs."""
    from ntk_dist.study import sweep

    monkeypatch.setattr(sweep, "_figures", lambda *a: None)


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on 127.0.0.1 with one empty bucket (:func:`tests.servers.s3_server`);
    yields the AWS variables pointing at it, already set in ``os.environ``."""
    from tests.servers import s3_server

    with s3_server() as env:
        yield env
