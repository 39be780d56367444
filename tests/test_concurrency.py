"""Concurrency: one driver per output directory (a lock a crash does not leave stale), and
two sweeps on one Ray instance, each with its own directory, both complete correctly."""

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

from ntk_dist.cli import main as cli_main
from ntk_dist.study.results import read_runs
from ntk_dist.study.spec import parse_spec
from ntk_dist.study.sweep import run_sweep
from tests.conftest import TINY_SWEEP

REPO = Path(__file__).resolve().parents[1]


def _env(**extra):
    """This process's environment now (joining its Ray needs the token Ray put there)."""
    return dict(os.environ, PYTHONPATH=str(REPO), **extra)


def _spec(name, width, seeds, n_trials=6):
    return {
        "name": name,
        "model": {"kind": "toy", "widths": [width]},
        "training": {"seeds": seeds, "steps": 64},
        "search": {"eta_lambda0": [1.0, 5.0], "n_trials": n_trials, "parallel": 3},
    }


# A driver that starts its own local Ray while it holds OUT/.lock (the API path: run_sweep
# starts Ray under the lock), so Ray's daemons outlive its SIGKILL.
_LOCAL_DRIVER = """
import sys
from ntk_dist.study.spec import load_spec
from ntk_dist.study.sweep import run_sweep
run_sweep(load_spec(sys.argv[1]), sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_busy_directory_refused_and_lock_not_stale_after_sigkill(
    ray_local, no_figures, tmp_path, capsys
):
    # The first driver holds OUT/.lock from before its Ray starts until it is killed: a
    # start of a local Ray is seconds, time enough for the second driver to be refused.
    spec = _spec("locked", 64, 1)
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out"
    spec_path.write_text(yaml.safe_dump(spec))
    script = tmp_path / "driver.py"
    script.write_text(_LOCAL_DRIVER)
    first = subprocess.Popen(
        [sys.executable, str(script), str(spec_path), str(out)],
        env=_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "runs").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first driver ended before a second could try"

        assert cli_main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{out} is in use by another ntk-dist run" in err and "choose another --out" in err

        os.kill(first.pid, signal.SIGKILL)  # the driver only: its Ray daemons live on a while
        first.wait()
        start = time.monotonic()
        resumed = run_sweep(parse_spec(spec), out, progress=False)
        assert time.monotonic() - start < 60
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)  # the first driver's orphaned local Ray
        except ProcessLookupError:
            pass
    keys = resumed.runs.column("run_key").to_pylist()
    assert len(keys) == len(set(keys)) == 6


def test_two_sweeps_on_one_ray_instance_both_complete(ray_local, tiny_sweep, no_figures, tmp_path):
    # Two drivers on the session's Ray: a `ntk-dist run` subprocess and this process. Ours
    # is the tiny sweep, whose undisturbed run is the session's.
    specs = {"left": _spec("left", 64, 2), "tiny": TINY_SWEEP}
    (tmp_path / "left.yaml").write_text(yaml.safe_dump(specs["left"]))
    cmd = [sys.executable, "-m", "ntk_dist", "run", str(tmp_path / "left.yaml")]
    cmd += ["--out", str(tmp_path / "left"), "--no-progress"]
    cmd += ["--address", ray_local.get_runtime_context().gcs_address]
    other = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "left" / "study.journal").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # start ours once the other driver is at work
    run_sweep(parse_spec(specs["tiny"]), tmp_path / "tiny", progress=False)
    err = other.communicate(timeout=240)[1]
    assert other.returncode == 0, err[-3000:]

    references = {
        "left": run_sweep(parse_spec(specs["left"]), tmp_path / "left_reference", progress=False),
        "tiny": tiny_sweep,
    }
    for name, spec in specs.items():
        ref = references[name]
        runs = read_runs(tmp_path / name)
        keys = runs.column("run_key").to_pylist()
        assert len(keys) == len(set(keys)) == 6 * spec["training"]["seeds"]
        assert keys == ref.runs.column("run_key").to_pylist()
        assert set(runs.column("sweep").to_pylist()) == {name}
        ours = pq.read_table(tmp_path / name / "boundaries.parquet").to_pandas()
        theirs = ref.boundaries.to_pandas()
        for col in ("width", "boundary", "eta_lambda0", "ci_low", "ci_high", "n_runs"):
            np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col].to_numpy())
