"""The local default Ray instance: loopback only, dashboard off, token authentication on."""

import shutil
import subprocess

import pytest


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_local_ray_binds_to_loopback_only(ray_local):
    ray = ray_local
    nodes = ray.nodes()
    assert nodes and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes)
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    ray_sockets = [
        ln for ln in listening.splitlines() if any(p in ln for p in ("raylet", "gcs_server"))
    ]
    assert ray_sockets, "no Ray listener found"
    for line in ray_sockets:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")), line


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_dashboard_is_off_by_default(ray_local):
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    assert "dashboard" not in listening
