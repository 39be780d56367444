"""Verification of stored tables and the repair of a results directory.

A part file of ``OUT/runs/`` is good when:

1. every page decodes, with its CRC32 checked where the writer stored one;
2. it has the columns and types of :data:`ntk_dist.study.results.RUN_SCHEMA`, no nulls
   where none are allowed;
3. its sha256 equals one recorded in ``OUT/checksums.jsonl`` when it was written
   (:mod:`ntk_dist.core.integrity`); a part file that says it was checksummed (its
   metadata holds ``ntk_dist.spec_hash``) but has no line is a problem too, since the
   manifest was cut or edited.

Legacy part files (written before checksums: no manifest, no metadata) are verified by
1 and 2 only ("verified by content only").

Repair (``ntk-dist check --repair OUT``, and every ``ntk-dist run`` on resume): bad part
files are moved to ``OUT/quarantine/`` (never deleted: the bytes are kept for a
post-mortem), after which their runs are missing from the dataset and the sweep driver
retrains exactly those runs (``ntk_dist.study.trials.lost_runs``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ntk_dist.core.integrity import checksum_problem, read_manifest
from ntk_dist.study.results import FILLED_ON_READ, RUN_SCHEMA, RUNS_DIR

QUARANTINE = "quarantine"
_SPEC_KEY = b"ntk_dist.spec_hash"


def table_problems(path: Path, schema: pa.Schema | None, *, optional: bool = False) -> list[str]:
    """Problems of one Parquet file: missing, unreadable (truncated, a page CRC that
    fails, undecodable bytes), or not ``schema``."""
    path = Path(path)
    if not path.exists():
        return [] if optional else [f"{path}: missing"]
    try:
        table = pq.read_table(path, page_checksum_verification=True)  # every page
        have = {f.name: f for f in table.schema}  # names decode as UTF-8, or raise
    except (pa.ArrowException, OSError, ValueError) as err:  # UnicodeDecodeError too
        return [f"{path}: unreadable Parquet (truncated or corrupt: {err})"]
    if schema is None:
        return []
    problems = []
    # Columns added since a part was written are filled in on read (results.read_part).
    missing = [n for n in schema.names if n not in have and n not in FILLED_ON_READ]
    extra = [n for n in have if n not in schema.names]
    if missing:
        problems.append(f"{path}: missing columns {missing}")
    if extra:
        problems.append(f"{path}: unexpected columns {extra}")
    for f in schema:
        if f.name in have and not have[f.name].type.equals(f.type):
            problems.append(
                f"{path}: column {f.name} has type {have[f.name].type}, expected {f.type}"
            )
        elif f.name in have and not f.nullable and table.column(f.name).null_count:
            problems.append(f"{path}: column {f.name} has nulls but must not")
    return problems


def part_problem(out: Path, part: Path, entries) -> str | None:
    """Why the part file ``part`` of ``out`` is bad (module docstring), or None.

    ``entries``: :func:`ntk_dist.core.integrity.read_manifest` of ``out``.
    """
    problems = table_problems(part, RUN_SCHEMA)
    if problems:
        return "; ".join(problems)
    bad = checksum_problem(out, part, entries)
    if bad:
        return bad
    recorded = entries is not None and part.relative_to(out).as_posix() in entries
    if not recorded and _SPEC_KEY in (pq.read_schema(part).metadata or {}):
        return f"{part}: no checksum recorded in {out / 'checksums.jsonl'} (cut or edited)"
    return None


def bad_parts(out) -> tuple[dict[Path, str], list[str], int]:
    """Verify every part file of ``OUT/runs/``.

    Returns:
      (bad, manifest_problems, legacy): the bad part files with their problem, the bad
      lines of the manifest, and how many good part files are legacy (no checksum
      recorded, no metadata: verified by content only).
    """
    out = Path(out)
    entries, manifest_problems = read_manifest(out)
    runs = out / RUNS_DIR
    parts = sorted(runs.glob("part-*.parquet")) if runs.is_dir() else []
    bad = {}
    for part in parts:
        problem = part_problem(out, part, entries)
        if problem:
            bad[part] = problem
    recorded = set(entries or {})
    legacy = sum(p not in bad and p.relative_to(out).as_posix() not in recorded for p in parts)
    return bad, manifest_problems, legacy


def other_checksum_problems(out) -> list[str]:
    """Files of ``out`` outside ``runs/`` (boundaries, figures) whose sha256 differs from
    every one recorded for them; these are redrawn by the next run, never trained."""
    out = Path(out)
    entries, _ = read_manifest(out)
    problems = []
    for name in sorted(entries or {}):
        path = out / name
        if name.split("/")[0] != RUNS_DIR and path.is_file():
            bad = checksum_problem(out, path, entries)
            if bad:
                problems.append(f"{bad}; rerun `ntk-dist run` to write it again")
    return problems


def quarantine(out, parts) -> list[Path]:
    """Move the files ``parts`` of ``out`` to ``OUT/quarantine/`` (same names); returns the
    new paths. Their runs then count as missing and are retrained by the next run."""
    target = Path(out) / QUARANTINE
    moved = []
    for part in parts:
        target.mkdir(exist_ok=True)
        dest = target / Path(part).name
        shutil.move(str(part), dest)
        moved.append(dest)
    return moved


def repair(out, echo=print) -> int:
    """Quarantine every bad part file of ``out`` (:func:`bad_parts`), naming each with
    its problem via ``echo``; returns how many were moved."""
    bad, _, _ = bad_parts(out)
    for problem in bad.values():
        echo(f"{problem}: moved to {Path(out) / QUARANTINE}/, its runs will be retrained")
    quarantine(out, list(bad))
    return len(bad)
