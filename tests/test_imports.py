"""`import ntk_dist` and the CLI's cheap paths load none of the heavy libraries.

Each check runs in a fresh interpreter, so modules imported by other tests do not count.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ntk_dist

HEAVY = ("jax", "ray", "optuna", "matplotlib", "scipy")
ROOT = Path(ntk_dist.__file__).resolve().parents[1]

# A fresh interpreter: run the CLI, then report its exit code and which heavy modules loaded.
_PROBE = """
import json, sys
from ntk_dist.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exit_:
    rc = exit_.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"rc": rc, "heavy": heavy}}), file=sys.__stdout__)
"""


def _env() -> dict:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_env(), timeout=120
    )


def _cli(*argv: str) -> tuple[dict, str]:
    proc = _python("-c", _PROBE.format(heavy=HEAVY), *argv)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_import_ntk_dist_loads_no_heavy_library():
    code = f"import sys, ntk_dist; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["validate", "--help"]])
def test_help_and_version_load_no_heavy_library(argv):
    result, _ = _cli(*argv)
    assert result == {"rc": 0, "heavy": []}


def test_check_of_a_missing_directory_loads_no_heavy_library(tmp_path):
    result, err = _cli("check", str(tmp_path / "missing"))
    assert result == {"rc": 2, "heavy": []}
    assert "no such directory" in err


# Errors raised while a section is validated, before any model is built.
BAD_SPECS = {
    "negative width": (
        "name: bad\nmodel: {kind: toy, widths: [-3]}\n",
        "model.widths[0]: must be a positive integer, got -3",
    ),
    "unknown key": (
        "name: bad\nmodel: {kind: toy, widths: [64]}\nsearch: {n_trails: 3}\n",
        "search.n_trails: unknown key",
    ),
    "unknown activation": (
        "name: bad\nmodel: {kind: fc, widths: [64], activation: swish}\n",
        "model.activation: unknown activation 'swish'",
    ),
    "unknown sampler": (
        "name: bad\nmodel: {kind: toy, widths: [64]}\nsearch: {sampler: annealing}\n",
        "search.sampler: unknown sampler 'annealing'",
    ),
    "not a mapping": ("- 1\n- 2\n", "a sweep spec must be a mapping, got list"),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_bad_spec_is_reported_without_heavy_libraries(tmp_path, command, case):
    text, message = BAD_SPECS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result, err = _cli(command, str(path))
    assert result == {"rc": 2, "heavy": []}
    assert err.startswith(f"ntk-dist {command}: error: {path}: {message}")


def test_importtime_of_help_names_no_heavy_module():
    proc = _python("-X", "importtime", "-m", "ntk_dist", "--help")
    assert proc.returncode == 0, proc.stderr
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "ntk_dist.cli" in names  # the report was parsed
    assert [n for n in names if n.split(".")[0] in HEAVY] == []
