"""The local default Ray instance listens on loopback only, with the dashboard off.

Checked on the production path in a fresh process that imports ray first and has no
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER in its environment (the test session sets it)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, os, subprocess
import ray  # imported before ntk_dist on purpose: Ray reads its settings at import
from ntk_dist.runtime import ensure_ray

def descendants(pid):
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out

ensure_ray(num_cpus=1)
ray.get(ray.remote(lambda: 1).remote())
pids = descendants(os.getpid()) | {os.getpid()}
lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
sockets = [(l.split()[3], l.split("users:")[1]) for l in lines
           if any(f"pid={p}," in l for p in pids)]
print(json.dumps({"nodes": [n["NodeManagerAddress"] for n in ray.nodes()], "sockets": sockets}))
ray.shutdown()
"""


@pytest.mark.skipif(
    shutil.which("ss") is None or not os.path.isdir("/proc"), reason="needs ss and /proc"
)
def test_local_default_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=180
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["nodes"] == ["127.0.0.1"]
    names = " ".join(user for _, user in report["sockets"])
    assert "gcs_server" in names and "raylet" in names, report
    loopback = ("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")
    assert [s for s in report["sockets"] if not s[0].startswith(loopback)] == []
    assert "dashboard" not in names.replace("DashboardA", "")  # the agent, not the dashboard
