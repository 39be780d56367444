"""Outputs on object storage, against a real S3-compatible server on 127.0.0.1 (moto):
whole objects only, a sweep killed and resumed from the remote copy alone, check and report."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from ntk_dist.core.files import write_text_atomic
from ntk_dist.core.storage import Remote, staged
from tests.servers import BUCKET


def test_staged_writes_land_as_whole_objects_and_come_back(s3, tmp_path):
    uri = f"s3://{BUCKET}/unit"
    with staged(uri) as local:
        (local / "sub").mkdir()
        write_text_atomic("hello\n", local / "sub" / "a.txt")
        write_text_atomic("", local / ".tmp-123-probe")  # a temporary name: never uploaded
    assert not local.exists()  # the staged copy is gone with the command
    remote = Remote(uri)
    assert remote.files() == ["sub/a.txt"]
    assert remote.get("sub/a.txt") == b"hello\n"
    with staged(uri, mirror=False) as again:  # a fresh, empty disk: the remote copy alone
        assert (again / "sub" / "a.txt").read_text() == "hello\n"
        write_text_atomic("x", again / "b.txt")
    assert remote.files() == ["sub/a.txt"]  # mirror=False (check) writes nothing


def test_a_missing_bucket_is_named_before_any_work(s3):
    with pytest.raises(ValueError, match=r"output s3://no-such-bucket/x is not writable"):
        with staged("s3://no-such-bucket/x"):
            pass


def _s3_parts(uri) -> int:
    return sum(1 for f in Remote(uri).files() if f.startswith("runs/part-"))


@pytest.mark.slow
def test_sweep_killed_then_resumed_from_the_remote_copy_alone(
    s3, tiny_sweep, tmp_path, monkeypatch
):
    import ray

    from ntk_dist.cli import main
    from ntk_dist.engine.records import RECORD_SCHEMA
    from ntk_dist.study import sweep
    from ntk_dist.study.spec import parse_spec
    from ntk_dist.study.sweep import run_sweep
    from tests.conftest import TINY_SWEEP

    uri = f"s3://{BUCKET}/tiny"
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(TINY_SWEEP))
    driver_disk = tmp_path / "driver-disk"  # the killed driver's local disk (its TMPDIR)
    driver_disk.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(driver_disk),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "ntk_dist", "run", str(spec_path), "--out", uri]
    proc = subprocess.Popen(
        [*command, "--no-progress", "--address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while _s3_parts(uri) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    output = proc.communicate()[0].decode()
    assert _s3_parts(uri) >= 1, output
    names = Remote(uri).files()
    assert {"spec.yaml", "spec.sha256", "study.journal"} <= set(names), names
    assert not [n for n in names if Path(n).name.startswith(".tmp-")]
    for path in driver_disk.iterdir():  # the disk is lost: nothing local survives
        subprocess.run(["rm", "-rf", str(path)], check=True)

    # Training is not under test here (the killed driver trained for real): the resumed
    # sweep takes each job's record from the session's tiny sweep by run key, and a
    # point the tiny sweep did not ask fails the lookup.
    records = tiny_sweep.runs.select(RECORD_SCHEMA.names)
    row = {k: i for i, k in enumerate(records.column("tag").to_pylist())}
    stored = lambda spec, jobs: [ray.put(records.take([row[j.tag]])) for j in jobs]
    monkeypatch.setattr(sweep, "submit_runs", stored)
    resumed = run_sweep(parse_spec(TINY_SWEEP), uri, progress=False, echo=lambda *a: None)
    assert resumed.out_dir == uri
    keys = resumed.runs.column("run_key").to_pylist()
    assert len(keys) == len(set(keys)) == 6
    assert keys == tiny_sweep.runs.column("run_key").to_pylist()
    with staged(uri, mirror=False) as local:
        ours = pq.read_table(local / "boundaries.parquet").to_pandas()
        assert (local / "figures" / "phase_diagram.png").is_file()
    ref = tiny_sweep.boundaries.to_pandas()
    for col in ("eta_lambda0", "ci_low", "ci_high", "n_runs"):
        np.testing.assert_array_equal(ours[col].to_numpy(), ref[col].to_numpy())

    assert main(["check", uri]) == 0
    assert main(["report", "--quiet", "--n-boot", "20", uri]) == 0
    assert "report.md" in Remote(uri).files()


def test_errors_inside_a_staged_copy_name_the_uri(s3):
    uri = f"s3://{BUCKET}/errors"
    with pytest.raises(ValueError, match=rf"^{uri}/spec.yaml: missing$"):
        with staged(uri) as local:
            raise ValueError(f"{local / 'spec.yaml'}: missing")
