"""Specs on real data through the CLI: digits and a researcher's own file validate and
run; a bad data file is refused naming data.path, exit code 2, nothing written."""

import numpy as np
import pytest
import yaml

from ntk_dist.cli import main
from ntk_dist.study.results import read_runs

RNG = np.random.default_rng(0)


def _spec_file(tmp_path, data, name="s", **training):
    spec = {
        "name": name,
        "model": {"kind": "fc", "widths": [16], "depth": 1},
        "data": data,
        "training": {"steps": 3, "seeds": 1, **training},
        "search": {"eta_lambda0": [0.5, 1.0], "sampler": "grid", "n_trials": 2, "parallel": 2},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _own_file(tmp_path, **arrays):
    path = tmp_path / "mine.npz"
    x = RNG.normal(size=(10, 5))
    np.savez(path, **(arrays or {"x": x, "y": np.eye(3)[RNG.integers(0, 3, 10)]}))
    return str(path)


def test_digits_and_file_specs_validate_and_run(ray_local, no_figures, tmp_path, capsys):
    digits = _spec_file(
        tmp_path,
        {"name": "digits", "n_train": 6, "standardise": True},
        name="digits",
        sharpness="hessian",
    )
    own = _spec_file(tmp_path, {"name": "file", "path": _own_file(tmp_path), "n_test": 2})
    for spec, dataset, k, dim in ((digits, "digits", 10, 64), (own, "file", 3, 5)):
        assert main(["validate", spec]) == 0
        out = tmp_path / f"out-{dataset}"
        assert main(["run", spec, "--out", str(out), "--no-progress"]) == 0, capsys.readouterr()
        runs = read_runs(out).to_pandas()
        assert len(runs) == 2 and set(runs.dataset) == {dataset} and set(runs.out_dim) == {k}
        assert np.isfinite(runs.lambda0).all()
        stored = yaml.safe_load((out / "spec.yaml").read_text())["data"]
        assert stored["dim"] == dim
    assert set(runs.n_train) == {8}  # every row not held out for testing
    assert len(stored["sha256"]) == 64  # the data's content is part of the spec


BAD = {
    "NaN": (lambda t: _own_file(t, x=np.full((4, 2), np.nan), y=np.ones(4)), "non-finite"),
    "missing key": (lambda t: _own_file(t, inputs=np.ones((4, 2)), y=np.ones(4)), "no array 'x'"),
    "unreadable": (
        lambda t: (t / "b.npz").write_bytes(b"\x00garbage") and str(t / "b.npz"),
        "not an .npz",
    ),
    "shape": (lambda t: _own_file(t, x=np.ones((4, 2)), y=np.ones((3, 1))), "same number"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_files_exit_2_naming_the_field_and_write_nothing(tmp_path, capsys, case):
    make, message = BAD[case]
    spec = _spec_file(tmp_path, {"name": "file", "path": make(tmp_path)})
    out = tmp_path / "out"
    for argv in (["validate", spec], ["run", spec, "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "data.path" in err and message in err, err
    assert not out.exists()
