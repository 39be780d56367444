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

# A fresh interpreter: run the CLI once per argv of a JSON list, in order, and report
# each call's exit code, its stderr and which heavy modules were loaded by then. The set
# only grows, so a heavy import on one path shows in that call and in all later ones.
_PROBE = """
import contextlib, io, json, sys
from ntk_dist.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exit_:
            rc = exit_.code
    heavy = sorted(m for m in {heavy!r} if m in sys.modules)
    results.append({{"rc": rc, "heavy": heavy, "err": err.getvalue()}})
print(json.dumps(results), file=sys.__stdout__)
"""


def _env() -> dict:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_env(), timeout=120
    )


def _cli_calls(calls: list[list[str]]) -> list[tuple[dict, str]]:
    """(exit code and heavy modules, stderr) of each CLI call, all in one fresh interpreter."""
    proc = _python("-c", _PROBE.format(heavy=HEAVY), json.dumps(calls))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return [({"rc": r["rc"], "heavy": r["heavy"]}, r["err"]) for r in results]


def test_import_ntk_dist_loads_no_heavy_library():
    code = f"import sys, ntk_dist; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


HELP = [["--help"], ["version"], ["validate", "--help"]]


@pytest.fixture(scope="module")
def cheap_calls(tmp_path_factory):
    """Every cheap CLI path of this module, run in one fresh interpreter: the help and
    version calls, ``check`` of a missing directory, and validate/run of each bad spec."""
    tmp = tmp_path_factory.mktemp("cheap")
    calls = {("help", i): argv for i, argv in enumerate(HELP)}
    calls["missing"] = ["check", str(tmp / "missing")]
    for case, (text, _) in sorted(BAD_SPECS.items()):
        path = tmp / f"{sorted(BAD_SPECS).index(case)}.yaml"
        path.write_text(text)
        for command in ("validate", "run"):
            calls[command, case] = [command, str(path)]
    results = _cli_calls(list(calls.values()))
    pairs = zip(calls.items(), results, strict=True)
    return {key: (*result, argv) for (key, argv), result in pairs}


@pytest.mark.parametrize("i", range(len(HELP)), ids=[" ".join(a) for a in HELP])
def test_help_and_version_load_no_heavy_library(cheap_calls, i):
    result, _, _ = cheap_calls["help", i]
    assert result == {"rc": 0, "heavy": []}


def test_check_of_a_missing_directory_loads_no_heavy_library(cheap_calls):
    result, err, _ = cheap_calls["missing"]
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
def test_a_bad_spec_is_reported_without_heavy_libraries(cheap_calls, command, case):
    _, message = BAD_SPECS[case]
    result, err, argv = cheap_calls[command, case]
    assert result == {"rc": 2, "heavy": []}
    assert err.startswith(f"ntk-dist {command}: error: {argv[1]}: {message}")


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
