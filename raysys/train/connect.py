"""Joining Ray: the cluster named by RAY_ADDRESS or the machine's address file, or a local Ray of
this command's own.

- **Two commands on one machine** each start their own local Ray. A local Ray lives as long as
  the process that started it, so a second command that joined the first's would die with it.
  Ray's own components look a cluster up without an address (Train's placement-group cleaner
  calls the state API from a worker), and with two Rays on the host that lookup fails ("Found
  multiple active Ray instances") and the cleaner stops. So a local Ray is started on a port
  chosen here, with RAY_ADDRESS naming it in the environment its processes inherit: every
  process of that Ray finds that Ray, and this command's own environment is left as it was.
- **Token authentication.** Ray 2.60 turns it on for a `ray start` head whenever
  ~/.ray/auth_token exists there (any earlier local `ray.init()` writes one), but a client that
  joins by an explicit address (ours: RAY_ADDRESS, or the probed address file) does not load its
  token. Where a token is available and RAY_AUTH_MODE is unset, the join sends it; a head
  without token authentication accepts that too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from contextlib import contextmanager
from urllib.parse import urlparse

import ray

# Set by Ray's job supervisor in a submitted job's driver: the job's runtime env, as JSON.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
PROBE_TIMEOUT_S = 3.0
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_PLACES = ("RAY_AUTH_TOKEN (the token itself), the file RAY_AUTH_TOKEN_PATH names, then "
                "~/.ray/auth_token")

# Ray Train on one machine (a local Ray; the tests set them too): no node can be drained or
# preempted, so the preemption watcher (a process started for every run) has nothing to watch;
# Train's Prometheus metrics feed a dashboard nobody runs here (measured: 6.6 CPU-seconds of a
# 46-second micro run on 2 cores); the controller may poll its workers every 0.5 s instead of
# 2 s (it notices the end of a run 1.5 s sooner).
ONE_MACHINE_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                         "RAY_TRAIN_METRICS_ENABLED": "0",
                         "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}

FORWARDED_ENV_PREFIXES = ("WANDB_", "RAYSYS_")
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
# Every process that runs a Ray Data execution (trial drivers, Train workers): how long Ray
# Data's resource requests to the autoscaler outlive the execution that sent them (default
# 180 s). A trial killed by ASHA never cancels its own, and a live request keeps the nodes
# that fit it from idling out: 180 s of a p4d after every trial. Ray Data re-sends them every
# 10 s while it runs.
RAY_DATA_ENV = {"RAY_DATA_AUTOSCALING_REQUEST_EXPIRE_TIME_S": "30"}


def forwarded_env() -> dict[str, str]:
    """What Train workers and Tune trials need from the driver's environment: W&B settings,
    raysys's own, the S3 endpoint and Ray Data's request expiry (the user's, where set). Ray
    forwards only its own variables."""
    return RAY_DATA_ENV | {k: v for k, v in os.environ.items()
                           if k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV
                           or k in RAY_DATA_ENV}


def runtime_env_vars() -> dict[str, str]:
    """forwarded_env, less what a submitted job already carries. The job supervisor puts the
    job's env vars into the driver's environment and every task's; a driver that sends the
    same keys again in ray.init is refused ("Failed to merge the Job's runtime env"), with
    both envs printed, secrets included."""
    env = forwarded_env()
    job = os.environ.get(JOB_CONFIG_ENV)
    if job:
        carried = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in carried}
    return env


def in_job() -> bool:
    """This process is the driver of a `ray job submit` job."""
    return JOB_CONFIG_ENV in os.environ


def quiet_ray(verbose: bool) -> None:
    """Ray's tables, execution plans and internal log lines are one flag away (--verbose);
    by default the console shows our lines only. Set before Ray and Tune print anything."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # "Progress bars disabled": we know
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy engine honours verbose=0
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        logging.getLogger("ray.train").setLevel(logging.WARNING)


def init_ray(min_cpus: float, verbose: bool = False) -> None:
    """Join RAY_ADDRESS, or the cluster running on this machine (`ray start`, `ray attach`,
    `ray up`); only when there is none, start a local Ray of this command's own. Resources are
    never passed to an existing cluster; a local one gets extra logical CPUs only where this
    machine has fewer than `min_cpus` (what one run, or one sweep trial, holds at once).

    The address is probed first: Ray's own join waits forever on an address file left by a Ray
    that died without `ray stop`. An explicit RAY_ADDRESS that does not answer fails in seconds;
    a stale address file is reported in one line, and a local Ray starts instead."""
    quiet_ray(verbose)
    if ray.is_initialized():
        return
    env = runtime_env_vars()
    common = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else
              logging.ERROR, "runtime_env": {"env_vars": env} if env else None}
    explicit = os.environ.get("RAY_ADDRESS", "")
    address = ray_address()
    if address and answers(address):
        join_ray(address, env, common)
        return
    if explicit:
        raise ConnectionError(
            f"RAY_ADDRESS={explicit}: nothing answers at {address or explicit} within "
            f"{PROBE_TIMEOUT_S:g} s. Point it at a running cluster's head (host:6379), or unset "
            "it to start a local Ray")
    if address:
        print(f"raysys: Ray's address file names a cluster at {address} that does not answer "
              "(a Ray that stopped without `ray stop`; `ray stop` clears it): starting a local "
              "Ray", flush=True)
    os.environ.update({k: v for k, v in ONE_MACHINE_TRAIN_ENV.items() if k not in os.environ})
    start_local_ray(num_cpus=max(os.cpu_count() or 1, math.ceil(min_cpus)), **common)


def start_local_ray(**init_kwargs) -> None:
    """A local Ray whose processes all know its address (RAY_ADDRESS in the environment they
    inherit), with the dashboard, which serves Ray's state API, on 127.0.0.1 only. The GCS
    port is chosen here so that the address is known before Ray starts; another process may
    take the port in between, so one more port is tried."""
    for attempt in range(2):
        port = free_port()
        ip = ray.util.get_node_ip_address()
        with environment(RAY_ADDRESS=f"{ip}:{port}", RAY_GCS_SERVER_PORT=str(port)):
            try:
                ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                         **init_kwargs)
                return
            except Exception:
                if attempt or ray.is_initialized():
                    raise


def join_ray(address: str, env: dict[str, str], common: dict) -> None:
    """ray.init on a cluster that answers at `address`, sending this machine's Ray token where
    one is available (see the module's note)."""
    auth = enable_token_if_available()
    try:
        ray.init(address=address, **common)
    except ValueError as e:  # never echo a runtime env: it holds the job's secrets
        if "runtime env" not in str(e):
            raise
        raise ConnectionError(f"joining the Ray at {address}: Ray could not merge the job's "
                              f"runtime env with raysys's (keys {sorted(env)})") from None
    except ConnectionError as e:
        if auth:
            raise
        raise ConnectionError(
            f"could not join the Ray at {address} ({e}). If its head runs with token "
            "authentication (Ray 2.60 turns it on wherever ~/.ray/auth_token exists when "
            f"`ray start` runs), this machine needs that token, and Ray looks in {TOKEN_PLACES}: "
            "none is set here. `ray get-auth-token` on the head prints it") from None


def enable_token_if_available() -> bool:
    """Token mode for this process where RAY_AUTH_MODE is unset and Ray finds a token; whether
    token mode is on. Private API: Ray's own rule for a cluster found through its address file
    (`maybe_enable_token_auth_if_token_available`); it has no public call that applies it to
    an address. A test fails if it goes away (tests/train/test_ray_private.py)."""
    from ray._private.authentication import authentication_token_setup as auth

    setup_log = logging.getLogger(auth.__name__)
    level = setup_log.level
    setup_log.setLevel(logging.ERROR)  # its "token authentication is enabled" warning: ours
    try:
        return auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_log.setLevel(level)


@contextmanager
def environment(**values: str):
    """os.environ with `values` set for the duration, then as it was."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def ray_address() -> str | None:
    """Where ray.init(address="auto") would go: RAY_ADDRESS, else the cluster this machine
    started last (Ray's address file), else None.

    Private API: Ray has no public call that resolves the address without connecting (and
    connecting to a dead address waits forever). A test fails if it goes away
    (tests/train/test_ray_private.py)."""
    from ray._private.services import canonicalize_bootstrap_address

    explicit = os.environ.get("RAY_ADDRESS", "")
    if explicit.startswith(("ray://", "http://", "https://")):
        return explicit  # Ray Client, or a dashboard URL: probed as given
    try:
        return canonicalize_bootstrap_address(None)
    except (ConnectionError, ValueError):
        return explicit or None


def answers(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Something accepts a TCP connection at host:port."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s).close()
        return True
    except (OSError, ValueError, TypeError):
        return False
