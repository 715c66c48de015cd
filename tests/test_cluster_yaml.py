"""cluster/gpu.yaml and its IAM policies: valid for Ray's launcher, and the invariants a real
cluster needs on day one (an autoscaler that may start nodes, EFS the container can write)."""

import json
from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def _cfg() -> dict:
    return yaml.safe_load((CLUSTER / "gpu.yaml").read_text())


def test_cluster_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_cfg()))


def test_cluster_yaml_invariants():
    import ray

    cfg = _cfg()
    # A current image pinned to the Ray the project pins, GPU build on GPU nodes; GPUs passed
    # through whatever `docker info` lists; Ray sizes /dev/shm itself (no --shm-size).
    assert "--gpus all" in cfg["docker"]["worker_run_options"]
    assert not any("shm-size" in o for o in cfg["docker"]["run_options"])
    assert cfg["docker"]["worker_image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert cfg["docker"]["head_image"].startswith(f"rayproject/ray:{ray.__version__}-")
    # The same installs as `make install`, and a GPU check that fails setup.
    setup = " ".join(cfg["setup_commands"])
    assert "torch==2.14.1" in setup and "pip install -q -e ." in setup
    assert "torch.cuda.is_available()" in " ".join(cfg["worker_setup_commands"])
    # No virtualenv, git history or results shipped to the nodes.
    assert {".venv", ".git", "results"} <= set(cfg["rsync_exclude"])
    assert ".gitignore" in cfg["rsync_filter"]
    # EFS mounted, loudly: the last init command fails when the mount is missing, and hands
    # the mount to the container's user (uid 1000 in Ray's images). The region comes from the
    # instance, not a hard-coded one.
    init = cfg["initialization_commands"]
    assert not any("|| true" in c for c in init) and init[-1].startswith("mountpoint /mnt/efs")
    assert "chown 1000:100 /mnt/efs" in init[-1]
    assert ".efs.$REGION.amazonaws.com" in " ".join(init) and "us-west-2" not in " ".join(init)
    # One availability zone; S3 access on every node type; a head with no GPU and no CPUs for
    # Train workers, labelled so decode actors avoid it.
    assert "," not in cfg["provider"]["availability_zone"]
    types = cfg["available_node_types"]
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    assert all(t["node_config"]["SubnetIds"] for t in types.values())
    head = types[cfg["head_node_type"]]
    assert head["node_config"]["IamInstanceProfile"]["Arn"].endswith("/raysys-head")
    assert types["gpu_worker"]["node_config"]["IamInstanceProfile"]["Arn"].endswith(
        "/raysys-worker")
    assert head["resources"] == {"CPU": 0, "GPU": 0} and head["labels"]["raysys-role"] == "head"
    gpu = types["gpu_worker"]
    assert isinstance(gpu["resources"]["GPU"], int) and gpu["resources"]["GPU"] >= 1
    assert all("ulimit -n 65536" in c for c in cfg["head_start_ray_commands"][1:] +
               cfg["worker_start_ray_commands"][1:])
    assert "--dashboard-host=127.0.0.1" in cfg["head_start_ray_commands"][1]


def test_default_decode_selector_matches_the_head_label():
    from raysys.config import DataConfig

    key, value = DataConfig().decode_selector[0].split("=")
    assert _cfg()["available_node_types"]["head"]["labels"][key] == value.lstrip("!")


def _allowed(policy: dict) -> set[str]:
    return {a for st in policy["Statement"] if st["Effect"] == "Allow"
            for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}


def test_the_heads_role_lets_the_autoscaler_start_gpu_nodes():
    """Given IamInstanceProfile, Ray uses the head's profile as it is and creates no role of
    its own (autoscaler/_private/aws/config.py, _configure_iam_role): the role must carry the
    autoscaler's rights, or no GPU node ever starts and trials wait in PENDING forever."""
    head = json.loads((CLUSTER / "iam" / "head-policy.json").read_text())
    allowed = _allowed(head)
    for action in ("ec2:RunInstances", "ec2:TerminateInstances", "ec2:Describe*",
                   "ec2:CreateTags", "iam:PassRole", "ssm:GetParameters"):
        assert action in allowed, action
    passes = [st for st in head["Statement"] if "iam:PassRole" in st["Action"]]
    assert all(st["Resource"].endswith(":role/raysys-worker") for st in passes)
    assert "ec2:RunInstances" not in _allowed(
        json.loads((CLUSTER / "iam" / "worker-policy.json").read_text()))
    readme = (CLUSTER / "README.md").read_text()
    for name in ("head-policy.json", "worker-policy.json", "trust-ec2.json"):
        assert f"cluster/iam/{name}" in readme, name


def test_autoscaler_v2_can_set_up_every_node_type():
    """What Ray's autoscaler v2 (the default of `ray up` in 2.60) reads before a node joins,
    through its own code: the docker config of each node type (RayInstaller.install_ray reads
    `image`; gpu.yaml once had only head_image/worker_image and every new node failed setup),
    the command runner built on it, the commands it runs, and the node's resources and labels
    it starts Ray with."""
    import subprocess

    from ray.autoscaler._private.command_runner import DockerCommandRunner
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

    cfg = _cfg()
    config = AutoscalingConfig(cfg, skip_content_hash=True)
    images = {cfg["head_node_type"]: cfg["docker"]["head_image"]}
    for node_type in cfg["available_node_types"]:
        docker = config.get_docker_config(node_type)
        assert docker["image"] == images.get(node_type, cfg["docker"]["worker_image"])
        runner = DockerCommandRunner(docker, log_prefix="", node_id="i-0", provider=None,
                                     auth_config=cfg["auth"], cluster_name=cfg["cluster_name"],
                                     process_runner=subprocess, use_internal_ip=True)
        assert runner.docker_config["image"] == docker["image"]
        assert config.get_initialization_commands(node_type) == cfg["initialization_commands"]
        assert config.get_node_resources(node_type) == \
            cfg["available_node_types"][node_type]["resources"]
        assert config.get_node_labels(node_type) == cfg["available_node_types"][node_type]["labels"]
    assert config.get_worker_setup_commands("gpu_worker") == \
        cfg["setup_commands"] + cfg["worker_setup_commands"]  # the installs, then the GPU check
    assert config.get_worker_start_ray_commands() == cfg["worker_start_ray_commands"]
    assert config.get_idle_timeout_s() == cfg["idle_timeout_minutes"] * 60
    assert config.get_max_num_worker_nodes() == cfg["max_workers"]
