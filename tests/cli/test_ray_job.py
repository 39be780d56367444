"""``ray job submit`` of ``ntk-dist run`` to a Ray head on 127.0.0.1 with token
authentication (docs/cluster.md): the job succeeds, its logs are readable with
``ray job logs``, a wrong token is refused, and the head is stopped afterwards."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_SWEEP

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ray(*args, env, timeout=180):
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_ray_job_submit_runs_a_sweep_on_a_token_authenticated_head(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),  # this head's own token, not ~/.ray/auth_token
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # servers on loopback only
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = _free_port(), _free_port()
    ray_dir = tempfile.mkdtemp(prefix="ntk-rj-", dir="/tmp")
    log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed in finally
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
        + ["--port", str(gcs), "--num-cpus", "1", "--disable-usage-stats"]
        + ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1"]
        + ["--dashboard-port", str(dashboard), "--ray-client-server-port", str(_free_port())]
        + ["--dashboard-agent-listen-port", str(_free_port())]
        + ["--temp-dir", ray_dir],  # a short path: Ray's Unix sockets live under it
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the head and every process it starts: one group to stop
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 180
        # A `ray` command is a Python start of its own: poll the dashboard's port first.
        while not _listening(dashboard):
            started = head.poll() is None and time.time() < deadline
            assert started, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(0.2)
        while _ray("job", "list", "--address", address, env=env).returncode != 0:
            started = head.poll() is None and time.time() < deadline
            assert started, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        spec = tmp_path / "tiny.yaml"
        spec.write_text(yaml.safe_dump(TINY_SWEEP))
        out = tmp_path / "out"
        # As docs/cluster.md submits it: the command waits for the job and tails its logs.
        submitted = _ray(
            *("job", "submit", "--address", address, "--working-dir", str(ROOT)),
            *("--submission-id", "tiny", "--"),
            *("python", "-m", "ntk_dist", "run", str(spec), "--address", "auto"),
            *("--out", str(out), "--no-progress"),
            env=env,
            timeout=300,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        status = _ray("job", "status", "--address", address, "tiny", env=env).stdout
        logs = _ray("job", "logs", "--address", address, "tiny", env=env).stdout
        assert "Job 'tiny' succeeded" in status, status + logs
        assert "6 runs (6 new)" in logs and "c_loss" in logs, logs
        assert (out / "boundaries.parquet").is_file()
        wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        refused = _ray("job", "status", "--address", address, "tiny", env=wrong)
        assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # what a graceful stop left behind
        except ProcessLookupError:
            pass
        head.wait()
        log.close()
        shutil.rmtree(ray_dir, ignore_errors=True)
