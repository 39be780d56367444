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


TOY = "name: {name}\nmodel: {{kind: toy, widths: {widths}}}\nsearch: {{eta_lambda0: {eta}}}\n"


def _spec_file(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _laughs(levels: int = 9) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_laughs(), "expands to more than 100000 values once its aliases"),
        ("a: &a [*a]\n", "refers to a value that contains it"),
        ("model: " + "[" * 20000 + "]" * 20000, "nested more than 64 levels deep"),
        ("name: x\nwidths: [" + "1, " * 400_000 + "1]\n", "more than the 1048576 a spec"),
        (b"name: caf\xe9\n", "not UTF-8 text"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
    ids=["billion-laughs", "recursive-alias", "deep-nesting", "huge-file", "latin-1", "bad"],
)
def test_hostile_spec_files_fail_fast_naming_the_file(tmp_path, text, match):
    import time

    path = _spec_file(tmp_path, text)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match) as err:
        load_spec(path)
    assert str(path) in str(err.value) and len(str(err.value)) < 500
    assert time.perf_counter() - start < 3


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": "'..'"}, "name: String should match pattern"),
        ({"name": "."}, "name: String should match pattern"),
        ({"name": "a/b"}, "name: String should match pattern"),
        ({"widths": "[256, 256]"}, r"lists the widths \[256\] more than once"),
        ({"eta": "[1.0, 1.0000000001]"}, "is narrower than search.resolution"),
    ],
)
def test_odd_specs_are_rejected_at_validate(tmp_path, fields, match):
    values = {"name": "ok", "widths": "[64]", "eta": "[1.0, 5.0]", **fields}
    path = _spec_file(tmp_path, TOY.format(**values))
    with pytest.raises(ValueError, match=match) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_a_long_bad_value_is_shown_truncated(tmp_path):
    path = _spec_file(tmp_path, "name: ok\nmodel: {kind: toy, widths: [64]}\nnope: " + "x" * 5000)
    with pytest.raises(ValueError, match=r"\.\.\. \(5002 characters\)") as err:
        load_spec(path)
    assert len(str(err.value)) < 500


def test_minus_zero_and_zero_are_the_same_spec(tmp_path):
    fc = "name: z\nmodel: {{kind: fc, widths: [64], sigma_b: {}}}\n"
    zero = load_spec(_spec_file(tmp_path, fc.format("0.0"), "a.yaml"))
    minus = load_spec(_spec_file(tmp_path, fc.format("-0.0"), "b.yaml"))
    assert minus.spec_hash() == zero.spec_hash() and "-0.0" not in minus.to_yaml()
