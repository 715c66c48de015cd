"""cluster/gpu.yaml: valid for Ray's launcher, and the invariants a real cluster needs."""

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
    # A current image pinned to the Ray the project pins, GPU build on GPU nodes.
    assert cfg["docker"]["worker_image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert cfg["docker"]["head_image"].startswith(f"rayproject/ray:{ray.__version__}-")
    # The same installs as `make install`, and a GPU check that fails setup.
    setup = " ".join(cfg["setup_commands"])
    assert "torch==2.14.1" in setup and "pip install -q -e ." in setup
    assert "torch.cuda.is_available()" in " ".join(cfg["worker_setup_commands"])
    # No virtualenv, git history or results shipped to the nodes.
    assert {".venv", ".git", "results"} <= set(cfg["rsync_exclude"])
    assert ".gitignore" in cfg["rsync_filter"]
    # EFS mounted, loudly: the last init command fails when the mount is missing.
    init = cfg["initialization_commands"]
    assert not any("|| true" in c for c in init) and init[-1].startswith("mountpoint /mnt/efs")
    # One availability zone; S3 access on every node type; a head with no GPU and no CPUs for
    # Train workers, labelled so decode actors avoid it.
    assert "," not in cfg["provider"]["availability_zone"]
    types = cfg["available_node_types"]
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    head = types[cfg["head_node_type"]]
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
