"""The Parquet store: atomic part files, corrupt files named, schemas documented in the README."""

from pathlib import Path

import pyarrow as pa
import pytest

from ntk_dist.store import RUN_SCHEMA, append_runs, describe_schemas, read_runs

ROOT = Path(__file__).resolve().parents[1]


def test_readme_documents_the_schemas_as_declared():
    assert describe_schemas() in (ROOT / "README.md").read_text()


def test_empty_dataset_and_corrupt_part_is_named(tmp_path):
    assert read_runs(tmp_path).num_rows == 0
    (tmp_path / "runs").mkdir()
    bad = tmp_path / "runs" / "part-broken.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ValueError, match="part-broken.parquet"):
        read_runs(tmp_path)


def test_append_writes_no_temporary_leftovers(tmp_path):
    row = {f.name: [None] for f in RUN_SCHEMA}
    table = pa.table({k: pa.array(v, RUN_SCHEMA.field(k).type) for k, v in row.items()})
    with pytest.raises(ValueError):  # non-nullable columns refuse nulls: nothing written
        append_runs(tmp_path, table)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []
