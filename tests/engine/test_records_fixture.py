"""Today's records equal the stored ones of the engine before batches were padded to
bucket sizes and step counts became runtime values (tests/engine/fixtures/).

The fixture was written by that earlier engine (``make_reference_records.py``) for
the jobs of ``reference_jobs.py``: toy and FC networks, GD and momentum on minibatches, the
linearised twin, probe/test recordings, float32 and float64, several step counts.
"""

import runpy
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ntk_dist.distributed.execute import run_jobs
from tests.tolerances import rtol

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tables():
    jobs = runpy.run_path(str(FIXTURES / "reference_jobs.py"))["reference_jobs"]()
    want = pq.read_table(FIXTURES / "reference_records.parquet")
    got = run_jobs(jobs, backend="local").drop_columns(["wall_time_s", "batch_jobs"])
    return got, want


def _flat(value):
    return np.asarray(value if isinstance(value, list) else [value], dtype=float).ravel()


def test_records_equal_the_stored_records(tables):
    got, want = tables
    # Columns added to the records since the fixture was written hold the values its
    # runs implied (NTK parameterisation, NTK sharpness, the readout sharing sigma_w).
    added = [n for n in got.column_names if n not in want.column_names]
    assert sorted(added) == ["parameterization", "readout_sigma_w", "sharpness"]
    assert set(got.column("parameterization").to_pylist()) == {"ntk"}
    assert set(got.column("sharpness").to_pylist()) == {"ntk"}
    assert got.column("readout_sigma_w").equals(got.column("sigma_w"))
    got = got.select(want.column_names)
    assert got.schema.equals(want.schema)
    assert got.column("tag").to_pylist() == want.column("tag").to_pylist()
    dtypes = got.column("dtype").to_pylist()
    for name in got.column_names:
        pairs = zip(got.column(name).to_pylist(), want.column(name).to_pylist(), strict=True)
        for i, (a, b) in enumerate(pairs):
            assert (a is None) == (b is None), (name, i)
            if a is None or isinstance(a, str):
                assert a == b, (name, i)
                continue
            if isinstance(a, list) and a and isinstance(a[0], list):
                a, b = [x for r in a for x in r], [x for r in b for x in r]
            tol = rtol(np.float32 if dtypes[i] == "float32" else np.float64)
            np.testing.assert_allclose(
                _flat(a), _flat(b), rtol=tol, atol=tol, equal_nan=True, err_msg=f"{name}[{i}]"
            )
