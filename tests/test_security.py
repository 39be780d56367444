"""Security posture beyond the network (tests/test_runtime.py, tests/test_cluster_config.py):
YAML is only ever loaded safely, no untrusted pickle is ever loaded, and the README says
how to reach the dashboard through an SSH tunnel."""

import re
from pathlib import Path

import pytest

from ntk_dist.study.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p
    for d in ("ntk_dist", "tests", "bench")
    for p in (ROOT / d).rglob("*.py")
    if p != Path(__file__).resolve()  # its own examples below
)
# numpy's np.load refuses pickles unless allow_pickle=True (its default since 1.16.3).
UNSAFE = {
    "yaml loader that can build objects": r"yaml\.(unsafe_load|full_load|load_all|load)\(",
    "pickle": r"\b(c?pickle|cloudpickle|dill|joblib)\.loads?\(",
    "pandas pickle": r"read_pickle\(",
    "numpy pickle": r"allow_pickle\s*=\s*True",
    "torch pickle": r"torch\.load\(",
}


def _calls(pattern):
    hits = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line) and "safe_load" not in line:
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return hits


@pytest.mark.parametrize("what", list(UNSAFE))
def test_no_unsafe_deserialisation_in_the_sources(what):
    assert _calls(UNSAFE[what]) == []


def test_the_scan_finds_what_it_looks_for():
    bad = "yaml.load(open('s'))\npickle.loads(b'')\nnp.load(f, allow_pickle=True)\n"
    hits = [re.search(p, line) for line in bad.splitlines() for p in UNSAFE.values()]
    assert sum(h is not None for h in hits) == 3


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['touch PWNED']\n",
        "name: x\nmodel: !!python/object/apply:os.system ['touch PWNED']\n",
        "name: x\nmodel: {kind: toy, widths: !!python/object/new:list [[64]]}\n",
    ],
)
def test_python_tags_in_a_spec_are_rejected_and_never_run(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}: not valid YAML"):
        load_spec(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.yaml"]


def test_readme_has_a_security_section_with_the_ssh_tunnel():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    assert "ray dashboard cluster.yaml" in section and "ssh -L 8265:localhost:8265" in section
    assert "127.0.0.1" in section and "RAY_AUTH_MODE=token" in section
