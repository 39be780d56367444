"""Resource limits: a disk that fills up during a sweep or a disk-backed Gram is a clear
error (exit code 2) that leaves nothing corrupt and resumes once space is freed; work too
large for memory is split or refused before it starts.

Each full-disk case runs twice: portably, with the writer made to fail with ENOSPC partway
through a file, and for real on a small tmpfs (skipped where mounting is not permitted).
"""

import errno
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ntk_dist import fc_kernel, gram
from ntk_dist.cli import main as cli_main
from ntk_dist.core.files import trim_torn_line
from ntk_dist.distributed.execute import estimate_bytes, run_jobs
from ntk_dist.distributed.gram_store import LOG, is_complete
from ntk_dist.study.results import read_runs
from ntk_dist.study.spec import parse_spec
from tests.tolerances import atol

files_module = importlib.import_module("ntk_dist.core.files")
gram_module = importlib.import_module("ntk_dist.distributed.gram")
store_module = importlib.import_module("ntk_dist.distributed.gram_store")
execute_module = importlib.import_module("ntk_dist.distributed.execute")

REPO = Path(__file__).resolve().parents[1]
CFG = dict(depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1)
NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def reference(tiny_sweep):
    """The undisturbed sweep (2 rounds, 2 part files) the interrupted ones must equal."""
    return tiny_sweep


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MiB tmpfs at ``tmp_path / "tmpfs"``: a disk that really fills up."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); the portable test ran")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    """Write a file until the file system refuses: no space left at all."""
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def _spec_file(tmp_path, reference) -> Path:
    """The reference sweep's spec, as the file ``ntk-dist run`` reads."""
    path = tmp_path / "tiny.yaml"
    shutil.copy(reference.out_dir / "spec.yaml", path)
    return path


def _assert_same_sweep(out: Path, reference) -> None:
    runs = read_runs(out)
    keys = runs.column("run_key").to_pylist()
    assert len(keys) == len(set(keys)) and keys == reference.runs.column("run_key").to_pylist()
    ours = read_runs(out).column("phase").to_pylist()
    assert ours == reference.runs.column("phase").to_pylist()
    assert (out / "boundaries.parquet").exists()


def _assert_nothing_partial(out: Path) -> None:
    # Temporary files are hidden and removed when their write fails; every visible one reads.
    assert not [p for p in out.rglob(".tmp-*")]
    read_runs(out)  # raises, naming the file, on a truncated part


def test_full_disk_during_sweep_is_exit_2_and_resumes(
    reference, no_figures, tmp_path, monkeypatch, capsys
):
    out, spec_path = tmp_path / "out", _spec_file(tmp_path, reference)
    real = files_module.write_atomic

    def disk_fills_at_second_part(path, write, **kw):
        if Path(path).name.startswith("part-") and list(Path(path).parent.glob("part-*")):

            def torn(fh):  # half a file, then the disk is full
                fh.write(b"PAR1\0\0\0\0")
                raise NO_SPACE

            return real(path, torn, **kw)
        return real(path, write, **kw)

    monkeypatch.setattr(files_module, "write_atomic", disk_fills_at_second_part)
    assert cli_main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the device holding {out}" in err
    assert "free space there and rerun the same command to resume" in err
    assert "Traceback" not in err
    _assert_nothing_partial(out)
    # Only the first part file landed (batches are cut per task slot, so it holds a share
    # of round 0), and no boundaries were written.
    assert len(list((out / "runs").glob("part-*.parquet"))) == 1
    assert 0 < read_runs(out).num_rows < reference.runs.num_rows
    assert not (out / "boundaries.parquet").exists()
    # The journal's append can be cut short too (Optuna writes it without a temporary file).
    with open(out / "study.journal", "ab") as fh:
        fh.write(b'{"op_code":4,"worker_id":"cut-')

    monkeypatch.setattr(files_module, "write_atomic", real)  # space freed
    assert cli_main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    _assert_same_sweep(out, reference)


def test_full_tmpfs_during_sweep_is_exit_2_and_resumes(
    reference, no_figures, tmpfs, tmp_path, capsys, monkeypatch
):
    from ntk_dist.study import sweep

    out, spec_path = tmpfs / "out", _spec_file(tmp_path, reference)
    args = ["run", str(spec_path), "--out", str(out), "--no-progress"]
    # The driver pauses once round 0 is stored, so the disk fills between the rounds
    # however fast the batches train.
    stored, filled = threading.Event(), threading.Event()
    store = sweep.store_finished_batches

    def store_then_wait(*a, **kw):
        keys = store(*a, **kw)
        stored.set()
        filled.wait(120)
        return keys

    monkeypatch.setattr(sweep, "store_finished_batches", store_then_wait)
    code = []
    driver = threading.Thread(target=lambda: code.append(cli_main(args)))
    driver.start()
    assert stored.wait(120)
    round_0 = sorted((out / "runs").glob("part-*.parquet"))
    filler = _fill(tmpfs)
    filled.set()
    driver.join(timeout=120)
    err = capsys.readouterr().err
    assert code == [2], err[-3000:]
    assert f"no space left on the device holding {out}" in err and "rerun" in err
    _assert_nothing_partial(out)
    # Only round 0's part files landed, and no boundaries were written.
    assert round_0 and sorted((out / "runs").glob("part-*.parquet")) == round_0
    assert 0 < read_runs(out).num_rows < reference.runs.num_rows
    assert not (out / "boundaries.parquet").exists()

    filler.unlink()
    monkeypatch.setattr(sweep, "store_finished_batches", store)
    assert cli_main(args) == 0
    _assert_same_sweep(out, reference)


def _gram_inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(450, 8)), rng.normal(size=(330, 8))


def _assert_log_whole(out: Path, rows: int, cols: int) -> None:
    """The tile log of a finished cross Gram: every tile once, nothing else."""
    lines = (out / LOG).read_text().splitlines()
    # "i j sha256" per tile (the sha256 of the tile's blocks, verified by check).
    assert all(re.fullmatch(r"\d+ \d+ [0-9a-f]{64}", line) for line in lines), lines
    logged = [tuple(map(int, line.split()[:2])) for line in lines]
    assert sorted(logged) == [(i, j) for i in range(rows) for j in range(cols)]


def test_full_disk_during_gram_is_a_clear_error_and_resumes(ray_local, tmp_path, monkeypatch):
    # A cross Gram (every tile (i, j) valid), checkpointed after each tile; the fourth log
    # append is cut halfway through its line, then the disk is full.
    x1, x2 = _gram_inputs()
    out = tmp_path / "g"
    real_open = open
    appends = []

    class FillingLog:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            appends.append(text)
            if len(appends) == 4:
                self.fh.write(text[: len(text) // 2])
                self.fh.flush()
                raise NO_SPACE
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def opening(path, *args, **kwargs):
        fh = real_open(path, *args, **kwargs)
        return FillingLog(fh) if Path(path).name == LOG else fh

    monkeypatch.setattr(store_module, "open", opening, raising=False)
    monkeypatch.setattr(store_module.DiskSink, "_FLUSH_S", -1.0)
    with pytest.raises(ValueError, match=f"no space left on the device holding {out}: free space"):
        gram(x1, x2, tile=64, out=out, max_in_flight=2, **CFG)
    assert not is_complete(out)
    assert (out / LOG).read_text().count("\n") == 3  # three tiles on disk, a torn fourth line

    monkeypatch.undo()
    res = gram(x1, x2, tile=64, out=out, **CFG)
    assert res.tiles_total == 8 * 6 and res.tiles_computed == 8 * 6 - 3
    _assert_log_whole(out, 8, 6)
    ref = fc_kernel(x1, x2, **CFG)
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), atol=atol(np.float64))


_GRAM_DRIVER = """
import sys
import numpy as np
from ntk_dist.cli import main
from ntk_dist.distributed.gram_store import DiskSink
from ntk_dist.distributed.runtime import ensure_ray
DiskSink._FLUSH_S = -1.0  # log every tile
ensure_ray(address=sys.argv[1])
sys.exit(main(sys.argv[2:]))
"""


def test_full_tmpfs_during_gram_is_exit_2_and_resumes(ray_local, tmpfs, tmp_path):
    # Without blocks allocated up front, the memmap write after the fill dies of SIGBUS.
    x1, x2 = _gram_inputs()
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "x2.npy", x2)
    out = tmpfs / "g"
    script = tmp_path / "driver.py"
    script.write_text(_GRAM_DRIVER)
    cmd = [sys.executable, str(script), ray_local.get_runtime_context().gcs_address, "gram"]
    cmd += ["--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.npy"), "--out", str(out)]
    cmd += ["--depth", "2", "--activation", "relu", "--sigma-w", "1.5", "--sigma-b", "0.1"]
    cmd += ["--tile", "64", "--quiet"]  # 8 x 6 tiles, 2.4 MB of .npy in a 4 MiB tmpfs
    env = dict(os.environ, PYTHONPATH=str(REPO))
    driver = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / LOG).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    filler = _fill(tmpfs)
    err = driver.communicate(timeout=120)[1]
    assert driver.returncode == 2, (driver.returncode, err[-3000:])
    assert f"no space left on the device holding {out}" in err and "rerun" in err
    assert not is_complete(out)

    filler.unlink()
    # The resume is not about the process boundary: in process, on the session's Ray.
    assert cli_main(cmd[3:]) == 0
    _assert_log_whole(out, 8, 6)
    ref = fc_kernel(x1, x2, **CFG)
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(np.load(out / f"{name}.npy"), getattr(ref, name), atol=1e-12)


def test_trim_torn_line(tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"0 1\n2 3\n4")
    trim_torn_line(log)
    assert log.read_bytes() == b"0 1\n2 3\n"
    trim_torn_line(log)  # a whole log is left alone
    assert log.read_bytes() == b"0 1\n2 3\n"
    log.write_bytes(b"x" * 70_000)  # no newline at all, longer than one read
    trim_torn_line(log)
    assert log.read_bytes() == b""
    trim_torn_line(tmp_path / "missing")


# --- memory: split or refused before anything starts ---


def test_in_memory_gram_too_large_is_refused_before_work(monkeypatch):
    monkeypatch.setattr("ntk_dist.distributed.runtime.available_memory", lambda: 2**20)
    monkeypatch.setattr(gram_module, "_compute_tile", None)  # no tile may run
    with pytest.raises(ValueError, match="more than half the 0.0 GiB of free memory; pass out="):
        gram(np.zeros((400, 8)), **CFG)  # 2 x 400^2 float64 = 2.4 MiB


def _toy_jobs(spec_dict, n, width=4096):
    spec = parse_spec({**spec_dict, "model": {"kind": "toy", "widths": [width]}})
    return [spec.job(width, 1.0 + 0.1 * i, 0, f"j{i}") for i in range(n)]


def test_training_batch_is_split_to_fit_free_memory(tiny_sweep_spec, monkeypatch):
    jobs = _toy_jobs(tiny_sweep_spec, 6)
    need = estimate_bytes(jobs[0])
    sizes = []
    train_module = importlib.import_module("ntk_dist.engine.train")
    real = train_module.train_batch

    def recording(batch, **options):
        sizes.append(len(batch))
        return real(batch, **options)

    monkeypatch.setattr("ntk_dist.distributed.runtime.available_memory", lambda: 2 * need + 1)
    monkeypatch.setattr(train_module, "train_batch", recording)
    table = run_jobs(jobs)
    assert sizes == [2, 2, 2] and table.column("tag").to_pylist() == [j.tag for j in jobs]


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_training_job_too_large_is_refused_before_it_starts(
    ray_local, tiny_sweep_spec, monkeypatch, backend
):
    jobs = _toy_jobs(tiny_sweep_spec, 2)
    need = estimate_bytes(jobs[0])
    monkeypatch.setattr("ntk_dist.distributed.runtime.available_memory", lambda: need - 1)
    monkeypatch.setattr("ntk_dist.distributed.runtime.task_memory", lambda resources: need - 1)
    monkeypatch.setattr("ntk_dist.engine.train.train_batch", None)  # nothing may train
    monkeypatch.setattr(execute_module, "_batch_task", None)
    with pytest.raises(ValueError, match="training job of width 4096 on 1 points needs about"):
        run_jobs(jobs, backend=backend)


def test_the_free_memory_probe_reads_this_machine():
    from ntk_dist.distributed.runtime import available_memory

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= total
