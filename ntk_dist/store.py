"""Sweep results on disk: an append-only Parquet dataset of runs, written atomically.

Layout of a sweep's output directory ``OUT``:

- ``OUT/spec.yaml``: the validated spec, with its hash (``OUT/spec.sha256``); a rerun
  with a different spec refuses to resume into the same directory.
- ``OUT/study.journal``: the Optuna study (JournalFileBackend: an append-only log
  with file locks, no server, crash-safe; ``optuna-dashboard OUT/study.journal``
  opens it).
- ``OUT/runs/part-*.parquet``: one file per finished batch of runs, one row per run
  (:data:`RUN_SCHEMA`). Files are written to a hidden temporary name, fsync'd and
  renamed, so a reader never sees a half-written file and a crash leaves at most an
  ignored ``.tmp-*`` file. The directory reads as one dataset with pyarrow, pandas,
  polars or duckdb (``read_parquet('OUT/runs/*.parquet')``).
- ``OUT/boundaries.parquet``: located transitions (``ntk_dist.boundaries``).
- ``OUT/figures/``: figures drawn from the Parquet files.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .records import RECORD_SCHEMA

RUNS_DIR = "runs"

_SWEEP_COLUMNS = [
    ("sweep", pa.string(), "sweep name (spec.name)"),
    ("spec_hash", pa.string(), "sha256 of the spec (output directory excluded)"),
    ("run_key", pa.string(), "unique run id: spec hash, width, eta*lambda0 (repr), seed"),
    ("trial", pa.int64(), "Optuna trial number that produced the run"),
    ("round", pa.int64(), "driver round (batch of trials trained together)"),
    ("target_eta_lambda0", pa.float64(), "eta*lambda0 asked for by the sampler"),
    ("phase", pa.string(), "'lazy', 'catapult' or 'divergent' (ntk_dist.phases)"),
    ("ntk_dist_version", pa.string(), "package versions and platform of the run"),
    ("jax_version", pa.string(), ""),
    ("ray_version", pa.string(), ""),
    ("optuna_version", pa.string(), ""),
    ("platform", pa.string(), ""),
]

#: One row per run: the training record (``ntk_dist.records``) plus sweep columns.
RUN_SCHEMA = pa.schema(
    list(RECORD_SCHEMA) + [pa.field(n, t, False, {"doc": doc}) for n, t, doc in _SWEEP_COLUMNS]
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table_atomic(table: pa.Table, path) -> Path:
    """Write ``table`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def write_text_atomic(text: str, path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def append_runs(out_dir, table: pa.Table) -> Path:
    """Add one part file of runs (cast to :data:`RUN_SCHEMA`) to ``OUT/runs/``."""
    runs = Path(out_dir) / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    table = table.select(RUN_SCHEMA.names).cast(RUN_SCHEMA)
    return write_table_atomic(table, runs / f"part-{uuid.uuid4().hex}.parquet")


def read_runs(out_dir) -> pa.Table:
    """All runs of a sweep, in :data:`RUN_SCHEMA` (empty table when there are none).

    Raises:
      ValueError: naming the file, if a part file is unreadable (truncated or corrupt).
    """
    runs = Path(out_dir) / RUNS_DIR
    parts = sorted(runs.glob("part-*.parquet")) if runs.is_dir() else []
    tables = []
    for part in parts:
        try:
            tables.append(pq.read_table(part, schema=RUN_SCHEMA))
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{part}: unreadable Parquet file ({err}); move it away") from None
    if not tables:
        return RUN_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def describe_schemas() -> str:
    """Markdown tables of the run and boundary schemas (the README's "Result schemas")."""
    from .boundaries import BOUNDARY_SCHEMA
    from .records import describe

    def table(fields):
        rows = ["| column | type | meaning |", "|---|---|---|"]
        rows += [
            f"| `{f.name}` | {f.type} | {(f.metadata or {}).get(b'doc', b'').decode()} |"
            for f in fields
        ]
        return "\n".join(rows)

    extra = [RUN_SCHEMA.field(name) for name, _, _ in _SWEEP_COLUMNS]
    return "\n\n".join(
        [
            "`OUT/runs/*.parquet`: the training record (`ntk_dist.records.RECORD_SCHEMA`) ...",
            describe(),
            "... followed by the sweep columns:",
            table(extra),
            "`OUT/boundaries.parquet` (`ntk_dist.boundaries.BOUNDARY_SCHEMA`):",
            table(BOUNDARY_SCHEMA),
        ]
    )


if __name__ == "__main__":
    print(describe_schemas())
