"""cluster.yaml passes Ray's own schema offline and opens nothing to the internet."""

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _config():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(_config()))
    validate_config(config)
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1


def test_no_port_is_open_to_the_world_and_dashboard_is_local():
    config = _config()
    for rule in config["provider"]["security_group"]["IpPermissions"]:
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        assert "0.0.0.0/0" not in cidrs and (rule["FromPort"], rule["ToPort"]) == (22, 22)
        assert not rule.get("Ipv6Ranges")
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    text = (ROOT / "cluster.yaml").read_text()
    assert "RAY_AUTH_MODE=disabled" not in text.replace("never set RAY_AUTH_MODE=disabled", "")
    assert "0.0.0.0" not in text  # no bind-all host (dashboard, client server, node ip)


def test_every_node_starts_ray_with_token_authentication():
    config = _config()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts), key
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_setup_installs_this_project_with_the_gpu_extra():
    config = _config()
    assert config["file_mounts"]["~/ntk_dist"] == "."
    assert any("~/ntk_dist[gpu]" in cmd for cmd in config["setup_commands"])


def test_the_kuberay_rayjob_uses_gpu_workers_s3_output_and_token_authentication():
    job = yaml.safe_load((ROOT / "deploy" / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].startswith("ntk-dist run ")
    assert "--address auto" in spec["entrypoint"] and "--out s3://" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (worker,) = cluster["workerGroupSpecs"]
    (container,) = worker["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    for pod in (head["template"], worker["template"]):
        (c,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
        assert c["image"] == container["image"]
