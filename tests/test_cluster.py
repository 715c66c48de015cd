from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster" / "gpu.yaml"


def test_cluster_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(cfg))
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and isinstance(gpu["resources"]["GPU"], int)
