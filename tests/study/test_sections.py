"""Spec sections for parameterisation, sharpness and real data: identity and validation."""

import pytest

from ntk_dist.study.spec import load_spec, parse_spec

#: sha256 of sweeps/demo.yaml before the parameterisation and sharpness fields existed.
DEMO_HASH = "3b56bc7547c17f86ad1742df739666ec23ecd26f53788153a9a0824e81aab884"


def _sweep(model=None, data=None, training=None):
    return {
        "name": "s",
        "model": {"kind": "fc", "widths": [16], **(model or {})},
        "data": data or {"name": "gaussian", "n_train": 4, "dim": 3},
        "training": {"steps": 3, "seeds": 1, **(training or {})},
    }


def test_new_fields_at_their_defaults_leave_spec_hashes_unchanged():
    assert load_spec("sweeps/demo.yaml").spec_hash() == DEMO_HASH
    plain = parse_spec(_sweep())
    explicit = parse_spec(_sweep({"parameterization": "ntk"}, training={"sharpness": "ntk"}))
    assert explicit.spec_hash() == plain.spec_hash()
    assert "parameterization" not in plain.to_yaml() and "sharpness" not in plain.to_yaml()
    other = parse_spec(_sweep({"parameterization": "standard"}, training={"sharpness": "hessian"}))
    assert other.spec_hash() != plain.spec_hash()
    assert parse_spec(other.model_dump(mode="json")).spec_hash() == other.spec_hash()


def test_kalra_barkeshli_digits_spec_builds_its_network():
    spec = parse_spec(
        _sweep(
            {"depth": 3, "parameterization": "standard", "readout_sigma_w": 1.0},
            {"name": "digits", "n_train": 8, "standardise": True},
            {"sharpness": "hessian"},
        )
    )
    assert spec.data.dim == 64  # taken from the data
    job = spec.job(16, 2.0, 0, "k")
    net = job.model
    assert (net.out_dim, net.parameterization, net.readout_sigma_w, net.depth) == (
        10,
        "standard",
        1.0,
        3,
    )
    assert job.sharpness == "hessian" and job.parameterization == "standard"


@pytest.mark.parametrize(
    "spec, match",
    [
        (_sweep({"parameterization": "mup"}), "model.parameterization"),
        (_sweep({"readout_sigma_w": 0}), "model.readout_sigma_w"),
        (_sweep(training={"sharpness": "gn"}), "training.sharpness"),
        (_sweep({"kind": "toy", "parameterization": "standard"}), "kind 'fc' only"),
        (_sweep(data={"name": "digits", "n_train": 4, "dim": 3}), "dim must be 64"),
    ],
)
def test_bad_fields_are_rejected_by_name(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_experiments_refuse_the_standard_parameterisation():
    spec = {
        "name": "e",
        "experiment": "width_scaling",
        "model": {"kind": "fc", "widths": [16], "parameterization": "standard"},
        "data": {"name": "gaussian", "n_train": 4, "dim": 3},
        "training": {"steps": 3, "learning_rate": 0.1},
    }
    with pytest.raises(ValueError, match="NTK parameterisation"):
        parse_spec(spec)


def test_a_file_specs_hash_covers_the_files_content(tmp_path):
    import numpy as np

    path = tmp_path / "mine.npz"
    x = np.random.default_rng(0).normal(size=(6, 2))
    np.savez(path, x=x, y=x[:, :1])
    spec = _sweep(data={"name": "file", "path": str(path)})
    first = parse_spec(spec)
    assert (first.data.dim, first.data.n_train, first.job(16, 1.0, 0, "k").model.out_dim) == (
        2,
        6,
        1,
    )
    stored = first.model_dump(mode="json")  # what OUT/spec.yaml holds: sha256 included
    assert parse_spec(stored).spec_hash() == first.spec_hash()
    np.savez(path, x=x + 1, y=x[:, :1])
    assert parse_spec(spec).spec_hash() != first.spec_hash()
    with pytest.raises(ValueError, match="data.sha256: .* has changed"):
        parse_spec(stored)
