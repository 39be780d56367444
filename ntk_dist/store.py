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

import errno
import os
import uuid
from contextlib import contextmanager
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
    ("ntk_dist_version", pa.string(), "ntk_dist version of the driver that stored the run"),
    ("jax_version", pa.string(), "jax version (ntk_dist.cli.version.versions())"),
    ("ray_version", pa.string(), "ray version"),
    ("optuna_version", pa.string(), "optuna version"),
    ("platform", pa.string(), "platform.platform() of the driver"),
]

#: One row per run: the training record (``ntk_dist.records``) plus sweep columns.
RUN_SCHEMA = pa.schema(
    list(RECORD_SCHEMA) + [pa.field(n, t, False, {"doc": doc}) for n, t, doc in _SWEEP_COLUMNS]
)


def add_run_columns(table: pa.Table, **columns) -> pa.Table:
    """Training records (RECORD_SCHEMA) plus the sweep columns given by name (one value
    per row) and the software versions of this process: a table for :func:`append_runs`.

    ``run_key`` defaults to the records' ``tag``.
    """
    from .cli.version import versions

    rows = table.num_rows
    vers = versions()
    columns.setdefault("run_key", table.column("tag").to_pylist())
    columns.update(
        {f"{name}_version": [vers[name]] * rows for name in ("ntk_dist", "jax", "ray", "optuna")}
    )
    columns["platform"] = [vers["platform"]] * rows
    for name in RUN_SCHEMA.names[len(RECORD_SCHEMA) :]:
        values = columns[name]
        values = values if isinstance(values, list) else [values] * rows
        table = table.append_column(
            RUN_SCHEMA.field(name), pa.array(values, RUN_SCHEMA.field(name).type)
        )
    return table


def schema_markdown(schema: pa.Schema = RUN_SCHEMA) -> str:
    """A Markdown table of ``schema``: column, Arrow type, nullable, meaning (README)."""
    lines = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        lines.append(f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {doc} |")
    return "\n".join(lines)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path, mode: str, write) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync, then rename it onto
    ``path`` (and fsync the directory): a reader sees the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def write_table_atomic(table: pa.Table, path) -> Path:
    """Write ``table`` to ``path`` via a temporary file, fsync and rename.

    A crash at any moment leaves either the old state or the complete new file at
    ``path``, never a partial one (rename is atomic on POSIX file systems).
    """
    return _write_atomic(path, "wb", lambda fh: pq.write_table(table, fh))


def write_text_atomic(text: str, path) -> Path:
    """Write ``text`` to ``path`` via a temporary file, fsync and rename."""
    return _write_atomic(path, "w", lambda fh: fh.write(text))


#: errno values meaning the file system (or the user's quota on it) is full.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_full_as_usage_error(out):
    """Report "no space left on device" inside the block as a ValueError saying what to do.

    Output writers (:func:`write_table_atomic`, appends of whole lines) leave what is on
    disk valid when a write fails, so freeing space and rerunning the same command
    resumes the work. Other OSErrors pass through unchanged.

    Args:
      out: the output location named in the message when the error names no file.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in _NO_SPACE:
            raise
        raise ValueError(
            f"no space left on the device holding {err.filename or out}: free space there "
            "and rerun the same command to resume (finished work is kept)"
        ) from None


def trim_torn_line(path) -> None:
    """Cut a partial last line (no newline) off the append-only line log ``path``.

    A write cut short by a full disk or a crash can leave one; the next append would glue
    it to a new line and corrupt both. Call it as the log's only writer, before appending.
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as fh:
        end = pos = fh.seek(0, os.SEEK_END)
        keep = 0
        while pos > 0:
            step = min(pos, 1 << 16)
            fh.seek(pos - step)
            chunk = fh.read(step)
            if pos == end and chunk.endswith(b"\n"):
                return
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = pos - step + newline + 1
                break
            pos -= step
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


def append_runs(out_dir, table: pa.Table) -> Path:
    """Add one part file of runs (cast to :data:`RUN_SCHEMA`) to ``OUT/runs/``."""
    missing = [n for n in RUN_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(
            f"runs table lacks RUN_SCHEMA columns {missing}; build rows as ntk_dist.sweep does"
        )
    table = table.select(RUN_SCHEMA.names).cast(RUN_SCHEMA)
    runs = Path(out_dir) / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    return write_table_atomic(table, runs / f"part-{uuid.uuid4().hex}.parquet")


def read_runs(out_dir) -> pa.Table:
    """All runs of a sweep, in :data:`RUN_SCHEMA`, sorted by ``run_key`` (empty if none).

    Raises:
      ValueError: naming the file, if a part file is unreadable (truncated or corrupt) or
        lacks columns of :data:`RUN_SCHEMA` (they would otherwise read as nulls).
        ``ntk-dist check OUT`` lists every such problem at once.
    """
    runs = Path(out_dir) / RUNS_DIR
    parts = sorted(runs.glob("part-*.parquet")) if runs.is_dir() else []
    tables = []
    for part in parts:
        try:
            names = pq.read_schema(part).names
            table = pq.read_table(part, schema=RUN_SCHEMA)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{part}: unreadable Parquet file ({err}); move it away") from None
        missing = [n for n in RUN_SCHEMA.names if n not in names]
        if missing:
            raise ValueError(f"{part}: lacks RUN_SCHEMA columns {missing}; move it away")
        tables.append(table)
    if not tables:
        return RUN_SCHEMA.empty_table()
    # Sorted by run key: analyses (bootstrap CIs) must not depend on the order in which
    # batches happened to land, or a resumed sweep would differ from an uninterrupted one.
    return pa.concat_tables(tables).sort_by("run_key")


def describe_schemas() -> str:
    """The README's "Result schemas": the run table (training record + sweep columns) and
    the boundary table, rendered from the schemas declared in the code."""
    from .boundaries import BOUNDARY_SCHEMA
    from .records import RECORD_SCHEMA, describe

    sweep_columns = pa.schema([f for f in RUN_SCHEMA if f.name not in RECORD_SCHEMA.names])
    return "\n\n".join(
        [
            "`OUT/runs/*.parquet`: the training record (`ntk_dist.records.RECORD_SCHEMA`) ...",
            describe(),
            "... followed by the sweep columns:",
            schema_markdown(sweep_columns),
            "`OUT/boundaries.parquet` (`ntk_dist.boundaries.BOUNDARY_SCHEMA`):",
            schema_markdown(BOUNDARY_SCHEMA),
        ]
    )


if __name__ == "__main__":
    print(describe_schemas())
