"""Faults injected and bad input tried, each with what was lost (expected: nothing). Every
test adds its figures to the session's reliability log (results/reliability.json), from which
benchmarks/RELIABILITY.md is built. The lost nodes are in test_multinode.py, the killed sweep
driver in test_job.py; they record themselves here too."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raysys.config import DataConfig
from raysys.data.manifest import build_manifest, read_manifest, write_manifest
from raysys.errors import StallError
from raysys.train.connect import free_port
from raysys.train.run import fit
from tests.conftest import micro

FAKE_SECRETS = {"WANDB_API_KEY": "fakewandbkey0123456789abcdef0123456789abcd",
                "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE9999",
                "AWS_SECRET_ACCESS_KEY": "fake/aws/secret/key/never/written/anywhere"}


@pytest.mark.slow
def test_a_run_that_cannot_place_its_decode_actors_stops_with_a_message(
        ray_local, demo_manifest, tmp_path, reliability_log):
    """The plan fits the node (3.5 CPUs for the worker, 0.5 for a decode actor, 4 in all), but
    something else holds 0.5 CPU while the run starts: the decode actor can never be placed.
    Ray would wait forever in silence; the run stops once run.stall_timeout_s has passed with
    no batch, saying what is pending and on what resource."""

    @ray_local.remote(num_cpus=0.5)
    class Squatter:
        def ping(self) -> bool:
            return True

    squatter = Squatter.remote()
    ray_local.get(squatter.ping.remote())
    # 30 s: on a slow VM the Train worker itself took over 15 s to start (spawn, import torch),
    # and the watchdog rightly named it, before the decode actors were asked for
    stall_s = 30
    start = time.time()
    try:
        with pytest.raises(StallError) as stopped:
            fit(micro(demo_manifest, tmp_path / "run", "run.cpus_per_worker=3.5",
                      f"run.stall_timeout_s={stall_s}", "run.max_failures=0"))
    finally:
        ray_local.kill(squatter)
    message = str(stopped.value)
    assert "no progress for" in message and "DecodeActor" in message, message
    assert "wanting {'CPU': 0.5}" in message and "run.stall_timeout_s" in message, message
    log = tmp_path / "run" / "training_log.json"
    assert not log.exists() or json.loads(log.read_text()) == []
    reliability_log.append({
        "id": "unplaceable",
        "fault": "decode actors that cannot be placed (CPUs held by another actor)",
        "tries": 1, "outcome": f"stopped after {time.time() - start:.0f} s (stall timeout "
                               f"{stall_s} s, after the workers started) naming the pending "
                               "actor and CPUs",
        "lost": "-"})


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(arr).save(path, quality=90)


@pytest.fixture
def mixed_index(tmp_path) -> tuple[Path, Path]:
    """Good images for two names, plus every bad input kind, in one index folder."""
    img, idx, elsewhere = tmp_path / "images", tmp_path / "index_files", tmp_path / "moved"
    idx.mkdir()
    for i in range(24):
        _jpeg(img / "ann" / f"{i}.jpg", i)
        _jpeg(img / "bob" / f"{i}.jpg", 100 + i)
    Image.new("RGB", (64, 64), (200, 30, 10)).convert("P", palette=Image.ADAPTIVE).save(
        img / "palette.gif")
    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(
        img / "gray16.png")
    Image.new("L", (1500, 1500)).save(img / "bomb.png")  # > data.max_pixels=1e6 below
    _jpeg(img / "shared.jpg", 7)
    (img / "adir").mkdir()
    os.symlink(img / "loop_b.jpg", img / "loop_a.jpg")
    os.symlink(img / "loop_a.jpg", img / "loop_b.jpg")
    _jpeg(elsewhere / "ann_far.jpg", 9)  # an image whose index path is another machine's
    ann = [f"../images/ann/{i}.jpg" for i in range(24)] + [
        "../images/palette.gif", "../images/gray16.png", "../images/bomb.png",
        "../images/shared.jpg", "../images/ann/0.jpg", "../images/adir",
        "../images/loop_a.jpg", "/data/on/another/host/ann_far.jpg"]
    bob = [f"../images/bob/{i}.jpg" for i in range(24)] + ["../images/shared.jpg"]
    (idx / "index_ann.json").write_text(json.dumps({"good": ann}))
    (idx / "index_bob.json").write_text(json.dumps({"good": bob, "bad": []}))
    (idx / "index_cat.json").write_text("{not json")
    (idx / "index_dan.json").write_text(json.dumps({"bad": ["x.jpg"]}))
    (idx / "index_eve.json").write_text("")
    (idx / "index_fay.json").write_text(json.dumps({"good": []}))
    return idx, elsewhere


EXPECTED_BAD = {"missing": 1, "not_a_file": 1, "unreadable": 1, "too_large": 1, "conflict": 2,
                "duplicate": 1, "malformed_json": 1, "empty_json": 1, "no_good_key": 1,
                "no_images": 1}


@pytest.mark.slow
def test_bad_input_end_to_end_counted_and_nothing_leaks(
        ray_local, mixed_index, tmp_path, monkeypatch, capfd, reliability_log):
    """Every bad kind counted exactly in the data report; the good ones (a palette GIF and a
    16-bit PNG among them) all train; a file that vanishes between the manifest and training
    is dropped and counted; fake W&B and AWS keys in the environment reach no file and no
    console line, with W&B logging on (offline) so the code that reads the key runs. (The AWS
    keys in use against s3:// storage: test_multinode's s3 sweep.)"""
    idx, elsewhere = mixed_index
    data = DataConfig(index_dir=str(idx), max_pixels=1_000_000, val_fraction=0.25)
    df, report = build_manifest(data)
    counts = {k: v["count"] for k, v in report["bad_inputs"].items()}
    assert counts == EXPECTED_BAD
    assert len(df) == 24 + 24 + 2  # ann, bob, and the palette GIF and 16-bit PNG
    mapped, report2 = build_manifest(DataConfig(
        index_dir=str(idx), max_pixels=1_000_000, val_fraction=0.25,
        path_map=(f"/data/on/another/host={elsewhere}",)))
    assert "missing" not in report2["bad_inputs"] and len(mapped) == len(df) + 1

    write_manifest(mapped, report2, str(tmp_path / "m" / "manifest.parquet"))
    m = read_manifest(str(tmp_path / "m" / "manifest.parquet"))
    # What the reliability rows below say, each asserted: the written report counts every
    # kind with an example, no bad path is in the manifest, the odd formats and the mapped
    # path are.
    written = json.loads((tmp_path / "m" / "data_report.json").read_text())["bad_inputs"]
    assert {k: v["count"] for k, v in written.items()} == {
        k: n for k, n in EXPECTED_BAD.items() if k != "missing"}
    assert all(v["examples"] for v in written.values()), written
    names = set(m.path.map(lambda p: Path(p).name))
    assert not names & {"bomb.png", "shared.jpg", "loop_a.jpg", "adir"}
    assert {"palette.gif", "gray16.png"} <= names
    assert str(elsewhere / "ann_far.jpg") in set(m.path)
    vanished = m[m.split == "val"].path.iloc[0]
    os.unlink(vanished)  # between the manifest and training
    n_train, n_val = int((m.split == "train").sum()), int((m.split == "val").sum())
    for key, value in FAKE_SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    cfg = micro(tmp_path / "m" / "manifest.parquet", out, "optim.epochs=2",
                f"data.batch_size={n_train}",  # one full step: every train image, every epoch
                "data.max_bad_fraction=0.2",  # 1 of ~12 val images: over the default 1%
                "run.wandb=true", "run.figures=false")
    history = fit(cfg)["history"]
    assert [h["train/images"] for h in history] == [n_train, n_train]
    assert all(h["val/images"] == n_val - 1 and h["data/bad_images"] == 1 for h in history)

    console = capfd.readouterr()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.match("wandb/offline-run-*/*.wandb") for p in files), "W&B did not log"
    for secret in FAKE_SECRETS.values():
        assert secret not in console.out + console.err
        for p in files:
            assert secret.encode() not in p.read_bytes(), p
    reliability_log.extend([
        {"id": f"bad-input:{kind}",
         "fault": f"bad input: {kind}", "tries": n, "outcome": "counted in data_report.json "
         "with examples; left out of the manifest", "lost": "nothing (no good image dropped)"}
        for kind, n in EXPECTED_BAD.items()] + [
        {"id": "odd-formats", "fault": "bad input: palette GIF and 16-bit PNG", "tries": 2,
         "outcome": "in the manifest and decoded (the run counts no failure but the deleted "
         "image)", "lost": "nothing"},
        {"id": "path-map",
         "fault": "bad input: absolute paths from another machine, with --path-map", "tries": 1,
         "outcome": "rewritten into the manifest", "lost": "nothing"},
        {"id": "image-deleted",
         "fault": "image deleted between the manifest and training", "tries": 1,
         "outcome": "dropped inside Ray Data and counted (data/bad_images = 1 per epoch)",
         "lost": "that image only"},
        {"id": "env-keys",
         "fault": "fake WANDB_API_KEY and AWS keys in the environment", "tries": len(files),
         "outcome": f"in none of the run folder's {len(files)} files, nor on the console",
         "lost": "-"}])


WRITER = textwrap.dedent("""
    import sys, torch
    from raysys import storage
    path, log = sys.argv[1], sys.argv[2]
    i = 0
    while True:  # rewrite both files forever, as a run does every epoch
        blob = {"state_dict": {"w": torch.full((3_000_000,), float(i))}, "epoch": i}
        storage.write_with(path, lambda t: torch.save(blob, t))
        storage.write_json(log, [{"epoch": e} for e in range(i + 1)] * 2000)
        i += 1
""")


def test_writer_killed_mid_write_leaves_the_previous_file_whole(tmp_path, reliability_log):
    """SIGKILL while a temp file is being written: the published file is the previous version,
    whole and loadable (writes go to a temp file that is renamed)."""
    path, log = tmp_path / "best_model.pth", tmp_path / "training_log.json"
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(log)])
        deadline = time.time() + 60
        try:
            while not (path.exists() and log.exists() and list(tmp_path.glob(".*.*"))):
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
        blob = torch.load(path, weights_only=True)
        w = blob["state_dict"]["w"]
        assert w.numel() == 3_000_000 and bool((w == blob["epoch"]).all())
        assert len(json.loads(log.read_text())) % 2000 == 0
        for tmp in tmp_path.glob(".*.*"):  # what a killed writer leaves: only its temp file
            tmp.unlink()
    reliability_log.append({
        "id": "writer-killed",
        "fault": "writer SIGKILLed mid-write (best_model.pth, training_log.json)",
        "tries": kills, "outcome": "the previous file intact and loadable every time",
        "lost": "only the version being written"})


@pytest.mark.slow
@pytest.mark.own_ray
def test_a_stale_address_file_starts_a_local_ray_bound_to_localhost(reliability_log):
    """Ray's address file names a cluster that died without `ray stop`: raysys says so within
    seconds and starts a local Ray (Ray's own join would wait for it forever), whose dashboard
    listens on 127.0.0.1 only, IPv4 or IPv6, with no Ray client server open."""
    import ray

    ray.shutdown()  # this process's Ray: init_ray must start its own here
    os.environ.pop("RAYSYS_TEST_RAY", None)
    probe = textwrap.dedent("""
        import json, ray, sys, time
        from raysys.train.connect import init_ray

        def listening():  # (ip, port) of every listening TCP socket, IPv4 and IPv6, from /proc
            out = []
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                for line in open(table).read().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if state != "0A":
                        continue
                    ip, port = local.split(":")
                    if len(ip) == 8:
                        ip = ".".join(str(int(ip[i:i + 2], 16)) for i in (6, 4, 2, 0))
                    else:  # IPv6 in four little-endian words: loopback is ...01000000
                        words = [ip[i:i + 8] for i in range(0, 32, 8)]
                        ip = {"00000000000000000000000001000000": "::1",
                              "00000000000000000000000000000000": "::"}.get("".join(words),
                                                                            ip)
                    out.append((ip, int(port, 16)))
            return out

        print("joining", flush=True)  # imports done: the clock starts here
        init_ray(1)
        port = int(ray._private.worker._global_node.webui_url.rsplit(":", 1)[1])
        listen = listening()
        print(json.dumps({"dashboard": [l for l in listen if l[1] == port],
                          "client": [l for l in listen if l[1] == 10001],
                          "gcs": ray.get_runtime_context().gcs_address}))
        ray.shutdown()
    """)
    temp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths
    (temp / "ray").mkdir()
    dead = free_port()
    (temp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{dead}")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(temp)}
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-u", "-c", probe], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    said = None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("joining"):
            start = time.time()
        if said is None and f":{dead} that does not answer" in line:
            said = time.time() - start
    proc.wait(timeout=180)
    shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, "".join(lines)[-2000:]
    assert said is not None and said < 10, ("".join(lines)[-2000:], said)
    assert "`ray stop` clears it" in "".join(lines)
    found = json.loads(lines[-1])
    assert found["gcs"].rsplit(":", 1)[1] != str(dead)
    assert found["dashboard"] and all(ip == "127.0.0.1" for ip, _ in found["dashboard"])
    assert found["client"] == []
    reliability_log.append({
        "id": "stale-address", "recover_s": said,
        "fault": "stale Ray address file (a Ray that died without `ray stop`)", "tries": 1,
        "outcome": f"said so after {said:.1f} s and started a local Ray; dashboard on "
                   f"{found['dashboard'][0][0]}:{found['dashboard'][0][1]} only (IPv4 and "
                   "IPv6 checked); no Ray client server", "lost": "-"})


def test_an_explicit_ray_address_that_does_not_answer_fails_in_seconds(demo_manifest,
                                                                        tmp_path):
    env = dict(os.environ, RAY_ADDRESS=f"127.0.0.1:{free_port()}")
    start = time.time()
    r = subprocess.run([sys.executable, "-m", "raysys.cli", "train", "--manifest",
                        str(demo_manifest), "--preset", "micro", "--out", str(tmp_path / "run")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and time.time() - start < 15, r.stderr[-2000:]
    assert f"RAY_ADDRESS={env['RAY_ADDRESS']}: nothing answers" in r.stderr


