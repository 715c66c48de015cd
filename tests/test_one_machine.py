"""raysys on a workstation: two commands at once, Ctrl+C, what a run leaves in Ray, work that
cannot be placed, and joining a `ray start` head with token authentication on or off.

Each command here runs as the user runs it, in a process of its own; the faults and what they
cost go to the reliability log (benchmarks/RELIABILITY.md)."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from raysys.cli import main as cli
from raysys.errors import StallError
from raysys.train.connect import free_port
from raysys.train.run import fit
from tests.conftest import micro

pytestmark = pytest.mark.slow
RAYSYS = [sys.executable, "-m", "raysys.cli"]


def _own_ray_env(tmp: Path) -> dict[str, str]:
    """A command's environment with no cluster to join: each starts a local Ray of its own.
    Ray's temp folder is short (its socket paths have a length limit) and this test's."""
    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYSYS_TEST_RAY")
            } | {"RAY_TMPDIR": str(tmp)}


def _short_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, path.read_text()[-3000:]
        assert time.time() < deadline, f"no {text!r} in {timeout_s} s: " + path.read_text()[-3000:]
        time.sleep(0.3)


@pytest.mark.cluster
def test_two_sweeps_at_once_each_finish_and_rays_own_cleaner_finds_its_ray(
        ray_local, demo_manifest, tmp_path, reliability_log):
    """Two `raysys sweep` commands started together, beside this process's Ray: three Rays on
    the host. Each trial reaches ASHA's max_t, so Tune kills its actor and with it the run's
    Train controller, and Train's placement-group cleaner must look the dead controller up in
    its own Ray: with two Rays and no address to go by, that lookup failed and the group
    leaked. Both sweeps finish, and raysys never had to remove a group for them."""
    ray_tmp = _short_tmp()
    procs, logs = [], []
    start = time.time()
    for i in range(2):
        logs.append(tmp_path / f"sweep{i}.log")
        procs.append(subprocess.Popen(
            [*RAYSYS, "sweep", "baseline", "--manifest", str(demo_manifest), "--preset", "micro",
             "--epochs", "1", "--out", str(tmp_path / f"sweep{i}"), "--set", "run.figures=false"],
            stdout=logs[-1].open("w"), stderr=subprocess.STDOUT, env=_own_ray_env(ray_tmp)))
    codes = [p.wait(timeout=600) for p in procs]
    took = time.time() - start
    shutil.rmtree(ray_tmp, ignore_errors=True)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n---\n".join(o[-3000:] for o in outputs)
    for i, out in enumerate(outputs):
        assert "sweep report:" in out and (tmp_path / f"sweep{i}" / "summary.md").exists()
        assert "removed placement group" not in out, out[-3000:]
    reliability_log.append({
        "id": "two-commands", "fault": "two `raysys sweep` at once on one machine (3 Rays "
        "on the host)", "tries": 1,
        "outcome": f"both finished in {took:.0f} s, each on a local Ray of its own; Train's "
                   "cleaner removed every stopped trial's placement group (none left for "
                   "raysys)", "lost": "-"})


@pytest.mark.cluster
def test_ctrl_c_exits_130_with_the_command_that_resumes(ray_local, demo_manifest, tmp_path,
                                                        capsys, reliability_log):
    """SIGINT to `raysys train` mid-run, in a process of its own: exit 130 and the command that
    resumes it, which continues from the last checkpoint to the end. SIGINT to a sweep: exit
    130, its `--resume` command, and Tune's saved state to resume from. (The resumed run and
    the sweep run in this process, on its Ray: each costs a Ray start less.)"""
    ray_tmp = _short_tmp()
    run, log = tmp_path / "run", tmp_path / "train.log"
    proc = subprocess.Popen(
        [*RAYSYS, "train", "--manifest", str(demo_manifest), "--preset", "micro", "--epochs",
         "3", "--name", "to-be-replaced", "--storage", str(tmp_path / "elsewhere"), "--out",
         str(run), "--set", "run.figures=false"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=_own_ray_env(ray_tmp))
    snapshot = run / "checkpoints" / "checkpoint_manager_snapshot.json"
    _wait_for(snapshot, "checkpoint_", proc)  # epoch 1's checkpoint, registered by Train
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    stopped_in = time.time() - sent
    shutil.rmtree(ray_tmp, ignore_errors=True)
    line = next(x for x in log.read_text().splitlines()
                if "raysys train: interrupted; resume with: " in x)
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:2] == ["raysys", "train"] and command[-2:] == ["--out", str(run)]
    assert "--name" not in command and "--storage" not in command
    assert cli(command[1:]) == 0
    history = json.loads((run / "training_log.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    console = (run / "console.log").read_text()
    assert "resumed at epoch" in console and console.count("Ray's logs: ") == 2

    sweep = tmp_path / "sweep"
    first_epoch = sweep / "runs"

    def interrupt_after_the_first_epoch() -> None:
        deadline = time.time() + 300
        while not list(first_epoch.glob("*/training_log.json")) and time.time() < deadline:
            time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl+C: to the main thread, Tune's loop

    capsys.readouterr()
    threading.Thread(target=interrupt_after_the_first_epoch, daemon=True).start()
    code = cli(["sweep", "baseline", "--manifest", str(demo_manifest), "--preset", "micro",
                "--epochs", "3", "--out", str(sweep), "--set", "run.figures=false"])
    said = capsys.readouterr().err
    assert code == 130, said[-3000:]
    assert "Tuner.restore" not in said
    line = next(x for x in said.splitlines() if "raysys sweep: interrupted; resume with: " in x)
    assert f"--out {sweep} " in line and line.endswith(" --resume"), line
    from ray import tune

    assert tune.Tuner.can_restore(str(sweep))
    reliability_log.append({
        "id": "ctrl-c", "fault": "Ctrl+C (SIGINT) to `raysys train` and to `raysys sweep`",
        "tries": 2, "recover_s": stopped_in,
        "outcome": f"train: exit 130 after {stopped_in:.1f} s with its resume command, which "
                   "finished epochs 2-3 from the checkpoint; sweep: exit 130, its --resume "
                   "command, Tune's state saved", "lost": "the epoch in progress"})


def test_work_that_cannot_be_placed_before_training_stops_with_who_holds_it(
        ray_local, demo_manifest, tmp_path, reliability_log):
    """A placement group of this driver holds 3.5 of the 4 CPUs: the run's val read (Ray
    Data's metadata task wants a whole CPU) can never start. Before the workers exist, the
    watchdog ends the wait, naming the task, what it wants and the group that holds the CPUs
    with its owner. (A group whose owner is dead is removed instead: test_run.py.)"""
    from ray.util.placement_group import placement_group, remove_placement_group

    held = placement_group([{"CPU": 3.5}], strategy="STRICT_PACK")
    ray_local.get(held.ready())
    start = time.time()
    try:
        with pytest.raises(StallError) as stopped:
            fit(micro(demo_manifest, tmp_path / "run", "run.stall_timeout_s=5",
                      "run.figures=false"))
    finally:
        remove_placement_group(held)
    took = time.time() - start
    message = str(stopped.value)
    assert took < 40, took
    assert "no progress for" in message and "wanting {'CPU': 1.0}" in message, message
    assert (f"held by placement group {held.id.hex()[:12]} (STRICT_PACK, 1 x {{CPU: 3.5}}) "
            "of the driver of job") in message, message
    assert not (tmp_path / "run" / "training_log.json").exists()
    reliability_log.append({
        "id": "unplaceable-before-training",
        "fault": "a metadata task that cannot be placed (CPUs held by a placement group), "
                 "before the workers start", "tries": 1,
        "outcome": f"stopped after {took:.0f} s (stall timeout 5 s) naming the task, "
                   "{'CPU': 1.0} and the group with its owner", "lost": "-"})


JOIN = textwrap.dedent("""
    import json, ray
    from raysys.train.connect import init_ray
    init_ray(1)
    print(json.dumps({"gcs": ray.get_runtime_context().gcs_address,
                      "cpus": ray.cluster_resources().get("CPU")}))
""")


@pytest.mark.cluster
def test_joining_a_ray_start_head_with_token_authentication(tmp_path, reliability_log):
    """A `ray start --head` made after a local run (a token exists, so Ray turns token
    authentication on) is joined by its address file and by RAY_ADDRESS, with RAY_AUTH_MODE
    unset as a user has it; one with token authentication off, by a client that has a token;
    and a client with no token is told in one line where Ray looks for it."""
    ray_tmp = _short_tmp()
    base = {k: v for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAYSYS_TEST_RAY")}
    assert Path(base["RAY_AUTH_TOKEN_PATH"]).exists()  # conftest's: "after a local run"
    heads = []

    def head(port: int, **env: str) -> str:
        heads.append(subprocess.Popen(
            [shutil.which("ray") or str(Path(sys.executable).parent / "ray"), "start",
             "--head", "--block", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
            stdout=(tmp_path / f"head{port}.log").open("w"), stderr=subprocess.STDOUT,
            env=base | {"RAY_TMPDIR": str(ray_tmp)} | env))
        deadline = time.time() + 120
        while not (ray_tmp / "ray" / "ray_current_cluster").exists():
            assert time.time() < deadline and heads[-1].poll() is None, (
                tmp_path / f"head{port}.log").read_text()[-2000:]
            time.sleep(0.5)
        address = (ray_tmp / "ray" / "ray_current_cluster").read_text().strip()
        (ray_tmp / "ray" / "ray_current_cluster").unlink()  # the next head writes its own
        return address

    def join(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", JOIN], capture_output=True, text=True,
                              env=base | {"RAY_TMPDIR": str(ray_tmp)} | env, timeout=120)

    try:
        token_head = head(free_port())
        plain_head = head(free_port(), RAY_AUTH_MODE="disabled")
        (ray_tmp / "ray" / "ray_current_cluster").write_text(token_head)
        results = {"address file": join(), "RAY_ADDRESS": join(RAY_ADDRESS=token_head),
                   "no token auth": join(RAY_ADDRESS=plain_head)}
        for how, r in results.items():
            assert r.returncode == 0, (how, r.stdout[-2000:], r.stderr[-2000:])
            assert json.loads(r.stdout.splitlines()[-1])["cpus"] == 1.0, how
        home = tmp_path / "home"
        home.mkdir()
        missing = join(RAY_ADDRESS=token_head, HOME=str(home),
                       RAY_AUTH_TOKEN_PATH=str(tmp_path / "no-token"))
    finally:
        for p in heads:
            p.terminate()
        for p in heads:
            p.wait(timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert missing.returncode != 0
    said = [x for x in missing.stderr.splitlines() if "RAY_AUTH_TOKEN_PATH" in x]
    assert said and "~/.ray/auth_token" in said[0] and "ray get-auth-token" in said[0], \
        missing.stderr[-2000:]
    reliability_log.append({
        "id": "token-auth", "fault": "joining a `ray start --head` made after a local run "
        "(token authentication on), with RAY_AUTH_MODE unset", "tries": 4,
        "outcome": "joined by the address file and by RAY_ADDRESS; a head without token "
                   "authentication joined too; with no token, one line names where Ray looks",
        "lost": "-"})
