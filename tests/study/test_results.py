"""The Parquet store: atomic part files, one dataset for pyarrow/pandas/polars/duckdb,
a crash mid-write leaves nothing half-written, bad input is refused by name."""

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ntk_dist.core.files import write_table_atomic
from ntk_dist.study import results as store
from ntk_dist.study.results import (
    RUN_SCHEMA,
    append_runs,
    describe_schemas,
    read_runs,
    schema_markdown,
)

_FILL = {
    pa.string(): "x",
    pa.int64(): 3,
    pa.float64(): 1.5,
    pa.bool_(): False,
    pa.list_(pa.int64()): [0, 10],
    pa.list_(pa.float64()): [1.0, 2.0],
    pa.list_(pa.list_(pa.float64())): [[1.0], [2.0]],
}


def _rows(keys):
    """RUN_SCHEMA rows with distinct run_key values (and a catapult-like trajectory)."""
    cols = {f.name: [_FILL[f.type]] * len(keys) for f in RUN_SCHEMA}
    cols["run_key"] = list(keys)
    cols["train_loss"] = [[0.5, 40.0, 1e-3]] * len(keys)
    cols["record_steps"] = [[0, 7, 99]] * len(keys)
    return pa.table(cols, schema=RUN_SCHEMA)


def _body(table: str) -> list[str]:
    """Body lines of a Markdown table (header and rule checked and skipped)."""
    lines = table.strip().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "column", "type", "null", "meaning"
    ]  # fmt: skip
    assert lines[1].replace("|", "").replace("-", "").strip() == "", lines[1]
    return lines[2:]


def _parse_markdown(table: str) -> list[list[str]]:
    """Body rows of a Markdown table, split on the cell separators (an escaped ``\\|`` is
    part of a cell, as in GitHub-flavoured Markdown), cells stripped."""
    return [
        [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in _body(table)
    ]


def test_every_column_is_documented_once():
    assert len(set(RUN_SCHEMA.names)) == len(RUN_SCHEMA.names)
    lines = _body(schema_markdown())
    names = [line.split("|")[1].strip().strip("`") for line in lines]
    assert names == RUN_SCHEMA.names  # each column once, in schema order
    for line, f in zip(lines, RUN_SCHEMA, strict=True):
        doc = (f.metadata or {}).get(b"doc", b"").decode()
        assert doc and line.endswith(f"| {doc.replace('|', chr(92) + '|')} |"), f.name
    # Every run column appears once in the run tables of the docs' rendered schemas.
    text = describe_schemas().split("`OUT/boundaries.parquet`")[0]
    for f in RUN_SCHEMA:
        assert text.count(f"| `{f.name}` |") == 1, f.name


def test_rendered_table_parses_back_to_the_schema():
    rows = _parse_markdown(schema_markdown())
    back = pa.schema([pa.field(r[0].strip("`"), _type(r[1]), r[2] == "yes") for r in rows])
    assert back.names == RUN_SCHEMA.names
    assert back.types == RUN_SCHEMA.types
    assert [f.nullable for f in back] == [f.nullable for f in RUN_SCHEMA]


def test_every_row_has_four_cells():
    rows = _parse_markdown(schema_markdown())
    assert [f.name for f in RUN_SCHEMA if len(rows[RUN_SCHEMA.names.index(f.name)]) != 4] == []


def _type(text: str) -> pa.DataType:
    """An Arrow type from its rendering: ``double``, ``list<item: double>`` (nested)."""
    if "<" not in text:
        return pa.type_for_alias(text)
    inner = text[text.index("<") + 1 : text.rindex(">")].split(":", 1)[1].strip()
    return pa.list_(_type(inner))


def test_parts_append_and_read_back_in_every_reader(tmp_path):
    import duckdb
    import pandas as pd
    import polars as pl

    append_runs(tmp_path, _rows(["a", "b"]))
    append_runs(tmp_path, _rows(["c"]).select(RUN_SCHEMA.names[::-1]))  # column order free
    back = read_runs(tmp_path)
    assert back.schema == RUN_SCHEMA
    assert sorted(back.column("run_key").to_pylist()) == ["a", "b", "c"]
    assert back.column("train_loss").to_pylist()[0] == [0.5, 40.0, 1e-3]

    glob = str(tmp_path / "runs" / "*.parquet")
    assert sorted(pd.read_parquet(tmp_path / "runs")["run_key"]) == ["a", "b", "c"]
    assert pl.read_parquet(glob)["train_loss"].list.max().to_list() == [40.0] * 3
    [(n, peak)] = duckdb.sql(
        f"select count(*), max(list_max(train_loss)) from read_parquet('{glob}')"
    ).fetchall()
    assert (n, peak) == (3, 40.0)


def test_empty_store_reads_as_an_empty_table(tmp_path):
    empty = read_runs(tmp_path)
    assert empty.num_rows == 0 and empty.schema == RUN_SCHEMA


def test_a_crash_while_writing_leaves_no_file(tmp_path, monkeypatch):
    append_runs(tmp_path, _rows(["a"]))

    def dies_midway(table, where):
        where.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # stands in for the process dying during the write

    monkeypatch.setattr(store.pq, "write_table", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        append_runs(tmp_path, _rows(["b"]))
    monkeypatch.undo()
    assert [p.name.startswith("part-") for p in (tmp_path / "runs").iterdir()] == [True]
    assert read_runs(tmp_path).column("run_key").to_pylist() == ["a"]


def test_leftover_temp_file_of_a_killed_writer_is_ignored(tmp_path):
    append_runs(tmp_path, _rows(["a"]))
    (tmp_path / "runs" / ".tmp-0123-part-x.parquet").write_bytes(b"PAR1 truncated")
    assert read_runs(tmp_path).column("run_key").to_pylist() == ["a"]


def test_a_corrupt_part_file_is_named(tmp_path):
    append_runs(tmp_path, _rows(["a"]))
    bad = tmp_path / "runs" / "part-zzz.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="part-zzz.parquet: unreadable Parquet"):
        read_runs(tmp_path)


def test_rows_missing_columns_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"lacks RUN_SCHEMA columns \['phase'\]"):
        append_runs(tmp_path, _rows(["a"]).drop_columns(["phase"]))
    assert not (tmp_path / "runs").exists()


def test_atomic_replace_keeps_a_whole_file(tmp_path):
    target = tmp_path / "boundaries.parquet"
    write_table_atomic(pa.table({"x": [1, 2]}), target)
    write_table_atomic(pa.table({"x": [3]}), target)
    assert pq.read_table(target).column("x").to_pylist() == [3]
    assert [p.name for p in tmp_path.iterdir()] == ["boundaries.parquet"]


def test_a_part_written_before_the_added_columns_reads_with_their_implied_values(tmp_path):
    from ntk_dist.study.check import check_results

    old = _rows(["a"]).drop_columns(list(store.ADDED_COLUMNS))
    old = old.set_column(old.schema.get_field_index("sigma_w"), "sigma_w", pa.array([1.25]))
    (tmp_path / "runs").mkdir()
    write_table_atomic(old, tmp_path / "runs" / "part-old.parquet")
    back = read_runs(tmp_path)
    assert back.schema == RUN_SCHEMA
    row = back.to_pylist()[0]
    assert (row["parameterization"], row["sharpness"], row["readout_sigma_w"]) == (
        "ntk",
        "ntk",
        1.25,
    )
    assert not [p for p in check_results(tmp_path).problems if "columns" in p]
