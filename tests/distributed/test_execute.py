"""Executors: planning, and one contract for the local and Ray backends.

The core distributed check (style.md): the Ray result equals the in-process one, on
ragged batches (job count not a multiple of the batch size) and mixed shapes.
"""

import numpy as np
import pyarrow as pa
import pytest

from ntk_dist.distributed.execute import (
    estimate_bytes,
    plan_batches,
    run_jobs,
    submit_jobs,
)
from ntk_dist.distributed.resources import Resources
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.engine.records import RECORD_SCHEMA
from ntk_dist.engine.train import train
from ntk_dist.models.networks import CatapultToy, FCNetwork
from ntk_dist.theory.architecture import FC

SINGLE = DataSpec(name="single", n_train=1, dim=1)
GAUSS = DataSpec(name="gaussian", n_train=4, dim=3, n_test=2)


def _mixed_jobs():
    # The networks, data and step budget of tests/distributed/test_contract_backends.py:
    # the same compiled programs serve both files (each new shape is an XLA compile).
    toy = [
        TrainJob(
            CatapultToy(width=64),
            SINGLE,
            r,
            steps=16,
            seed=s,
            lr_units="lambda0",
            tag=f"toy{r}-{s}",
        )
        for r in (0.5, 3.0, 4.5)
        for s in (0, 1)
    ]
    net = FCNetwork.make(depth=1, width=8, activation="relu")
    fc = [
        TrainJob(net, GAUSS, r, steps=16, seed=s, lr_units="lambda0", tag=f"fc{r}-{s}")
        for r in (0.5, 3.0)
        for s in (0, 1, 2)
    ]
    # Interleave so that batches are not contiguous runs of the input.
    return [j for pair in zip(fc, toy, strict=True) for j in pair]


def _same_records(a: pa.Table, b: pa.Table):
    """Equal records (NaN equal to NaN), apart from timings."""
    drop = ["wall_time_s", "batch_jobs"]
    a, b = a.drop_columns(drop), b.drop_columns(drop)
    assert a.schema.equals(b.schema)
    for ra, rb in zip(a.to_pylist(), b.to_pylist(), strict=True):
        for name, x in ra.items():
            y = rb[name]
            if isinstance(x, (float, list)):
                np.testing.assert_array_equal(np.array(x, float), np.array(y, float), name)
            else:
                assert x == y, name


def test_plan_groups_by_shape_and_cuts_to_max_batch():
    jobs = _mixed_jobs()
    batches = plan_batches(jobs, max_batch=4)
    assert sorted(len(b) for b in batches) == [2, 2, 4, 4]
    for batch in batches:
        assert len({j.batch_key for j in batch}) == 1
    assert sorted(j.tag for b in batches for j in b) == sorted(j.tag for j in jobs)


@pytest.mark.parametrize("slots, sizes", [(1, [6, 6]), (2, [3, 3, 3, 3]), (3, [2] * 6)])
def test_plan_splits_work_across_task_slots(slots, sizes):
    # Two shape groups of 6 jobs: equal batches, at least 2 per task slot.
    jobs = _mixed_jobs()
    assert sorted(len(b) for b in plan_batches(jobs, slots=slots)) == sizes


def test_plan_respects_memory():
    jobs = _mixed_jobs()
    per_job = estimate_bytes(jobs[0])
    batches = plan_batches([j for j in jobs if j.tag.startswith("fc")], memory_bytes=2 * per_job)
    assert [len(b) for b in batches] == [2, 2, 2]
    # A job bigger than the budget still runs, alone.
    assert [len(b) for b in plan_batches(jobs[:1], memory_bytes=1)] == [1]


def test_estimate_bytes_grows_with_width():
    arch = FC(depth=2, activation="erf", sigma_w=1.0)
    small = TrainJob(FCNetwork.from_arch(arch, 64), GAUSS, 0.1, steps=5)
    big = TrainJob(FCNetwork.from_arch(arch, 1024), GAUSS, 0.1, steps=5)
    # Dominated by the width^2 hidden layer: (1024/64)^2 = 256.
    assert 100 < estimate_bytes(big) / estimate_bytes(small) < 300


@pytest.fixture(scope="module")
def local_table():
    return run_jobs(_mixed_jobs(), backend="local", max_batch=4)


def test_local_rows_follow_job_order_and_schema(local_table):
    jobs = _mixed_jobs()
    assert local_table.schema.equals(RECORD_SCHEMA)
    assert local_table.column("tag").to_pylist() == [j.tag for j in jobs]
    # A job run inside a ragged batch equals the same job alone.
    _same_records(local_table.slice(1, 1), train(jobs[1]))


def test_ray_backend_equals_local(ray_local, local_table):
    table = run_jobs(_mixed_jobs(), backend="ray", max_batch=4)
    _same_records(table, local_table)


def test_submit_jobs_resolves_to_batch_tables(ray_local, local_table):
    jobs = [j for j in _mixed_jobs() if j.tag.startswith("toy")]
    refs = submit_jobs(jobs, max_batch=4)
    tables = ray_local.get(refs)
    assert [t.num_rows for t in tables] == [4, 2]
    got = pa.concat_tables(tables)
    want = local_table.filter(pa.compute.starts_with(local_table.column("tag"), "toy"))
    _same_records(got, want)


def test_resources_env_caps_threads():
    one = Resources(num_cpus=1).env_vars()
    assert one["OMP_NUM_THREADS"] == "1" and "multi_thread_eigen=false" in one["XLA_FLAGS"]
    assert one["JAX_PLATFORMS"] == "cpu"
    gpu = Resources(num_cpus=1, num_gpus=1).env_vars()
    assert "JAX_PLATFORMS" not in gpu and "XLA_FLAGS" not in gpu


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(backend="dask"), "backend"),
        (dict(max_batch=0), "max_batch"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(memory_bytes=-1), "memory_bytes"),
    ],
)
def test_run_jobs_rejects_bad_options(kwargs, field):
    with pytest.raises(ValueError, match=field):
        run_jobs(_mixed_jobs()[:1], **kwargs)


def test_resources_reject_bad_counts():
    with pytest.raises(ValueError, match="num_cpus"):
        Resources(num_cpus=0)
    with pytest.raises(ValueError, match="num_gpus"):
        Resources(num_gpus=-1)


def test_empty_job_list_gives_empty_table():
    assert run_jobs([]).schema.equals(RECORD_SCHEMA) and run_jobs([]).num_rows == 0
