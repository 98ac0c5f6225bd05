"""Nothing lost, the leftovers of issue 28: page uploads deleted when their session ends, a dying Ray
cluster as one line, video frames that change size in the middle of a stream, and StyleGAN2 adaptation's
files written the one safe way. Each test failed on main before its fix (see the commit that added it)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint  # noqa: E402

from factory.errors import UserError  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(condition, timeout: float = 90.0) -> bool:
    """Wait for ``condition`` (a server's background work); False if it never held. Not a timing assert."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return condition()


def holding(folder: Path, data: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data]


def test_demo_uploads_and_outputs_are_deleted_when_the_session_ends(tmp_path, monkeypatch):
    import httpx
    from gradio_client import Client, handle_file

    from toonfactory.apps import launch
    from toonfactory.apps.demo import build

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    photo, never_run = tmp_path / "me.png", tmp_path / "holiday.png"
    Image.fromarray(real_image(np.random.default_rng(1), 48)).save(photo)
    Image.fromarray(real_image(np.random.default_rng(2), 40)).save(never_run)
    port = free_port()
    page = build(write_checkpoint(tmp_path / "student", ngf=4, depth=2, size=32))
    launch(page, port, block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        # an upload this tab never ran (gradio stores uploads before any event names their session)
        with never_run.open("rb") as file:
            stored = httpx.post(f"{url}gradio_api/upload", files={"files": file}, timeout=60)
        assert stored.status_code == 200 and holding(cache, never_run.read_bytes())
        client = Client(url, verbose=False, download_files=False)
        outputs = client.predict(handle_file(str(photo)), api_name="/on_image")
        assert holding(cache, photo.read_bytes()), "the upload is where gradio keeps uploads"
        made = [Path(o["path"] if isinstance(o, dict) else o) for o in outputs[:3]]
        assert all(p.is_file() and cache in p.parents for p in made), made  # served from the session's folder
        client.close()  # the tab closes: its heartbeat stops and the session ends
        assert eventually(lambda: not holding(cache, photo.read_bytes()) and not any(p.exists() for p in made)), \
            sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
        assert not holding(cache, never_run.read_bytes()), "the last tab's end takes uploads nobody ran"
    finally:
        page.close()
    assert photo.is_file() and never_run.is_file()  # the user's own files are never touched


def test_a_page_refuses_an_upload_over_its_limit_and_the_viewer_takes_none(small_page_data, tmp_path, monkeypatch):
    import httpx

    import toonfactory.apps as apps
    from toonfactory.apps.viewer import build

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    monkeypatch.setattr(apps, "MAX_UPLOAD", "1kb")
    payload = b"\x89PNG" + bytes(4000)
    for uploads, expected in ((True, 413), (False, 403)):
        port = free_port()
        page = build(small_page_data)
        apps.launch(page, port, block=False, uploads=uploads)
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": ("big.png", payload)},
                                timeout=60)
            assert answer.status_code == expected, answer.text
        finally:
            page.close()
    assert not (cache.exists() and holding(cache, payload))


@pytest.fixture
def small_page_data(tmp_path) -> Path:
    from distill_fixtures import write_dataset

    return write_dataset(tmp_path / "pairs", shards=1, per_shard=2, size=32)


REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SMALL = ["output.count=6", "output.shard_size=2", "output.size=64", "tracking.mode=none"]


def fake_cluster(monkeypatch, dies_with):
    """``--executor ray`` on a stand-in for a Ray cluster (the real driver loop, ``ray_results``, over a
    fake ``ray``): shards are made here, in order, until the second one, whose ``ray.get`` raises
    ``dies_with`` (what Ray raises when its raylet, agent, node or worker dies, or a shard's code raised)."""
    ray = pytest.importorskip("ray")
    from factory import executors

    class FakeCluster(executors.RayExecutor):
        def start(self, recipe, out, shards):
            self.recipe, self.out, self.cancelled = recipe, str(out), []

        def run(self, tasks):
            calls = {"get": 0}

            def get(task):
                calls["get"] += 1
                if calls["get"] == 2:
                    raise dies_with
                return executors._ray_shard(self.recipe, task, self.out)

            fake = type("FakeRay", (), {
                "exceptions": ray.exceptions,
                "wait": staticmethod(lambda refs, num_returns: (refs[:1], refs[1:])),
                "get": staticmethod(get),
                "cancel": staticmethod(lambda ref, force: self.cancelled.append(ref.name)),
            })
            yield from executors.ray_results(fake, {task: task for task in tasks})

    monkeypatch.setattr(executors, "RayExecutor", FakeCluster)
    return FakeCluster


@pytest.mark.parametrize("dies_with, said", [
    ("LocalRayletDiedError", "Ray's raylet on this machine died"),
    ("WorkerCrashedError", "its Ray worker process died on every try"),
    ("NodeDiedError", "the Ray node running it died"),
    ("OutOfMemoryError", "Ray killed its worker: the machine ran out of memory"),
])
def test_a_dying_ray_cluster_is_one_line_and_exit_2_keeping_finished_shards(dies_with, said, tmp_path, monkeypatch):
    import ray.exceptions
    from typer.testing import CliRunner

    from toonfactory.cli import app

    kind = getattr(ray.exceptions, dies_with)
    error = kind("node 1f2e died") if dies_with in ("NodeDiedError", "OutOfMemoryError") else kind()
    fake_cluster(monkeypatch, error)
    out = tmp_path / "pairs"
    result = CliRunner().invoke(app, ["generate", str(QUICKSTART), "--out", str(out), "--executor", "ray",
                                      *[a for s in SMALL for a in ("--set", s)]])
    assert isinstance(result.exception, UserError) and result.exception.exit_code == 2, result.output
    message = str(result.exception)  # the CLI prints a UserError as its one line and exits 2
    assert "\n" not in message and message.startswith(f"--executor ray: shard 00001 stopped: {said}"), message
    assert f"1 of 3 shards finished and kept in {out}; re-run the same command to resume" in message
    assert "Traceback" not in result.output and "shard(s) failed" not in result.output
    assert sorted(p.name for p in (out / "stats").glob("*.done")) == ["00000.done"]


def test_a_shards_own_error_under_ray_stays_a_failed_shard(tmp_path, monkeypatch):
    import ray.exceptions

    from factory import executors
    from factory.generate import generate
    from toonfactory.recipe import load as load_recipe

    error = ray.exceptions.RayTaskError("_ray_shard", "Traceback ...\nValueError: bad sample", ValueError("bad sample"))
    cluster = fake_cluster(monkeypatch, error)
    result = generate(load_recipe(QUICKSTART, SMALL), tmp_path / "pairs", cluster())
    assert [s["shard"] for s in result.failed] == ["00001"] and len(result.made) == 2


def test_killing_rays_agent_mid_run_is_one_line_and_exit_2(tmp_path):
    """The issue's case on a real local cluster: Ray's dashboard agent is killed while a shard is made;
    Ray then ends its driver with a bare exit 1. The run says what died in one line and exits 2."""
    import os
    import signal
    import subprocess

    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "pairs"
    command = [sys.executable, "-m", "toonfactory", "generate", str(QUICKSTART), "--out", str(out), "--executor", "ray",
               "--workers", "2", *[a for s in SMALL for a in ("--set", s)]]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        def titles() -> dict[int, str]:
            found = {}
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    found[child.pid] = " ".join(child.cmdline())
                except psutil.Error:
                    pass
            return found

        assert eventually(lambda: proc.poll() is None and any("ray::_ray_shard" in t for t in titles().values()),
                          timeout=400), "no shard started on the Ray cluster"
        agent = [pid for pid, title in titles().items() if "ray::DashboardAgent" in title]
        assert agent, titles()
        os.kill(agent[0], signal.SIGKILL)
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: --executor ray: ") and "died" in last, output[-3000:]
    assert f"of 3 shards finished and kept in {out}; re-run the same command to resume" in last
    assert "Traceback" not in output and "(raylet)" not in output, output[-3000:]
