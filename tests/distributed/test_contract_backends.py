"""One contract, run against every backend of ``ntk_dist.distributed.execute.run_jobs``.

On a small ragged set of jobs (toy and FC networks, so two shape groups, with batch
sizes that do not divide the job count) every backend returns one record per
job in job order, in RECORD_SCHEMA, each equal to that job trained alone in this
process; so all backends give the same table (to float rounding), whatever the
batches they cut.
"""

import numpy as np
import pyarrow as pa
import pytest

from ntk_dist.distributed.execute import BACKENDS, plan_batches, run_jobs
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.engine.records import RECORD_SCHEMA
from ntk_dist.engine.train import train
from ntk_dist.models.networks import CatapultToy, FCNetwork
from tests.tolerances import atol, rtol

#: Columns that describe how a job ran, not what it computed.
TIMING = ["wall_time_s", "batch_jobs"]
#: Batch sizes that do not divide the job count (11); each leaves a ragged last batch.
MAX_BATCHES = [3, 4]


def _jobs() -> list[TrainJob]:
    single = DataSpec(name="single", n_train=1, dim=1)
    gauss = DataSpec(name="gaussian", n_train=4, dim=3, n_test=2)
    toy_net = CatapultToy(width=64)
    toy = [
        TrainJob(toy_net, single, r, steps=16, seed=s, lr_units="lambda0", tag=f"toy{r}-{s}")
        for r in (0.5, 3.0, 4.5)
        for s in (0, 1)
    ]
    net = FCNetwork.make(depth=1, width=8, activation="relu")
    fc = [
        TrainJob(net, gauss, r, steps=16, seed=s, lr_units="lambda0", tag=f"fc{r}-{s}")
        for r in (0.5, 3.0)
        for s in (0, 1)
    ] + [TrainJob(net, gauss, 1.5, steps=16, seed=7, lr_units="lambda0", tag="fc1.5-7")]
    # Interleaved, so that no batch is a contiguous run of the input: 11 jobs, 6 + 5.
    mixed = [j for pair in zip(toy, fc, strict=False) for j in pair]
    return mixed + toy[len(fc) :]


def _assert_same_records(got: pa.Table, want: pa.Table) -> None:
    """Same columns and types; equal values (floats to rounding, NaN equal to NaN)."""
    got, want = got.drop_columns(TIMING), want.drop_columns(TIMING)
    assert got.schema.equals(want.schema)
    assert got.num_rows == want.num_rows
    for name in got.column_names:
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        if pa.types.is_floating(got.schema.field(name).type) or pa.types.is_list(
            got.schema.field(name).type
        ):
            for x, y in zip(a, b, strict=True):
                assert (x is None) == (y is None), name
                if x is not None:
                    x, y = np.asarray(x, float), np.asarray(y, float)
                    np.testing.assert_allclose(
                        x, y, rtol=rtol(np.float64), atol=atol(np.float64), err_msg=name
                    )
        else:
            assert a == b, name


@pytest.fixture(scope="module")
def alone() -> pa.Table:
    """Each job trained on its own, in this process: the reference."""
    return pa.concat_tables([train(j) for j in _jobs()])


@pytest.fixture(scope="module")
def tables(request) -> dict:
    """``run_jobs`` per (backend, max_batch), computed once for the module."""
    request.getfixturevalue("ray_local")
    return {
        (b, m): run_jobs(_jobs(), backend=b, max_batch=m) for b in BACKENDS for m in MAX_BATCHES
    }


def test_the_job_set_is_ragged():
    jobs = _jobs()
    groups = {}
    for j in jobs:
        groups[j.batch_key] = groups.get(j.batch_key, 0) + 1
    assert sorted(groups.values()) == [5, 6]
    for m in MAX_BATCHES:
        sizes = [len(b) for b in plan_batches(jobs, max_batch=m)]
        assert len(set(sizes)) > 1 and len(jobs) % m != 0, sizes


@pytest.mark.parametrize("max_batch", MAX_BATCHES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_follow_the_jobs_in_the_record_schema(backend, max_batch, tables):
    table = tables[backend, max_batch]
    assert table.schema.equals(RECORD_SCHEMA)
    assert table.column("tag").to_pylist() == [j.tag for j in _jobs()]


@pytest.mark.parametrize("max_batch", MAX_BATCHES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_record_equals_the_job_trained_alone(backend, max_batch, tables, alone):
    _assert_same_records(tables[backend, max_batch], alone)


@pytest.mark.parametrize("max_batch", MAX_BATCHES)
def test_backends_give_identical_tables(max_batch, tables):
    first, *others = BACKENDS
    for other in others:
        _assert_same_records(tables[other, max_batch], tables[first, max_batch])
