"""cluster.yaml: valid for Ray's cluster launcher (checked offline), GPU workers that install
this project, nothing but SSH open to the internet, token authentication on every node."""

import copy
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def prepared(raw):
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_schema_rejects_a_broken_copy(raw):
    # The check above can fail: the same validator refuses an unknown top-level key.
    broken = {**copy.deepcopy(raw), "max_wrokers": 3}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_gpu_workers_install_the_project(prepared):
    workers = [
        t
        for name, t in prepared["available_node_types"].items()
        if name != prepared["head_node_type"]
    ]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert any(t["max_workers"] > 0 for t in workers)
    assert prepared["provider"]["type"] == "aws"
    setup = " ; ".join(prepared["setup_commands"])
    assert 'pip install ".[gpu]"' in setup
    assert prepared["file_mounts"]["~/ntk_dist"] == "."
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("jax[cuda") for dep in extras["gpu"])


def test_only_ssh_reaches_the_nodes_from_outside(prepared):
    group = prepared["provider"]["security_group"]
    # Ray adds just "all from this group" and tcp/22; any extra ingress rule must be SSH too.
    for rule in group.get("IpPermissions", []):
        assert (rule["FromPort"], rule["ToPort"]) == (22, 22), rule
    head = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "--dashboard-host=0.0.0.0" not in head and "ray-client-server-port" not in head


def test_token_authentication_on_every_node(prepared):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in prepared[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("export RAY_AUTH_MODE=token" in c for c in prepared["setup_commands"])
