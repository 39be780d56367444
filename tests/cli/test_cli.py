"""CLI plumbing: subcommands register, usage errors exit 2."""

import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "ntk_dist", *args], capture_output=True, text=True, timeout=120
    )


def test_version_lists_dependencies():
    out = _run("version")
    assert out.returncode == 0, out.stderr
    for name in ("ntk_dist", "jax", "ray", "optuna", "pyarrow"):
        assert name in out.stdout


def test_unknown_command_exits_2():
    out = _run("no-such-command")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
