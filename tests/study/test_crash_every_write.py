"""Resume is idempotent at every storage operation, the recovery steps included.

The driver is "killed" at the k-th storage write of a sweep (an Optuna journal append,
a part file, its checksum line, the boundary table) for every k, then rerun; and a resume
that has recovery work to do (trials left RUNNING, a round half trained) is killed at
each of its own writes in turn and rerun. Every time, the dataset and the boundaries
must equal those of an undisturbed sweep.

The kill is :class:`Crash`, a BaseException raised *instead of* the write, which nothing
in ntk_dist catches. A part-file write also leaves the hidden temporary file a SIGKILL
mid-write leaves. Training is replaced by records of the session's tiny sweep
(``stub_training``): a resumed sweep that asked a point the undisturbed one did not ask
fails the lookup.
"""

from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from optuna.storages.journal import JournalFileBackend

from ntk_dist.core import files
from ntk_dist.core.files import temp_path
from ntk_dist.study import results, sweep
from ntk_dist.study.results import read_runs
from ntk_dist.study.spec import parse_spec

#: Columns that legitimately differ after a crash: the trial number of a re-asked point.
RENUMBERED = ("trial",)


class Crash(BaseException):
    """What a SIGKILL just before this storage write would leave behind."""


@pytest.fixture
def harness(stub_training, tiny_sweep_spec, monkeypatch):
    """(run, writes): ``run(out, crash_at=k)`` runs the tiny sweep with stubbed training,
    raising Crash at the k-th storage write; ``writes()`` lists the kinds of the writes
    of the last run ("journal", "part", "table")."""
    state = {"writes": [], "crash_at": None}

    def hit(what, path=None):
        state["writes"].append(what)
        if len(state["writes"]) == state["crash_at"]:
            if path is not None:  # killed mid-write: the temporary file stays
                temp_path(path).write_bytes(b"PAR1 half a file")
            raise Crash(f"write {len(state['writes'])} ({what})")

    append_logs = JournalFileBackend.append_logs

    def journal_write(self, logs):
        hit("journal")
        append_logs(self, logs)

    def table_write(write):
        def wrapped(table, path, **options):
            hit("part" if path.name.startswith("part-") else "table", path)
            return write(table, path, **options)

        return wrapped

    append_line = files.append_line

    def manifest_write(path, line):  # the checksum line, written before the rename
        hit("checksum")
        append_line(path, line)

    monkeypatch.setattr(JournalFileBackend, "append_logs", journal_write)
    monkeypatch.setattr(files, "append_line", manifest_write)
    monkeypatch.setattr(results, "write_table_atomic", table_write(results.write_table_atomic))
    monkeypatch.setattr(sweep, "write_table_atomic", table_write(sweep.write_table_atomic))
    spec = parse_spec(tiny_sweep_spec)

    def run(out, crash_at=None):
        state["writes"], state["crash_at"] = [], crash_at
        if crash_at is None:
            return sweep.run_sweep(spec, out, progress=False)
        with pytest.raises(Crash):
            sweep.run_sweep(spec, out, progress=False)
        return None

    return run, lambda: list(state["writes"])


def _dataset(out) -> pa.Table:
    runs = read_runs(out)
    return runs.drop_columns(list(RENUMBERED))


def _assert_same(out, reference) -> None:
    ours, ref = _dataset(out), _dataset(reference.out_dir)
    differ = [n for n in ref.column_names if _exact(ours[n]) != _exact(ref[n])]
    assert ours.num_rows == ref.num_rows and not differ, (out, differ, ours.num_rows)
    assert _exact(pq.read_table(out / "boundaries.parquet")) == _exact(reference.boundaries)
    assert not list(out.rglob(".tmp-*")), "a temporary file survived the resume"


def _exact(values) -> str:
    """Bit-exact text of a table or column (repr round-trips floats; NaN equals NaN)."""
    return repr(values.to_pylist())


@contextmanager
def _at(step):
    try:
        yield
    except AssertionError as err:
        raise AssertionError(f"{step}: {err}") from None


@pytest.mark.slow
def test_a_kill_at_every_write_of_a_sweep_resumes_to_the_same_result(harness, tmp_path):
    run, writes = harness
    reference = run(tmp_path / "reference")
    total = len(writes())
    assert total > 40  # journal appends, part files, boundaries: every one is a kill point
    for k in range(1, total + 1):
        out = tmp_path / f"k{k}"
        run(out, crash_at=k)
        with _at(f"killed at write {k} of {total}"):
            run(out)
            _assert_same(out, reference)


@pytest.mark.slow
def test_a_kill_at_every_write_of_a_resume_resumes_to_the_same_result(harness, tmp_path):
    run, writes = harness
    reference = run(tmp_path / "reference")
    # First kill: the second round asked and one of its three part files stored, so the
    # resume has to settle one trial from the dataset and re-enqueue two.
    parts = [i for i, what in enumerate(writes(), 1) if what == "part"]
    assert len(parts) == 6
    first = parts[3] + 1
    crashed = tmp_path / "crashed"
    run(crashed, crash_at=first)
    _copy(crashed, tmp_path / "count")
    run(tmp_path / "count")
    resume_writes = len(writes())
    assert resume_writes > 10
    for k in range(1, resume_writes + 1):
        out = tmp_path / f"r{k}"
        _copy(crashed, out)
        run(out, crash_at=k)
        with _at(f"first kill at write {first}, second at write {k} of the resume"):
            run(out)
            _assert_same(out, reference)


def _copy(src, dst) -> None:
    import shutil

    shutil.copytree(src, dst)
