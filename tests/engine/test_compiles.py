"""A sweep's batches share compiled programs: counted with JAX's compile events.

Every request to XLA to compile ``_run_chunk`` (``/jax/core/compile/backend_compile_duration``,
recorded also when the persistent cache supplies the program) is counted; calls that
reuse an in-memory program record none. Step counts, record steps and learning rates
are runtime values and batch sizes are padded to powers of two, so the count depends
only on the chunk sizes a batch needs.
"""

import contextlib

import jax
import pytest

from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.engine.train import chunk_sizes, train_batch
from ntk_dist.models.networks import CatapultToy

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compiles():
    names = []

    def listen(event, _duration, **kwargs):
        if event == BACKEND_COMPILE and "_run_chunk" in kwargs.get("fun_name", ""):
            names.append(kwargs["fun_name"])

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _jobs(n, steps, rate, width=48):
    toy, data = CatapultToy(width=width), DataSpec(name="single", n_train=1, dim=1)
    return [
        TrainJob(toy, data, rate, steps=steps, seed=s, lr_units="lambda0", record=(0, 5, steps))
        for s in range(n)
    ]


def test_steps_rates_and_job_counts_share_programs():
    with compiles() as first:
        for steps, rate in ((20, 1.0), (30, 2.5), (45, 3.5)):
            train_batch(_jobs(2, steps, rate))
    assert len(first) == 1  # three step budgets, one program of chunk 2
    with compiles() as more:
        train_batch(_jobs(3, 25, 1.5))  # 3 jobs: padded to a chunk of 4
        train_batch(_jobs(4, 35, 0.5))
        train_batch(_jobs(2, 50, 3.0))
    assert len(more) == 1


@pytest.mark.parametrize(
    "n, chunk, sizes",
    [(8, 8, [8]), (11, 8, [8, 4]), (3, 8, [4]), (17, 8, [8, 8, 1]), (15, 10, [10, 8])],
)
def test_chunk_sizes_are_full_chunks_then_a_power_of_two(n, chunk, sizes):
    assert chunk_sizes(n, chunk) == sizes
