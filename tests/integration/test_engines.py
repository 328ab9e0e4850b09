"""Engines: the local process pool and Ray give the same outputs and records.

The Ray tests start real Ray processes (a ``ray start --head`` on this machine, and a Ray started by
the engine with ``address="local"``): they are marked slow and each does several checks, so that
Ray's start-up (seconds) is paid twice for the whole file. The fast tests need no Ray running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.batch import BatchOptions, plan_tasks, process_file, run_batch
from anonlens.cli.main import app
from anonlens.engines import ENGINES, create_engine
from anonlens.engines.ray import chunk_items
from anonlens.errors import AnonlensError
from anonlens.io import metadata_segments
from anonlens.samples import face_scene, write_samples

from tests.helpers import free_port, manifest_of, tree_hashes

runner = CliRunner()


def _photos(folder: Path, n_scenes: int = 3) -> Path:
    """The built-in photos plus real faces at odd sizes and sizes typical of street imagery."""
    write_samples(folder)
    sizes = [(640, 480, 120), (1280, 720, 200), (333, 517, 90), (800, 600, 60), (517, 333, 150), (1024, 768, 300)]
    for i, (w, h, f) in enumerate(sizes[:n_scenes]):
        img, _ = face_scene(w, h, f)
        Image.fromarray(img).save(folder / f"scene{i}.jpg", quality=92)
    return folder


def _records(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in manifest_of(out)["images"]}


def _comparable(rec: dict, out: Path) -> dict:
    """A record without the parts that differ between two runs by nature: timing and the output folder."""
    return {k: (v.replace(str(out), "OUT") if isinstance(v, str) else v) for k, v in rec.items() if k != "seconds"}


# -- fast: no Ray process ------------------------------------------------------------------------


def test_engines_registry_and_missing_extra(monkeypatch, tmp_path):
    assert ENGINES.names() == ["local", "ray"]
    assert ENGINES.get("ray").tags["extra"] == "ray"
    import anonlens.extras as extras

    real = extras._installed
    monkeypatch.setattr(extras, "_installed", lambda m: False if m == "ray" else real(m))
    write_samples(tmp_path / "in")
    for args in (["--engine", "ray"], ["--ray-address", "127.0.0.1:1"]):
        result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", *args])
        assert result.exit_code == 2, result.output
        assert "needs the 'ray' extra" in result.output and "pip install 'anonlens[ray]'" in result.output
        assert not (tmp_path / "out").exists()  # refused before any file was touched
    result = runner.invoke(app, ["score", "-a", str(tmp_path / "in"), "-o", str(tmp_path / "s"), "--engine", "ray", "-q"])
    assert result.exit_code == 2 and "anonlens[ray]" in result.output
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--engine", "dask"])
    assert result.exit_code == 2 and "unknown engine 'dask'" in result.output


def test_engine_options_are_checked(monkeypatch, tmp_path):
    write_samples(tmp_path / "in")
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--engine", "ray",
                                 "-E", "files_per_task=0"])
    assert result.exit_code == 2 and "files per task must be at least 1" in result.output
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "-E", "max_retries=1"])
    assert result.exit_code == 2 and "--engine-option applies to --engine ray" in result.output
    if importlib.util.find_spec("ray") is not None:  # a mistyped address: one line at once, not Ray's minutes of retries
        port = free_port()
        result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--ray-address", f"127.0.0.1:{port}"])
        assert result.exit_code == 2 and f"cannot join the Ray cluster at 127.0.0.1:{port}: nothing answers there" in result.output
        result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--ray-address", "headnode"])
        assert result.exit_code == 2 and "must look like HOST:PORT" in result.output
    assert not (tmp_path / "out").exists()


def test_chunks_put_videos_alone():
    items = ["a.jpg", "b.png", "c.mp4", "d.jpg", "e.jpg", "f.jpg"]
    assert list(chunk_items(items, 2, alone=lambda p: p.endswith(".mp4"))) == [["a.jpg", "b.png"], ["c.mp4"], ["d.jpg", "e.jpg"], ["f.jpg"]]


def test_group_metric_state_merges_to_the_same_value():
    """A worker's FID features merged on the driver give the value one process computes."""
    torch = pytest.importorskip("torch")
    from anonlens.metrics import FID

    class Pool(torch.nn.Module):  # a small, deterministic feature map instead of Inception
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 3).flatten(1)

    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.random((12, 3, 16, 16), dtype=np.float32)) for _ in range(2))
    whole = FID(feature=Pool())
    whole.update("all", a, b)
    left, right, driver = FID(feature=Pool()), FID(feature=Pool()), FID(feature=Pool())
    left.update("all", a[:5], b[:5])
    right.update("all", a[5:], b[5:])
    driver.merge_state(left.take_state())
    driver.merge_state(right.take_state())
    assert left.take_state() == {}  # handed over, not kept twice
    assert driver.compute()["all"]["value"] == pytest.approx(whole.compute()["all"]["value"], rel=1e-12)
    assert driver.compute()["all"]["n"] == 12


# -- Ray: real processes ---------------------------------------------------------------------------


@pytest.fixture
def ray_env(monkeypatch, tmp_path):
    """Ray's token and files in temporary folders, never the user's home; Ray's usage statistics off."""
    pytest.importorskip("ray")
    home = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield home
    import ray

    if ray.is_initialized():
        ray.shutdown()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def ray_head(ray_env):
    """A ``ray start --head`` child process (2 CPUs), stopped with SIGTERM at the end."""
    port = free_port()
    temp = ray_env / "t"
    ray_bin = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("ray start --head did not listen within 60 s")
    try:
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _ray_file_workers() -> list[int]:
    """PIDs of Ray workers running an anonlens file task right now (Ray titles them ray::<task>)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if "ray::anonlens.files" in line]


@pytest.mark.slow
def test_ray_cluster_same_outputs_killed_worker_poison_file_resume(ray_head, tmp_path):
    photos = _photos(tmp_path / "in", n_scenes=3)
    # two single-threaded worker processes, as each Ray task is (1 CPU): the same thread count per
    # image, hence the same detector scores to the last digit (OpenVINO's sums depend on it)
    opts = BatchOptions(workers=2)

    # 1. the local engine, then the joined cluster: the same files, the same records
    local_out = tmp_path / "local"
    local = run_batch([photos], local_out, opts)
    assert local.ok and local.count("anonymized") == 6
    with create_engine("ray", address=ray_head, files_per_task=2) as engine:
        ray_out = tmp_path / "ray"
        report = run_batch([photos], ray_out, opts, engine=engine)
        described = engine.describe()
    assert report.ok and report.count("anonymized") == 6
    assert tree_hashes(ray_out) == tree_hashes(local_out)  # file for file, byte for byte
    lr, rr = _records(local_out), _records(ray_out)
    assert sorted(lr) == sorted(rr)
    for key in lr:
        assert _comparable(rr[key], ray_out) == _comparable(lr[key], local_out)
    manifest = json.loads((tmp_path / "ray.anonlens-audit" / "manifest.json").read_text())
    assert manifest["engine"]["name"] == "ray" and manifest["engine"]["address"] == ray_head
    assert manifest["summary"] == {**manifest["summary"], "anonymized": 6, "failed": 0}
    assert described["tasks"] == 3  # 6 files, 2 per task
    # models load once per worker process, not per file
    assert 1 <= described["model_loads"] <= described["worker_processes"] <= 2
    for p in ray_out.rglob("*"):
        assert p.is_file() and metadata_segments(p.read_bytes()) == []

    # 2. a worker killed (by its PID) mid-task: every file done exactly once, nothing partial
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in _ray_file_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    with create_engine("ray", address=ray_head, files_per_task=1) as engine:
        thread.start()
        crash_out = tmp_path / "killed"
        report = run_batch([photos], crash_out, opts, engine=engine)
    thread.join(5)
    assert killed, "no anonlens task was running to be killed"
    assert report.ok and report.count("anonymized") == 6 and report.count("failed") == 0
    assert tree_hashes(crash_out) == tree_hashes(local_out)  # each output once, complete
    records = json.loads((tmp_path / "killed.anonlens-audit" / "manifest.json").read_text())["images"]
    assert sorted(r["key"] for r in records) == sorted(lr)  # one record per file
    assert not list((tmp_path / "killed.anonlens-audit").rglob("*.tmp*")) and not (crash_out / ".anonlens-tmp").exists()

    # 3. a file that kills every worker that opens it: retried (bounded), then failed by name
    def poisoned(task, options):  # pickled by value: runs on the Ray workers
        if "scene1" in task.key:
            os._exit(1)
        return process_file(task, options)

    tasks = plan_tasks([photos], tmp_path / "poison", tmp_dir=tmp_path / "poison-tmp")
    (tmp_path / "poison-tmp").mkdir()
    (tmp_path / "poison").mkdir()
    done: list[dict] = []
    with create_engine("ray", address=ray_head, files_per_task=3, max_retries=1) as engine:
        engine.map_files(tasks, opts, done.append, fn=poisoned)
        described = engine.describe()
    by_key = {r["key"]: r for r in done}
    assert len(done) == 6 and sorted(by_key) == sorted(lr)  # exactly once each
    bad = by_key.pop("scene1.jpg")
    assert bad["status"] == "failed" and bad["output"] is None
    assert str(photos / "scene1.jpg") in bad["error"] and "worker was lost 2 times" in bad["error"]
    assert all(r["status"] == "anonymized" for r in by_key.values())
    assert not (tmp_path / "poison" / "scene1.jpg").exists()
    assert described["batches_split"] == 1 and described["lost"] == 1

    # 4. resume across engines: a local run interrupted (two files left), finished on Ray
    part = tmp_path / "part"
    shutil.copytree(photos, part)
    aside = tmp_path / "aside"
    aside.mkdir()
    for name in ("scene0.jpg", "scene2.jpg"):
        (part / name).rename(aside / name)
    first = run_batch([part], tmp_path / "res", opts)
    assert first.count("anonymized") == 4
    for name in ("scene0.jpg", "scene2.jpg"):
        (aside / name).rename(part / name)
    with create_engine("ray", address=ray_head) as engine:
        second = run_batch([part], tmp_path / "res", BatchOptions(workers=2, resume=True), engine=engine)
    assert second.ok and second.count("resumed") == 4 and second.count("anonymized") == 2, second.summary()
    assert tree_hashes(tmp_path / "res") == tree_hashes(local_out)


@pytest.mark.slow
def test_ray_local_cli_anonymize_and_score(ray_env, tmp_path):
    """``--engine ray`` starts a Ray for the run and stops it; anonymize and score equal the local engine's."""
    import ray

    photos = _photos(tmp_path / "in", n_scenes=2)
    out_l, out_r = tmp_path / "l", tmp_path / "r"
    res = runner.invoke(app, ["anonymize", "--on-text", "accept", str(photos), "-o", str(out_l), "-q", "-j", "2", "--json"])
    assert res.exit_code == 0, res.output
    temp = ray_env / "t"
    res = runner.invoke(app, ["anonymize", "--on-text", "accept", str(photos), "-o", str(out_r), "-q", "--engine", "ray", "-j", "2", "--json",
                              "-E", f"temp_dir={temp}"])
    assert res.exit_code == 0, res.output
    assert not ray.is_initialized()  # stopped after the run
    assert tree_hashes(out_r) == tree_hashes(out_l)
    assert {k: _comparable(v, out_r) for k, v in _records(out_r).items()} == {k: _comparable(v, out_l) for k, v in _records(out_l).items()}
    # what Ray wrote on this machine (its session folder) names no input
    logs = [p for p in temp.rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".err")]
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert "scene0" not in text and str(photos) not in text, log

    rows = {}
    for name, extra in (("l", []), ("r", ["--engine", "ray", "-E", "pairs_per_task=2"])):
        res = runner.invoke(app, ["score", "-a", str(out_l), "--original", str(photos), "-o", str(tmp_path / f"s{name}"),
                                  "--metrics", "mse,psnr,ssim,identity", "-q", "--json", *extra])
        assert res.exit_code == 0, res.output
        rows[name] = sorted((json.loads(line) for line in (tmp_path / f"s{name}" / "scores.jsonl").read_text().splitlines()),
                            key=lambda r: r["key"])
        summary = json.loads((tmp_path / f"s{name}" / "summary.json").read_text())
        rows[name + "-summary"] = {k: v for k, v in summary["summary"].items() if k != "seconds"}
    assert rows["r"] == rows["l"] and len(rows["r"]) == 5
    assert rows["r-summary"] == rows["l-summary"] and rows["l-summary"]["faces_in_originals"] >= 3


def test_ray_gets_a_short_session_folder_when_the_temporary_folder_is_deep(monkeypatch, tmp_path):
    """A deep TMPDIR (about 100 characters) would put Ray's Unix sockets past 107 bytes: the Ray
    started here gets a short private folder under /tmp; a deep temp_dir the user names is refused."""
    import os

    from anonlens.engines.ray import RAY_SOCKET_TAIL, UNIX_SOCKET_PATH_MAX, ray_temp_dir

    deep = tmp_path.joinpath(*["d" * 20] * 5)
    deep.mkdir(parents=True)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    short = ray_temp_dir(None)
    try:
        assert short is not None and short.startswith("/tmp/anonlens-ray-") and os.path.isdir(short)
        assert len(short) + RAY_SOCKET_TAIL <= UNIX_SOCKET_PATH_MAX and oct(os.stat(short).st_mode & 0o777) == "0o700"
    finally:
        os.rmdir(short)
    with pytest.raises(AnonlensError, match="too deep for its Unix sockets"):
        ray_temp_dir(str(deep / "ray"))
    monkeypatch.setenv("TMPDIR", "/tmp")
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert ray_temp_dir(None) is None and ray_temp_dir("/tmp/r") == "/tmp/r"
