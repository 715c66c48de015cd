"""The private Ray APIs raysys still uses, each because no public one does the job (the
comments at their call sites name what was tried). If an upgrade removes one, this fails
loudly here instead of quietly degrading a run."""

import inspect


def test_autoscaler_capacity_reader_exists():
    from ray._private.state import state  # train/cluster.py: _autoscaler_totals

    assert callable(state.get_max_resources_from_cluster_config)


def test_address_resolver_exists():
    import inspect

    from ray._private.services import canonicalize_bootstrap_address  # cluster.ray_address

    assert "addr" in inspect.signature(canonicalize_bootstrap_address).parameters


def test_driver_log_folder_reader_exists():
    import ray._private.worker as worker  # train/console.py: ray_logs_dir
    from ray._private.node import Node

    assert hasattr(worker, "_global_node")
    assert not inspect.signature(Node.get_logs_dir_path).parameters.keys() - {"self"}
