"""Integrity check of a results directory: ``ntk-dist check OUT``.

Reads everything, writes nothing, and lists each problem with the file it is in.
Three kinds of directory are recognised:

- **sweep** (``ntk_dist.study.sweep``): ``spec.yaml`` + ``spec.sha256``, ``study.journal``,
  ``runs/part-*.parquet``, ``boundaries.parquet``. Checked: every Parquet file opens,
  reads to the end (a truncated file fails here) and has its schema (:data:`RUN_SCHEMA`,
  ``BOUNDARY_SCHEMA``); no ``run_key`` twice, in one file or across files; no leftover
  temporary file of an interrupted write; ``spec.yaml`` valid, its hash equal to
  ``spec.sha256`` and to every run's ``spec_hash``; the study and the dataset agree
  (every run's trial is in the study and its ``run_key`` belongs to that trial's
  parameters; every COMPLETE trial has all its runs in the dataset).
- **experiment**: a ``spec.yaml`` with an ``experiment:`` key, ``runs/`` in
  :data:`RUN_SCHEMA` and other Parquet tables (``reference.parquet``). Checked: every
  Parquet file readable, the runs as above (schema, duplicates, one ``spec_hash``,
  equal to ``spec.sha256`` when present), no temporary files.
- **gram** (``ntk_dist.distributed.gram`` with ``out=DIR``): ``manifest.json``, ``tiles.log``,
  ``{nngp,ntk}.npy``, ``COMPLETE``. Checked: the manifest parses; each kernel's
  ``.npy`` opens (no pickle) with the manifest's shape and dtype and is not truncated;
  every ``tiles.log`` line names a tile of the grid; ``COMPLETE`` present and every
  tile logged (else the Gram is unfinished: rerun to resume).

A sweep that is still running or was interrupted (RUNNING trials, no
``boundaries.parquet`` yet) is not corrupt: it resumes. The summary says so.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from ntk_dist.study.results import ADDED_COLUMNS, RUN_SCHEMA, RUNS_DIR, read_part, read_spec_data
from ntk_dist.study.spec import parse_spec, spec_kind

#: Name patterns of files an interrupted atomic write leaves behind (store, gram, sweep).
TEMP_PATTERNS = (".tmp-*", "*.tmp", ".write-test-*", ".write-probe")


class CheckReport(NamedTuple):
    """Outcome of :func:`check_results`.

    Attributes:
      kind: ``"sweep"``, ``"experiment"``, ``"gram"`` or ``"unknown"``.
      summary: one line describing what was found (counts, state).
      problems: one line per problem, each naming the file; empty when the directory
        is consistent.
    """

    kind: str
    summary: str
    problems: list[str]


def check_results(out) -> CheckReport:
    """Verify a results directory (module docstring); never modifies it.

    Args:
      out: path of a sweep, experiment or Gram output directory.

    Returns:
      :class:`CheckReport`; ``report.problems`` is the list of what is wrong.
    """
    out = Path(out)
    if not out.is_dir():
        return CheckReport("unknown", f"{out}: not a directory", [f"{out}: no such directory"])
    if (out / "manifest.json").exists() or (out / "tiles.log").exists():
        return _check_gram(out)
    if (out / "spec.yaml").exists() or (out / RUNS_DIR).is_dir():
        return _check_runs_dir(out)
    return CheckReport(
        "unknown",
        f"{out}: not a results directory",
        [
            f"{out}: neither a sweep/experiment (spec.yaml, runs/) nor a Gram "
            "(manifest.json, tiles.log) output directory"
        ],
    )


# ---------------------------------------------------------------------------------
# Sweeps and experiments


def _check_runs_dir(out: Path) -> CheckReport:
    problems = _temp_files(out)
    raw_spec = _read_spec_data(out, problems)
    experiment = spec_kind(raw_spec) == "experiment"
    kind = "experiment" if experiment else "sweep"
    runs, n_parts = _read_parts(out, problems)
    keys = runs.column("run_key").to_pylist()
    hashes = set(runs.column("spec_hash").to_pylist())
    stored_hash = _stored_hash(out, problems)
    spec = None
    if not experiment and raw_spec is not None:
        spec = _parse_sweep_spec(raw_spec, out, problems)
        if spec is not None and stored_hash is not None and spec.spec_hash() != stored_hash:
            problems.append(
                f"{out / 'spec.yaml'}: hash {spec.spec_hash()[:12]} differs from "
                f"spec.sha256 ({stored_hash[:12]}); spec.yaml was edited after the sweep started"
            )
    expected = spec.spec_hash() if spec is not None else stored_hash
    if expected is not None and hashes - {expected}:
        bad = sorted(h[:12] for h in hashes - {expected})
        problems.append(
            f"{out / RUNS_DIR}: runs with spec_hash {bad} do not belong to this directory's "
            f"spec ({expected[:12]})"
        )
    elif expected is None and len(hashes) > 1:
        problems.append(f"{out / RUNS_DIR}: runs of {len(hashes)} different specs mixed")

    state = ""
    if not experiment:
        state = _check_study(out, spec, runs, problems)
        problems += _check_table(out / "boundaries.parquet", _boundary_schema(), optional=True)
    else:
        for path in sorted(out.rglob("*.parquet")):
            if RUNS_DIR not in path.relative_to(out).parts[:1]:
                problems += _check_table(path, None)
    summary = f"{out}: {kind}, {len(keys)} runs in {n_parts} part files" + (
        f", {state}" if state else ""
    )
    return CheckReport(kind, summary, problems)


def _read_spec_data(out: Path, problems: list[str]):
    try:
        return read_spec_data(out)
    except ValueError as err:
        problems.append(str(err))
        return None


def _parse_sweep_spec(raw, out: Path, problems: list[str]):
    try:
        return parse_spec(raw, str(out / "spec.yaml"))
    except ValueError as err:
        problems.append(f"{out / 'spec.yaml'}: not a valid sweep spec: {err}")
        return None


def _stored_hash(out: Path, problems: list[str]) -> str | None:
    path = out / "spec.sha256"
    if not path.exists():
        return None
    text = path.read_text().strip()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        problems.append(f"{path}: not a sha256 hex digest")
        return None
    return text


def _read_parts(out: Path, problems: list[str]) -> tuple[pa.Table, int]:
    """All readable part files in RUN_SCHEMA; problems for unreadable, misshaped, twice-seen."""
    runs_dir = out / RUNS_DIR
    if not runs_dir.is_dir():
        problems.append(f"{runs_dir}: missing (no runs stored)")
        return RUN_SCHEMA.empty_table(), 0
    parts = sorted(runs_dir.glob("part-*.parquet"))
    for other in sorted(runs_dir.iterdir()):
        if other not in parts and not _is_temp(other):
            problems.append(f"{other}: unexpected file in {RUNS_DIR}/ (not part-*.parquet)")
    tables, owner = [], {}
    for part in parts:
        bad = _check_table(part, RUN_SCHEMA)
        if bad:
            problems += bad
            continue
        table = read_part(part)
        counts = Counter(table.column("run_key").to_pylist())
        for key, n in sorted(counts.items()):
            if n > 1:
                problems.append(f"{part}: run_key {key} appears {n} times")
            if key in owner:
                problems.append(f"{part}: run_key {key} also in {owner[key].name} (duplicate run)")
            else:
                owner[key] = part
        tables.append(table)
    runs = pa.concat_tables(tables) if tables else RUN_SCHEMA.empty_table()
    return runs, len(parts)


def _check_table(path: Path, schema: pa.Schema | None, *, optional: bool = False) -> list[str]:
    """Problems of one Parquet file: missing, unreadable/truncated, or not ``schema``."""
    if not path.exists():
        return [] if optional else [f"{path}: missing"]
    try:
        table = pq.read_table(path)  # reads every page: a truncated file fails here
    except (pa.ArrowException, OSError) as err:
        return [f"{path}: unreadable Parquet (truncated or corrupt: {err})"]
    if schema is None:
        return []
    problems = []
    have = {f.name: f for f in table.schema}
    # Columns added since a part was written are filled in on read (results.read_part).
    missing = [n for n in schema.names if n not in have and n not in ADDED_COLUMNS]
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


def _boundary_schema() -> pa.Schema:
    from ntk_dist.analysis.boundaries import BOUNDARY_SCHEMA

    return BOUNDARY_SCHEMA


def _check_study(out: Path, spec, runs: pa.Table, problems: list[str]) -> str:
    """Study vs dataset; returns the study's state for the summary."""
    journal = out / "study.journal"
    if not journal.exists():
        problems.append(f"{journal}: missing (the Optuna study of this sweep)")
        return ""
    if spec is None:
        return ""
    trials = _load_trials(journal, spec.name, problems)
    if trials is None:
        return ""
    from optuna.trial import TrialState

    from ntk_dist.study.trials import distributions, point_keys

    by_number = {t.number: t for t in trials}
    run_trial = dict(zip(runs.column("run_key").to_pylist(), runs.column("trial").to_pylist(),
                         strict=True))  # fmt: skip
    for key, number in sorted(run_trial.items()):
        trial = by_number.get(number)
        if trial is None:
            problems.append(f"{out / RUNS_DIR}: run {key} names trial {number}, not in {journal}")
        elif set(trial.params) == set(distributions(spec)) and key not in point_keys(
            spec, trial.params
        ):
            problems.append(
                f"{out / RUNS_DIR}: run {key} does not match the parameters of trial {number} "
                f"in {journal} ({trial.params})"
            )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in complete:
        lost = [k for k in point_keys(spec, t.params) if k not in run_trial]
        if lost:
            problems.append(
                f"{journal}: trial {t.number} is COMPLETE but {len(lost)} of its runs are not "
                f"in {out / RUNS_DIR} (e.g. {lost[0]})"
            )
    running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    finished = running == 0 and len(complete) >= spec.n_points
    if finished and not (out / "boundaries.parquet").exists():
        problems.append(
            f"{out / 'boundaries.parquet'}: missing although every trial is complete; "
            "rerun `ntk-dist run` to write it"
        )
    state = f"{len(complete)} of {spec.n_points} trials complete"
    return state + (f", {running} pending (interrupted: rerun to resume)" if running else "")


def _load_trials(journal: Path, name: str, problems: list[str]):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
        study = optuna.load_study(study_name=name, storage=storage)
        return study.get_trials(deepcopy=False)
    except KeyError:
        problems.append(f"{journal}: holds no study named {name!r} (the spec's name)")
    except Exception as err:  # noqa: BLE001 - any failure to replay the log is a finding
        problems.append(f"{journal}: unreadable Optuna journal ({type(err).__name__}: {err})")
    return None


def _temp_files(out: Path) -> list[str]:
    return [
        f"{p}: leftover temporary file of an interrupted write; delete it"
        for p in sorted(out.rglob("*"))
        if p.is_file() and _is_temp(p)
    ]


def _is_temp(path: Path) -> bool:
    return any(path.match(pattern) for pattern in TEMP_PATTERNS)


# ---------------------------------------------------------------------------------
# Gram directories


def _check_gram(out: Path) -> CheckReport:
    import numpy as np

    from ntk_dist.core.tiling import tiles
    from ntk_dist.distributed.gram_store import COMPLETE, LOG, MANIFEST

    problems = _temp_files(out)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        n1, n2 = manifest["x1_shape"][0], (manifest["x2_shape"] or manifest["x1_shape"])[0]
        b, k, kinds = manifest["tile"], manifest["outputs"], manifest["kernel"]["get"]
        dtype, square = np.dtype(manifest["dtype"]), manifest["x2_shape"] is None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        problems.append(f"{out / MANIFEST}: missing or unreadable ({type(err).__name__}: {err})")
        return CheckReport("gram", f"{out}: gram, no usable manifest", problems)
    shape = (n1 * k, n2 * k)
    for kind in kinds:
        path = out / f"{kind}.npy"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            problems.append(f"{path}: missing, truncated or unreadable ({err})")
            continue
        if arr.shape != shape or arr.dtype != dtype:
            problems.append(f"{path}: shape {arr.shape} {arr.dtype}, manifest says {shape} {dtype}")
    grid = set(tiles(n1, n2, b, square))
    done = set()
    log = out / LOG
    lines = log.read_text().splitlines() if log.exists() else []
    for i, line in enumerate(lines):
        parts = line.split()
        tile = tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()
        if tile in grid:
            done.add(tile)
        elif i < len(lines) - 1 or (out / COMPLETE).exists():  # a torn last line is normal
            problems.append(f"{log}: line {i + 1} {line!r} is not a tile of the {b}-tile grid")
    complete = (out / COMPLETE).exists()
    if complete and done != grid:
        problems.append(
            f"{out / COMPLETE}: present but {len(grid - done)} of {len(grid)} tiles are not "
            f"in {LOG}; recompute with overwrite=True (--overwrite)"
        )
    elif not complete:
        problems.append(
            f"{out}: unfinished Gram, no {COMPLETE} marker ({len(done)} of {len(grid)} tiles "
            "done); rerun the same command to resume"
        )
    summary = (
        f"{out}: gram {'+'.join(kinds)} {shape[0]} x {shape[1]}, {len(done)}/{len(grid)} tiles"
    )
    return CheckReport("gram", summary, problems)
