"""The results directory of a sweep or an experiment: layout, identity, runs.

This module owns the directory: where each file lives, the spec it belongs to
(:func:`prepare_output`, :func:`read_spec`), the run table's schema and the
provenance columns, appending and reading part files. Every write goes through the
atomic writers of :mod:`ntk_dist.core.files`.

Layout of an output directory ``OUT``:

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
- ``OUT/boundaries.parquet`` (sweeps): located transitions (``ntk_dist.analysis.boundaries``).
- ``OUT/reference.parquet`` (experiments): the infinite-width reference.
- ``OUT/figures/``: figures drawn from the Parquet files.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ntk_dist.analysis.phases import LABEL_COLUMNS, relabel
from ntk_dist.core.files import (
    disk_full_as_usage_error,
    ensure_writable_dir,
    write_table_atomic,
    write_text_atomic,
)
from ntk_dist.core.provenance import versions
from ntk_dist.engine.records import RECORD_SCHEMA

RUNS_DIR = "runs"

_SWEEP_COLUMNS = [
    ("sweep", pa.string(), "sweep name (spec.name)"),
    ("spec_hash", pa.string(), "sha256 of the spec (output directory excluded)"),
    ("run_key", pa.string(), "unique run id: spec hash, width, eta*lambda0 (repr), seed"),
    ("trial", pa.int64(), "Optuna trial number that produced the run"),
    ("round", pa.int64(), "driver round (batch of trials trained together)"),
    ("target_eta_lambda0", pa.float64(), "eta*lambda0 asked for by the sampler"),
    (
        "phase",
        pa.string(),
        "'lazy', 'sharpness_reduction', 'loss_catapult' or 'divergent', labelled when stored "
        "(ntk_dist.analysis.phases, docs/theory.md §7; older runs are relabelled on read)",
    ),
    (
        "sharpness_catapult",
        pa.bool_(),
        "lambda rose above lambda0 within the early window (Kalra & Barkeshli 2023)",
    ),
    ("ntk_dist_version", pa.string(), "ntk_dist version of the driver that stored the run"),
    ("jax_version", pa.string(), "jax version (ntk_dist.cli.version.versions())"),
    ("ray_version", pa.string(), "ray version"),
    ("optuna_version", pa.string(), "optuna version"),
    ("platform", pa.string(), "platform.platform() of the driver"),
]

#: One row per run: the training record (``ntk_dist.engine.records``) plus sweep columns.
RUN_SCHEMA = pa.schema(
    list(RECORD_SCHEMA) + [pa.field(n, t, False, {"doc": doc}) for n, t, doc in _SWEEP_COLUMNS]
)


def add_run_columns(table: pa.Table, **columns) -> pa.Table:
    """Training records (RECORD_SCHEMA) plus the sweep columns given by name (one value
    per row) and the software versions of this process: a table for :func:`append_runs`.

    ``run_key`` defaults to the records' ``tag``.
    """
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
    """A Markdown table of ``schema``: column, Arrow type, nullable, meaning
    (``docs/schemas.md``); a ``|`` inside a doc (a norm ||x||) is escaped as ``\\|``."""
    lines = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for f in schema:
        doc = (f.metadata or {}).get(b"doc", b"").decode().replace("|", "\\|")
        lines.append(f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {doc} |")
    return "\n".join(lines)


SPEC_FILE, HASH_FILE = "spec.yaml", "spec.sha256"


def output_dir(spec, out=None) -> Path:
    """``--out`` if given, else the spec's ``output``, else ``results/<name>``."""
    return Path(out or spec.output or Path("results") / spec.name)


def prepare_output(spec, out: Path, *, resume: bool = False) -> None:
    """Create ``out`` (or check it belongs to this spec) before any work is done.

    Raises:
      ValueError: unwritable directory, a different spec in it, or ``resume`` with
        nothing to resume.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"output directory {out} exists and is not a directory; choose another --out"
        )
    spec_file, hash_file = out / SPEC_FILE, out / HASH_FILE
    if hash_file.exists():
        old = hash_file.read_text().strip()
        if old != spec.spec_hash():
            raise ValueError(
                f"{out} holds a sweep of a different spec (hash {old[:12]}, this spec "
                f"{spec.spec_hash()[:12]}); use a new --out, or delete {out} to start over"
            )
        return
    if resume:
        raise ValueError(f"--resume: {out} holds no sweep to resume (no {hash_file.name})")
    ensure_writable_dir(out, name="output directory", fix="choose another --out")
    with disk_full_as_usage_error(out):
        write_text_atomic(spec.to_yaml(), spec_file)
        write_text_atomic(spec.spec_hash() + "\n", hash_file)


def read_spec_data(out) -> dict:
    """The mapping stored in ``OUT/spec.yaml``, as written (not validated).

    Raises:
      ValueError: naming the file, when it is missing, not YAML or not a mapping.
    """
    import yaml

    path = Path(out) / SPEC_FILE
    if not path.is_file():
        raise ValueError(f"{path}: missing (the spec this directory was made from)")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of spec sections, got {type(raw).__name__}")
    return raw


def read_spec(out):
    """The spec stored in ``OUT/spec.yaml``, validated (:func:`ntk_dist.study.spec.parse_spec`).

    Raises:
      ValueError: naming the file, when it is missing, not YAML or not a valid spec.
    """
    from ntk_dist.study.spec import parse_spec

    return parse_spec(read_spec_data(out), str(Path(out) / SPEC_FILE))


def append_runs(out_dir, table: pa.Table) -> Path:
    """Add one part file of runs (cast to :data:`RUN_SCHEMA`) to ``OUT/runs/``."""
    missing = [n for n in RUN_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(
            f"runs table lacks RUN_SCHEMA columns {missing}; build rows with add_run_columns"
        )
    table = table.select(RUN_SCHEMA.names).cast(RUN_SCHEMA)
    runs = Path(out_dir) / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    return write_table_atomic(table, runs / f"part-{uuid.uuid4().hex}.parquet")


#: Record columns added after the first release, with the value a part file written
#: before them implies: every older run was NTK-parameterised, used the NTK sharpness and
#: shared sigma_w with the readout. :func:`read_part` fills them in.
ADDED_COLUMNS = {"parameterization": "ntk", "sharpness": "ntk", "readout_sigma_w": "sigma_w"}


def read_part(part) -> pa.Table:
    """One part file in :data:`RUN_SCHEMA`; a part written before the columns of
    :data:`ADDED_COLUMNS` existed gets them with the values it implies.

    Raises:
      ValueError: naming the file, if it is unreadable or lacks other columns.
    """
    try:
        names = pq.read_schema(part).names
        absent = [n for n in ADDED_COLUMNS if n not in names]
        kept = pa.schema([f for f in RUN_SCHEMA if f.name not in absent])
        table = pq.read_table(part, schema=kept)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{part}: unreadable Parquet file ({err}); move it away") from None
    missing = [
        n
        for n in RUN_SCHEMA.names
        if n not in names and n not in ADDED_COLUMNS and n not in LABEL_COLUMNS
    ]
    if missing:
        raise ValueError(f"{part}: lacks RUN_SCHEMA columns {missing}; move it away")
    for name in absent:
        value = ADDED_COLUMNS[name]
        column = (
            table.column(value)
            if value in table.column_names
            else pa.array([value] * table.num_rows, RUN_SCHEMA.field(name).type)
        )
        table = table.append_column(RUN_SCHEMA.field(name), column)
    if "sharpness_catapult" not in names:  # stored before the published labels
        table = relabel(table.drop_columns(list(LABEL_COLUMNS))).select(RUN_SCHEMA.names)
    return table.select(RUN_SCHEMA.names).cast(RUN_SCHEMA)


def read_runs(out_dir) -> pa.Table:
    """All runs of a sweep, in :data:`RUN_SCHEMA`, sorted by ``run_key`` (empty if none).

    Raises:
      ValueError: naming the file, if a part file is unreadable (truncated or corrupt) or
        lacks columns of :data:`RUN_SCHEMA` (they would otherwise read as nulls).
        ``ntk-dist check OUT`` lists every such problem at once.

    Part files stored before the published phase labels (no ``sharpness_catapult``
    column) are labelled on read from their trajectories
    (:func:`ntk_dist.analysis.phases.relabel`, window: the whole budget, which is what
    their specs meant).
    """
    runs = Path(out_dir) / RUNS_DIR
    parts = sorted(runs.glob("part-*.parquet")) if runs.is_dir() else []
    tables = [read_part(part) for part in parts]
    if not tables:
        return RUN_SCHEMA.empty_table()
    # Sorted by run key: analyses (bootstrap CIs) must not depend on the order in which
    # batches happened to land, or a resumed sweep would differ from an uninterrupted one.
    return pa.concat_tables(tables).sort_by("run_key")


def describe_schemas() -> str:
    """The README's "Result schemas": the run table (training record + sweep columns) and
    the boundary table, rendered from the schemas declared in the code."""
    from ntk_dist.analysis.boundaries import BOUNDARY_SCHEMA
    from ntk_dist.engine.records import RECORD_SCHEMA, describe

    sweep_columns = pa.schema([f for f in RUN_SCHEMA if f.name not in RECORD_SCHEMA.names])
    return "\n\n".join(
        [
            "`OUT/runs/*.parquet`: the training record "
            "(`ntk_dist.engine.records.RECORD_SCHEMA`) ...",
            describe(),
            "... followed by the sweep columns:",
            schema_markdown(sweep_columns),
            "`OUT/boundaries.parquet` (`ntk_dist.analysis.boundaries.BOUNDARY_SCHEMA`):",
            schema_markdown(BOUNDARY_SCHEMA),
        ]
    )


if __name__ == "__main__":
    print(describe_schemas())
