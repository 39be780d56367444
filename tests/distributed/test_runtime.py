"""The local default Ray instance listens on loopback only, with the dashboard off and
token authentication on.

Checked on the production path in a fresh process that imports ray first, has no
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER in its environment (the test session sets it) and
asks for RAY_AUTH_MODE=disabled, which the local default overrides. The listening
sockets of the driver and every process under it are read with psutil."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os
import ray  # imported before ntk_dist on purpose: Ray reads its settings at import
import psutil  # the copy Ray ships (ray/thirdparty_files, on sys.path once ray is imported)
from ray._private.authentication.authentication_utils import is_token_auth_enabled
from ntk_dist.distributed.runtime import ensure_ray

ensure_ray(num_cpus=1)
ray.get(ray.remote(lambda: 1).remote())
me = psutil.Process()
procs = [me] + me.children(recursive=True)
pids = {p.pid: p.name() for p in procs}
sockets = [(c.laddr.ip, c.laddr.port, pids[c.pid]) for c in psutil.net_connections("inet")
           if c.status == psutil.CONN_LISTEN and c.pid in pids]
gcs = [p for p in procs if "gcs_server" in p.name()]
print(json.dumps({
    "nodes": [n["NodeManagerAddress"] for n in ray.nodes()],
    "sockets": sockets,
    "token_auth": is_token_auth_enabled(),
    "gcs_auth_mode": [p.environ().get("RAY_AUTH_MODE") for p in gcs],
    "port_8265": [c.laddr for c in psutil.net_connections("inet")
                  if c.status == psutil.CONN_LISTEN and c.laddr.port == 8265],
}))
ray.shutdown()
"""


def test_local_default_listens_on_loopback_only_with_token_auth():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env.update(PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled")
    res = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=180
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["nodes"] == ["127.0.0.1"]
    names = " ".join(name for *_, name in report["sockets"])
    assert "gcs_server" in names and "raylet" in names, report
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    assert [s for s in report["sockets"] if s[0] not in loopback] == [], report
    assert "dashboard" not in names.replace("DashboardA", "")  # the agent, not the dashboard
    assert report["port_8265"] == []  # Ray's dashboard port: nothing listens on it
    assert report["token_auth"] is True and report["gcs_auth_mode"] == ["token"], report

    # Ray's fixed agent port: a second local instance on this host could not bind it.
    assert 52365 not in [port for _, port, _ in report["sockets"]], report
    token = Path.home() / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o077 == 0  # owner-only


def test_starting_ray_after_jax_prints_no_fork_warning(monkeypatch, recwarn):
    # Ray's start forks (subprocess with a preexec_fn) only to exec its servers; JAX,
    # once loaded, warns at every fork. A stand-in for ray.init that forks the same way:
    import subprocess
    import warnings

    import jax.numpy as jnp
    import ray

    from ntk_dist.distributed.runtime import ensure_ray

    jnp.ones(2).sum()  # JAX's threads are up
    warnings.simplefilter("always")

    def forking_init(**kwargs):
        subprocess.run(["true"], preexec_fn=lambda: None, check=True)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", forking_init)
    with warnings.catch_warnings(record=True) as control:
        warnings.simplefilter("always")
        forking_init()
    assert any("os.fork()" in str(w.message) for w in control)  # the warning exists
    assert ensure_ray(address="auto")
    assert not [w for w in recwarn if "os.fork()" in str(w.message)]


def test_the_token_file_is_created_owner_only_or_made_so(tmp_path, monkeypatch):
    from ntk_dist.distributed.runtime import secure_token_file

    monkeypatch.setenv("HOME", str(tmp_path))
    path = secure_token_file()
    assert path == tmp_path / ".ray" / "auth_token"
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text()) >= 32
    path.chmod(0o644)  # as Ray writes it
    token = path.read_text()
    assert secure_token_file().stat().st_mode & 0o777 == 0o600 and path.read_text() == token


def test_free_ports_are_free_and_on_loopback():
    import socket

    from ntk_dist.distributed.runtime import free_port

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # still free: nothing kept it
