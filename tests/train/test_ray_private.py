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


def test_ray_data_per_cluster_actor_makers_exist():
    from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
        get_or_create_autoscaling_coordinator,
    )
    from ray.data._internal.execution.node_trackers.actor_location import (
        get_or_create_actor_location_tracker,
    )
    from ray.data._internal.stats import get_or_create_stats_actor  # data/stream.py

    for make in (get_or_create_stats_actor, get_or_create_autoscaling_coordinator,
                 get_or_create_actor_location_tracker):
        assert not inspect.signature(make).parameters


def test_placement_group_table_with_creators_exists():
    from ray._private.state import state  # train/reservations.py: placement_groups
    from ray.core.generated import gcs_pb2

    assert callable(state._connect_and_get_accessor)
    fields = {f.name for f in gcs_pb2.PlacementGroupTableData.DESCRIPTOR.fields}
    assert {"creator_actor_id", "creator_actor_dead", "creator_job_id", "is_detached"} <= fields
    # train/reservations.py: pending_actors reads the actor table by state
    actor_fields = {f.name for f in gcs_pb2.ActorTableData.DESCRIPTOR.fields}
    assert {"class_name", "required_resources", "state"} <= actor_fields
    assert "PENDING_CREATION" in gcs_pb2.ActorTableData.ActorState.keys()


def test_token_rule_for_an_address_exists():
    from ray._private.authentication import authentication_token_setup as auth  # connect.py

    assert "warn_if_disabled" in inspect.signature(
        auth.maybe_enable_token_auth_if_token_available).parameters


def test_train_resource_requests_can_be_withdrawn():
    from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
        _AutoscalingCoordinatorActor,  # train/reservations.py: withdraw_train_request
    )
    from ray.train.v2._internal.execution.scaling_policy import scaling_policy

    assert "requester_id" in inspect.signature(_AutoscalingCoordinatorActor.cancel_request
                                               ).parameters
    assert 'f"train-{train_run_context.run_id}"' in inspect.getsource(scaling_policy)
