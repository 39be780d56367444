"""The published-study specs (docs/studies.md) validate with the papers' settings, and a
tiny override of one runs through ``run`` and ``report``."""

import math

import pytest
import yaml

from ntk_dist.cli import main
from ntk_dist.study.spec import load_spec

STUDIES = ("lewkowycz_fig2", "kalra_phase_diagram", "cohen_eos")


@pytest.mark.parametrize("name", [s + v for s in STUDIES for v in ("", "_full")])
def test_study_spec_validates_with_the_papers_setting(name):
    spec = load_spec(f"sweeps/{name}.yaml")
    m, t = spec.model, spec.training
    assert spec.name == name and m.kind == "fc" and spec.data.name == "digits"
    assert t.optimizer == "gd" and m.sigma_b == 0.0
    if name.startswith("lewkowycz"):
        assert m.depths == (3,) and m.activation == "relu"
        assert (m.parameterization, t.sharpness) == ("ntk", "ntk")
        assert min(m.widths) == 256 and max(m.widths) <= 2048
    elif name.startswith("kalra"):
        assert m.activation == "relu" and m.depths[0] == 1 and max(m.depths) == 8
        assert (m.parameterization, t.sharpness) == ("standard", "hessian")
        assert math.isclose(m.sigma_w**2, 2.0) and m.readout_sigma_w == 1.0
    else:
        assert m.activation == "tanh" and spec.search.sampler == "grid"
        assert t.sharpness == "hessian" and t.steps >= 2048
        assert spec.search.eta_lambda0[1] < 2.0  # below the edge: sharpening, not catapult


@pytest.mark.slow  # ~35 s on a loaded 2-core machine: Ray, compilation of GD + Lanczos
def test_tiny_edge_of_stability_study_runs_and_reports(ray_local, tmp_path):
    spec = yaml.safe_load(open("sweeps/cohen_eos.yaml"))
    spec["model"]["widths"] = [8]
    spec["data"]["n_train"] = 8
    spec["training"]["steps"] = 40
    spec["search"].update(points_per_width=2, parallel=2)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Edge of stability (Cohen et al. 2021" in text
    assert (out / "figures" / "edge_of_stability.png").stat().st_size > 1000
