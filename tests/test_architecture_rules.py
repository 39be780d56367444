"""The package's architecture rules hold: layer contract, no cycles, no private names
across modules, no module over 500 lines (tools/check_architecture.py), and the checker
itself finds each kind of violation."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_architecture", REPO / "tools" / "check_architecture.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_package_has_no_cycle_private_import_or_long_module(capsys):
    assert _checker().main([str(REPO / "ntk_dist")]) == 0, capsys.readouterr().out


def test_layer_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "0 broken" in res.stdout


@pytest.fixture
def bad_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (pkg / "b.py").write_text("from pkg import a\n\ndef g():\n    return a.f\n")
    (pkg / "sub" / "c.py").write_text(
        "from pkg.a import _hidden\nfrom pkg import b\nx = b._secret\n" + "y = 1\n" * 501
    )
    return pkg


def test_the_checker_finds_each_kind_of_violation(bad_package, capsys):
    assert _checker().main([str(bad_package)]) == 1
    out = capsys.readouterr().out
    assert "import cycle: pkg.a -> pkg.b" in out  # hidden behind a local import
    assert "imports _hidden from pkg.a" in out
    assert "uses pkg.b._secret" in out
    assert "c.py: 504 lines (> 500)" in out
    assert "import cycles: 1, private cross-module names: 2, modules over 500 lines: 1" in out
