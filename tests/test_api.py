"""The public API: every name in ``ntk_dist.__all__`` imports, is defined inside the
package and is documented, and ``import ntk_dist`` alone stays light."""

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ntk_dist

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "ray", "optuna", "matplotlib")


def _package_modules() -> list:
    names = [m.name for m in pkgutil.walk_packages(ntk_dist.__path__, "ntk_dist.")]
    return [importlib.import_module(n) for n in names if not n.endswith("__main__")]


def _defining_modules(name: str, obj) -> list[str]:
    """Modules of the package that bind ``name`` to ``obj`` at top level."""
    return [m.__name__ for m in _package_modules() if vars(m).get(name) is obj]


def test_all_has_no_duplicates_and_the_entry_points():
    assert len(ntk_dist.__all__) == len(set(ntk_dist.__all__))
    for name in ("fc_kernel", "gram", "empirical_ntk", "sharpness", "run_jobs", "run_sweep"):
        assert name in ntk_dist.__all__


@pytest.mark.parametrize("name", ntk_dist.__all__)
def test_public_name_imports_from_the_package(name):
    namespace = {}
    exec(f"from ntk_dist import {name}", namespace)
    assert namespace[name] is getattr(ntk_dist, name)


@pytest.mark.parametrize("name", ntk_dist.__all__)
def test_public_name_is_defined_in_the_package(name):
    obj = getattr(ntk_dist, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__.startswith("ntk_dist."), obj.__module__
        assert obj.__name__ == name
        assert getattr(importlib.import_module(obj.__module__), name) is obj
    else:  # a constant (a schema, a tuple of labels): bound in one of the package's modules
        assert _defining_modules(name, obj), f"{name} is bound in no ntk_dist module"


@pytest.mark.parametrize("name", ntk_dist.__all__)
def test_public_name_is_documented(name):
    obj = getattr(ntk_dist, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
        assert doc and doc.strip(), f"{name} has no docstring of its own"
        # A dataclass without a docstring gets its signature as one: that is no doc.
        assert not doc.startswith(f"{name}("), f"{name} has only a generated docstring"
    else:  # constants cannot carry a docstring: the API reference names them
        assert f"`{name}`" in (REPO / "docs" / "api.md").read_text(), name


def test_import_loads_none_of_the_heavy_dependencies():
    code = (
        "import sys, ntk_dist; ntk_dist.__version__; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"import ntk_dist loaded {done.stdout.strip()}"
