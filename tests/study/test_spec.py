"""Sweep specs: shipped specs validate; bad specs exit 2 naming field and file, write nothing."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ntk_dist.cli import main
from ntk_dist.study.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "name": "t",
    "model": {"kind": "toy", "widths": [64, 256]},
    "training": {"steps": 100, "seeds": 1},
    "search": {"eta_lambda0": [1.0, 5.0], "n_trials": 4, "parallel": 2},
}


PHASE_SPECS = [
    p for p in sorted((ROOT / "sweeps").glob("*.yaml")) if "experiment:" not in p.read_text()
]


@pytest.mark.parametrize("path", PHASE_SPECS, ids=lambda p: p.name)
def test_shipped_specs_validate(path):  # experiment specs: tests/study/test_experiments.py
    spec = load_spec(path)
    assert spec.model.widths and spec.search.eta_lambda0[0] < spec.search.eta_lambda0[1]


def test_hash_ignores_output_and_tracks_content():
    a = parse_spec(GOOD)
    b = parse_spec({**GOOD, "output": "elsewhere"})
    c = parse_spec({**GOOD, "training": {"steps": 101, "seeds": 1}})
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


@pytest.mark.parametrize(
    "section, field, value", [("training", "early_steps", 10), ("resources", "chunk_size", 4)]
)
def test_fields_added_later_keep_the_hash_of_specs_written_before_them(section, field, value):
    spec = parse_spec(GOOD)
    # At its default the field is left out of the dump the hash is taken of, so the hash
    # is what it was before the field existed (the shipped specs' hashes are pinned in
    # tests/study/test_sections.py), whether the default is written out or not.
    assert field not in spec.model_dump(mode="json")[section]
    explicit = parse_spec({**GOOD, section: {**GOOD.get(section, {}), field: None}})
    assert explicit.spec_hash() == spec.spec_hash()
    changed = parse_spec({**GOOD, section: {**GOOD.get(section, {}), field: value}})
    assert getattr(getattr(changed, section), field) == value
    assert changed.model_dump(mode="json")[section][field] == value
    assert changed.spec_hash() != spec.spec_hash()


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="resources.chunk_size"):
        parse_spec({**GOOD, "resources": {"chunk_size": 0}})


def _with(path, value):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


BAD = [
    ("unknown key", _with(("model", "widht"), 3), "model.widht", "unknown key"),
    ("wrong type", _with(("training", "seeds"), "two"), "training.seeds", "integer"),
    (
        "non-positive width",
        _with(("model", "widths"), [64, -3]),
        "model.widths[1]: must be a positive integer, got -3",
        "",
    ),
    (
        "inverted eta range",
        _with(("search", "eta_lambda0"), [5.0, 1.0]),
        "search.eta_lambda0",
        "low < high",
    ),
    ("zero steps", _with(("training", "steps"), 0), "training.steps", ""),
    (
        "unknown sampler",
        _with(("search", "sampler"), "annealing"),
        "search.sampler",
        "unknown sampler",
    ),
]


@pytest.mark.parametrize("case, spec, field, words", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_exits_2_names_field_and_file_writes_nothing(
    tmp_path, capsys, case, spec, field, words
):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and field in err and words in err
    assert not out.exists()


def test_missing_file_and_unwritable_output(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "spec file not found" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the output's parent directory should be
    assert main(["run", str(good), "--out", str(blocker / "out"), "--no-progress"]) == 2
    assert "not writable" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "good.yaml"]


def test_cli_process_exit_code_is_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(BAD[0][1]))
    res = subprocess.run(
        [sys.executable, "-m", "ntk_dist", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "model.widht" in res.stderr


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert main(["run", str(good), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 points x 1 seeds = 4 runs" in text and not (tmp_path / "o").exists()


def test_optimizer_and_batch_size_are_checked_at_load():
    assert parse_spec(_with(("training", "optimizer"), "momentum")).training.batch_size is None
    with pytest.raises(ValueError, match="training: optimizer sgd needs batch_size"):
        parse_spec(_with(("training", "optimizer"), "sgd"), "f.yaml")
    with pytest.raises(ValueError, match=r"do not fit together: batch_size \(4\) must be <="):
        parse_spec({**_with(("training", "optimizer"), "sgd"), "training": {
            "optimizer": "sgd", "batch_size": 4}}, "f.yaml")  # fmt: skip


def test_points_per_width_says_per_width_and_keeps_the_hash_of_n_trials():
    base = {"name": "p", "model": {"kind": "toy", "widths": [64, 128, 256]}}
    new = parse_spec({**base, "search": {"points_per_width": 5}})
    with pytest.warns(FutureWarning, match="search.n_trials .* is deprecated.*points_per_width"):
        old = parse_spec({**base, "search": {"n_trials": 15}})
    assert new.n_points == old.n_points == 15
    assert new.spec_hash() == old.spec_hash()  # one plan, one hash: stored results resume
    assert new.spec_hash() != parse_spec({**base, "search": {"points_per_width": 6}}).spec_hash()
    # the default is unchanged (64 points over all widths), hash included
    assert parse_spec(base).n_points == 64
    with pytest.warns(FutureWarning):
        assert (
            parse_spec(base).spec_hash()
            == parse_spec({**base, "search": {"n_trials": 64}}).spec_hash()
        )
    with pytest.raises(ValueError, match="points_per_width or the deprecated search.n_trials"):
        parse_spec({**base, "search": {"points_per_width": 5, "n_trials": 15}})


def test_the_shipped_demo_keeps_the_hash_its_stored_results_carry():
    # sha256 of the demo spec before points_per_width existed (n_trials: 48, 2 widths)
    assert load_spec("sweeps/demo.yaml").spec_hash().startswith("3b56bc7547c17f86")
