"""Shared fixtures: small demo data made per session, a local Ray instance, the LFW folder.

Tiers: tests without a `ray_local`/`ray_cluster` fixture run no Ray and take seconds
(`make test-fast`); Ray fits and real-data tests are marked slow.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-names"
LFW_INDEX = LFW / "index_files"

# Tests never log to W&B and never reach a network.
os.environ.setdefault("WANDB_MODE", "disabled")
# Ray 2.60 turns token authentication on by default and writes ~/.ray/auth_token into the
# home folder of whoever starts a Ray: the tests bring their own token, in a temporary folder
# (every Ray and subprocess they start inherits the path), and remove it at the end.
_AUTH_DIR = Path(tempfile.mkdtemp(prefix="raysys-test-auth-"))
(_AUTH_DIR / "auth_token").write_text(secrets.token_hex(32))
_SAVED_TOKEN_PATH = os.environ.get("RAY_AUTH_TOKEN_PATH")
os.environ["RAY_AUTH_TOKEN_PATH"] = str(_AUTH_DIR / "auth_token")


def pytest_collection_modifyitems(session, config, items):
    """Tests that start a Ray of their own run last: each one ends the shared local Ray, and
    the next test that needs it would start it again (~8 s a time)."""
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is not None)


_EXIT_STATUS: int | None = None
_RAN_OWN_RAY = False


def pytest_sessionfinish(session, exitstatus):
    _write_reliability(session)
    global _EXIT_STATUS
    _EXIT_STATUS = int(session.exitstatus)
    if _SAVED_TOKEN_PATH is None:
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    else:
        os.environ["RAY_AUTH_TOKEN_PATH"] = _SAVED_TOKEN_PATH
    shutil.rmtree(_AUTH_DIR, ignore_errors=True)



@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After a session that started and shut down Rays of its own in this process, exit
    without the interpreter's finalization: threads that outlive a Ray's core worker can
    segfault there (ray-project/ray#31145; CI saw exit 139 after `9 passed`). Every result and
    record is written by now; a user's command starts one Ray and exits normally."""
    if _RAN_OWN_RAY and _EXIT_STATUS is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS)


def pytest_runtest_setup(item):
    global _RAN_OWN_RAY
    _RAN_OWN_RAY = _RAN_OWN_RAY or item.get_closest_marker("own_ray") is not None


# As init_ray sets for a local Ray (the tests start their own): Ray Train for one machine.
from raysys.train.connect import ONE_MACHINE_TRAIN_ENV  # noqa: E402

for _key, _value in ONE_MACHINE_TRAIN_ENV.items():
    os.environ.setdefault(_key, _value)


def micro(manifest, out, *sets: str):
    """The micro preset on a manifest, written to `out`: what most Ray tests train."""
    from raysys.config import load_config

    return load_config("micro", sets=[f"data.manifest={manifest}", f"run.out={out}", *sets])


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory) -> Path:
    """12 names, 1200 images at 64 px: learnable, and quick to decode."""
    from raysys.data.demo import generate

    return generate(tmp_path_factory.mktemp("demo"), names=12, size=64, images=1200, seed=0)


@pytest.fixture(scope="session")
def demo_manifest(demo_index, tmp_path_factory) -> Path:
    from raysys.config import DataConfig
    from raysys.data.manifest import build_manifest, write_manifest

    out = tmp_path_factory.mktemp("manifest") / "manifest.parquet"
    # a held-out test split, as the GPU presets have: every Ray test runs its path
    df, report = build_manifest(DataConfig(index_dir=str(demo_index), split_by="group",
                                           test_fraction=0.1))
    write_manifest(df, report, str(out))
    return out


@pytest.fixture
def ray_local():
    """A local Ray for the tests that need one, shared while consecutive tests use it: 4
    logical CPUs on 2 cores, so a Train worker, decode actors and tasks all fit. A simulated
    multi-node cluster (test_multinode.py) replaces it for its own tests."""
    import ray

    local_ray()
    yield ray


def local_ray() -> None:
    """This process's Ray as the local tests share it (started as `raysys` starts one)."""
    import ray

    from raysys.train.connect import start_local_ray

    if ray.is_initialized() and os.environ.get("RAYSYS_TEST_RAY") != "local":
        ray.shutdown()
    if not ray.is_initialized():
        start_local_ray(num_cpus=4, num_gpus=0, object_store_memory=512 * 2**20,
                        log_to_driver=False)
        os.environ["RAYSYS_TEST_RAY"] = "local"


@pytest.fixture(scope="session")
def lfw_index() -> Path:
    if not LFW_INDEX.is_dir():
        # CI has the data: there, its absence is a broken checkout, not a reason to skip.
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{LFW_INDEX} is missing; CI needs ../shared/data/lfw-names beside the "
                        "project (CI is set)")
        pytest.skip(f"{LFW_INDEX} not present")
    return LFW_INDEX


@pytest.fixture(scope="session")
def straight_run(demo_manifest, tmp_path_factory):
    """One worker, 4 epochs, uninterrupted: the reference a resumed run of the same config is
    compared with. Trained once per session, on first use."""
    from raysys.train.run import fit

    local_ray()
    out = tmp_path_factory.mktemp("straight") / "run"
    return out, fit(micro(demo_manifest, out, "optim.epochs=4"))

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY_JSON = Path(os.environ.get("RAYSYS_RELIABILITY_JSON",
                                       ROOT / "results" / "reliability.json"))
RELIABILITY_MD = ROOT / "benchmarks" / "RELIABILITY.md"
# One record id per fault test. `make test` (RAYSYS_RELIABILITY=fresh) starts the record file
# afresh; `make test-cluster` (RAYSYS_RELIABILITY=check), run after it, adds its own records,
# and benchmarks/RELIABILITY.md is rebuilt from the two tiers' records alone. In either, a
# missing id of the tier fails the run (a fault test failed, was skipped or was deleted).
MAIN_RECORDS = ("unplaceable", "image-deleted", "env-keys", "writer-killed", "stale-address",
                "leaked-group", "unplaceable-before-training")
CLUSTER_RECORDS = ("s3-keys", "node-sigkill", "trial-node-sigkill", "job-key",
                   "job-driver-sigkill", "two-commands", "ctrl-c", "token-auth", "autoscaler")
_RECORDS: list[dict] = []


@pytest.fixture(scope="session")
def reliability_log() -> list[dict]:
    """Each fault and bad input tried: its id, what the test observed and asserted (epochs
    before and after, time to recover) and what was lost."""
    return _RECORDS


def _write_reliability(session) -> None:
    mode = os.environ.get("RAYSYS_RELIABILITY")
    if not (_RECORDS or mode):
        return
    mine = {r["id"] for r in _RECORDS}
    fresh = mode == "fresh" or not RELIABILITY_JSON.exists()
    old = [] if fresh else json.loads(RELIABILITY_JSON.read_text())
    if mode == "check":  # of an earlier run, only what `make test` just wrote counts
        old = [r for r in old if r.get("tier") == "main"]
    tier_tag = {"tier": "main"} if mode == "fresh" else {}
    rows = [r for r in old if r.get("id") not in mine] + [r | tier_tag for r in _RECORDS]
    RELIABILITY_JSON.parent.mkdir(parents=True, exist_ok=True)
    RELIABILITY_JSON.write_text(json.dumps(rows, indent=1))
    if mode not in ("fresh", "check"):
        return
    tier = MAIN_RECORDS if mode == "fresh" else CLUSTER_RECORDS
    missing = [i for i in tier if i not in mine]
    missing += [i for i in MAIN_RECORDS if mode == "check" and i not in {r["id"] for r in rows}]
    if missing:
        print(f"\nreliability records missing (their fault tests failed, were skipped or were "
              f"deleted; `make test-cluster` needs `make test`'s records): {', '.join(missing)}",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if mode == "check":
        from benchmarks.reliability_table import render

        shown = RELIABILITY_JSON.relative_to(ROOT) if RELIABILITY_JSON.is_relative_to(ROOT) \
            else RELIABILITY_JSON
        RELIABILITY_MD.write_text(render(rows, str(shown)))


# Made by the first Ray Data execution of a Ray, detached, for as long as that Ray lives.
RAY_DATA_ACTORS = {"_StatsActor", "ActorLocationTracker", "_AutoscalingCoordinatorActor"}
# The actors of one run or sweep trial: all of them end with it.
RUN_ACTORS = {"TrainController", "RayTrainWorker", "SynchronizationActor", "DatasetManager",
              "SplitCoordinator", "PlacementGroupCleaner", "RunLedger"}


def ray_leftovers(settle_s: float = 20.0) -> tuple[dict, list]:
    """What Ray holds now: live actors by class, and placement groups not removed by shape and
    owner.
    Read once a run that just ended has ended in Ray too (its actors die, and a killed
    controller's group is removed, within seconds), or after `settle_s` as it is."""
    import collections

    import ray

    from raysys.train.reservations import placement_groups

    deadline = time.time() + settle_s
    while True:
        actors = collections.Counter(a["ActorClassName"] for a in ray._private.state.actors()
                                     .values() if a["State"] != "DEAD")
        groups = [g for g in placement_groups() if g.state != "REMOVED"]
        ending = RUN_ACTORS & set(actors) or any(g.creator_dead and g.creator for g in groups)
        if not ending or time.time() > deadline:
            return dict(actors), sorted(f"{g.strategy} {g.shape()} of "
                                        f"{'an actor' if g.creator else 'the driver'}"
                                        for g in groups)
        time.sleep(0.5)
