"""Fuzzed sweep specs (hypothesis): every spec is accepted and dry-runs, or is rejected
with exit code 2 and a message naming the file and the field; never a traceback, and
nothing is written for a rejected spec.

Mutations start from the shipped specs in sweeps/*.yaml: wrong types, missing fields,
out-of-range numbers, NaN/inf, unknown keys, unknown names, nested garbage, non-mapping
documents and raw YAML text (tags such as !!python/object included). The examples are
derandomised, so CI sees the same >= 1,000 specs on every run.
"""

import contextlib
import copy
import io
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntk_dist.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASES = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "sweeps").glob("*.yaml"))]
SETTINGS = dict(
    deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-3, max_value=5000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["auto", "relu", "toy", "fc", "gd", "boundary", "float32", "single"])
)
garbage = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
#: Strings that are names in some field but not in others, and plain unknown names.
names = st.sampled_from(
    ["annealing", "swish", "mnist", "cnn", "adam", "float16", "relu", "erf", "leaky_relu:0.2",
     "teacher", "digits", "qmc", "grid", "tpe", "momentum", "sgd", "fc", "toy"]
)  # fmt: skip


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


def _field(path) -> str:
    """A path as the spec's error messages write it: model.widths[1]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:  # an unknown key that is no identifier
            out += f"[{part!r}]"
    return out


@st.composite
def mutated_specs(draw):
    """(spec, paths): a shipped spec with one to three mutations, and their paths."""
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    mutated = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(spec))
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        ops = ["garbage", "delete", "unknown_key", "name", "number", "scale", "scale"]
        op = draw(st.sampled_from(ops))
        value = parent[path[-1]]
        if op == "scale" and isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = draw(st.floats(0.25, 4.0))  # often still valid: keeps specs acceptable
            parent[path[-1]] = (
                max(1, int(value * factor)) if isinstance(value, int) else value * factor
            )
        elif op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "unknown_key" and isinstance(parent, dict):
            key = draw(st.text(min_size=1, max_size=10).filter(lambda k, p=parent: k not in p))
            parent[key] = draw(garbage)
            path = path[:-1] + (key,)
        elif op == "name":
            parent[path[-1]] = draw(names)
        elif op == "number":
            parent[path[-1]] = draw(
                st.integers(-2, 70) | st.floats(-1, 40, allow_nan=False) | st.just(float("nan"))
            )
        else:
            parent[path[-1]] = draw(garbage)
        mutated.append(path)
    return spec, mutated


RAW = [
    "!!python/object/apply:os.system ['echo pwned > pwned.txt']",
    "name: x\nmodel: !!python/object/apply:os.system ['echo pwned > pwned.txt']",
    "name: x\nmodel: {kind: toy, widths: !!python/object/new:list [[1]]}",
    "!!python/name:os.system",
    "model: {kind: toy, widths: [64]\n",  # unclosed
    "\t- tab indented",
    "name: x\nname: y\nmodel: {kind: toy, widths: [64]}",  # duplicate key
    "&a [*a]",
    "",
    "---\n...\n",
    "%YAML 9.9\n--- x",
]


def _dry_run(tmp: Path, text: str):
    """Run ``ntk-dist run SPEC --dry-run`` in process; (exit code, stdout, stderr)."""
    path = tmp / "spec.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["run", str(path), "--out", str(tmp / "out"), "--dry-run"])
    return rc, out.getvalue(), err.getvalue()


def _rejected_for_real(tmp: Path) -> str:
    """The same spec without --dry-run: exit 2 before anything is written."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["run", str(tmp / "spec.yaml"), "--out", str(tmp / "out"), "--no-progress"])
    assert rc == 2, err.getvalue()
    assert not (tmp / "out").exists()
    assert sorted(p.name for p in tmp.iterdir()) == ["spec.yaml"]
    return err.getvalue()


def _judge(text: str, fields: list[str], counts: Counter) -> None:
    """Judge one spec text; ``counts`` (the calling test's own) tallies the verdicts."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rc, out, err = _dry_run(tmp, text)
        if rc == 0:
            counts["accepted"] += 1
            assert "nothing written: --dry-run" in out
            assert not (tmp / "out").exists()
            return
        counts["rejected"] += 1
        assert rc == 2, (rc, err)
        assert err.startswith(f"ntk-dist run: error: {tmp / 'spec.yaml'}"), err
        assert "Traceback" not in err
        assert not fields or any(f in err for f in fields), (fields, err)
        assert _rejected_for_real(tmp) == err


def _fuzz(strategy, max_examples: int, check) -> Counter:
    """Run ``check(example, counts)`` on the derandomised examples of ``strategy``; the
    tally is local to the call, so a test's counts never depend on the other tests."""
    counts = Counter()

    @settings(max_examples=max_examples, **SETTINGS)
    @given(strategy)
    def run(example):
        check(example, counts)

    run()
    return counts


@pytest.fixture
def in_empty_dir(tmp_path, monkeypatch):
    """Run in an empty working directory, so a spec that ran a shell command would
    leave its file there (and no leftover of another test is mistaken for one)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _judge_mutated(case, counts):
    spec, paths = case
    # An error names a mutated field (model.widths, training.budget ...), or its section
    # when a rule spans the section's fields ("data: ... 'single' is one sample ...").
    fields = [_field(p[:2]).split("[")[0] or _field(p[:1]) for p in paths]
    fields += [f"yaml: {_field(p[:1])}: " for p in paths]
    fields += ["model, data and training do not fit together"]
    if any(p[0] == "experiment" for p in paths):
        fields = []  # another kind of spec now: its own fields are named, not the mutated ones
    _judge(yaml.safe_dump(spec), fields, counts)


def _judge_document(doc, counts):
    _judge(yaml.safe_dump(doc), [] if isinstance(doc, dict) else ["must be a mapping"], counts)


#: (strategy, examples, judge) of each property test; together >= 1,000 specs.
MUTATED = (mutated_specs(), 700, _judge_mutated)
DOCUMENTS = (
    garbage | st.lists(garbage) | st.sampled_from([[], 0, "text", None]),
    150,
    _judge_document,
)
RAW_TEXT = (
    st.sampled_from(RAW) | st.text(max_size=60) | st.binary(max_size=40).map(repr),
    150,
    lambda text, counts: _judge(text, [], counts),
)


def test_mutated_shipped_specs(in_empty_dir):
    counts = _fuzz(*MUTATED)
    assert sum(counts.values()) >= MUTATED[1], counts  # every example judged
    # Both branches are exercised: valid mutations dry-run, invalid ones are refused.
    assert counts["accepted"] >= 20 and counts["rejected"] >= 500, counts
    assert not (in_empty_dir / "pwned.txt").exists()


def test_documents_that_are_not_specs(in_empty_dir):
    counts = _fuzz(*DOCUMENTS)
    assert sum(counts.values()) >= DOCUMENTS[1], counts
    assert counts["rejected"] >= 100, counts
    assert not (in_empty_dir / "pwned.txt").exists()


def test_raw_yaml_text_and_unsafe_tags(in_empty_dir):
    counts = _fuzz(*RAW_TEXT)
    assert sum(counts.values()) >= RAW_TEXT[1], counts
    assert not (in_empty_dir / "pwned.txt").exists()


def test_at_least_1000_specs_are_judged():
    # Each property test above checks that it judged all its examples; together:
    assert sum(n for _, n, _ in (MUTATED, DOCUMENTS, RAW_TEXT)) >= 1000


BAD_FOR_CLI = [
    ("model:\n  kind: toy\n  widths: [64, -3]\nname: x\n", "model.widths[1]"),
    ("name: x\nmodel: {kind: toy, widths: [64]}\nsearch: {sampler: annealing}\n", "search.sampler"),
    ("name: x\nmodel: {kind: fc, widths: [64], activation: swish}\n", "model"),
    ("name: x\nmodel: {kind: toy, widths: [64]}\ntraining: {steps: .nan}\n", "training.steps"),
    ("!!python/object/apply:os.system ['echo pwned > pwned.txt']\n", "not valid YAML"),
]


def test_bad_specs_through_the_real_cli(tmp_path):
    procs = []
    for i, (text, field) in enumerate(BAD_FOR_CLI):  # the processes run concurrently
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(text)
        cmd = [sys.executable, "-m", "ntk_dist", "run", str(path), "--out", str(tmp_path / f"o{i}")]
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((path, field, subprocess.Popen(cmd, cwd=tmp_path, **pipes)))
    for path, field, proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, stderr
        assert field in stderr and str(path) in stderr, stderr
        assert "Traceback" not in stderr and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"bad{i}.yaml" for i in range(5)]
