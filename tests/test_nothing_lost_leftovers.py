"""Nothing lost, the leftovers of issue 28: page uploads deleted when their session ends, a dying Ray
cluster as one line, video frames that change size in the middle of a stream, and StyleGAN2 adaptation's
files written the one safe way. Each test failed on main before its fix (see the commit that added it)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def demo_page(tmp_path: Path, monkeypatch):
    """The demo page of a tiny student, served with its uploads under ``tmp_path/gradio``: (url, that folder)."""
    from toonfactory.apps import launch
    from toonfactory.apps.demo import build

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    port = free_port()
    page = build(write_checkpoint(tmp_path / "student", ngf=4, depth=2, size=32))
    launch(page, port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", cache
    finally:
        page.close()


def test_demo_uploads_and_outputs_are_deleted_when_the_session_ends(tmp_path, monkeypatch):
    import httpx
    from gradio_client import Client, handle_file

    photo, never_run = tmp_path / "me.png", tmp_path / "holiday.png"
    Image.fromarray(real_image(np.random.default_rng(1), 48)).save(photo)
    Image.fromarray(real_image(np.random.default_rng(2), 40)).save(never_run)
    with demo_page(tmp_path, monkeypatch) as (url, cache):
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
    from factory.executors import ray_tasks

    class FakeCluster(executors.RayExecutor):
        def start(self, recipe, out, shards):
            self.recipe, self.out, self.cancelled = recipe, str(out), []

        def run(self, tasks):
            calls = {"get": 0}

            def get(task):
                calls["get"] += 1
                if calls["get"] == 2 and dies_with is not None:
                    raise dies_with
                try:
                    return ray_tasks._ray_shard(self.recipe, task, self.out)
                except Exception as exc:  # what ray.get raises for a task that raised
                    raise ray.exceptions.RayTaskError("_ray_shard", "Traceback ...", exc) from None

            fake = type("FakeRay", (), {
                "exceptions": ray.exceptions,
                "wait": staticmethod(lambda refs, num_returns: (refs[:1], refs[1:])),
                "get": staticmethod(get),
                "cancel": staticmethod(lambda ref, force: self.cancelled.append(ref.name)),
            })
            yield from ray_tasks.ray_results(fake, {task: task for task in tasks})

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
    assert [s.shard for s in result.failed] == ["00001"] and len(result.made) == 2


def test_a_full_disk_under_ray_is_the_one_line_disk_full_exit(tmp_path, monkeypatch, disk_full_after_first_shard):
    """Ray's shards go through the same per-shard template as the local executors: a full disk under
    the second shard stops the run with the DiskFull line (not a failed shard row), finished shards kept."""
    from typer.testing import CliRunner

    from factory.files import DiskFull
    from toonfactory.cli import app

    fake_cluster(monkeypatch, None)
    out = tmp_path / "pairs"
    result = CliRunner().invoke(app, ["generate", str(QUICKSTART), "--out", str(out), "--executor", "ray",
                                      *[a for s in SMALL for a in ("--set", s)]])
    assert isinstance(result.exception, UserError) and result.exception.exit_code == 2, result.output
    message = str(result.exception)
    assert "\n" not in message and message.startswith("disk full writing ") and "shard 00001 not finished" in message
    assert f"1 of 3 shards finished and kept in {out}; free some space" in message
    assert "shard(s) failed" not in result.output
    assert sorted(p.name for p in (out / "stats").glob("*.done")) == ["00000.done"]
    # what the driver process sends for it becomes the same DiskFull in the run's process
    from factory.executors.base import stop

    assert isinstance(stop("full", message), DiskFull)


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
    import re

    said = re.search(r"what Ray said: (\S+?\.log)", last)
    assert said and Path(said.group(1)).is_file(), last  # Ray's own lines, kept for the user, named in the line
    Path(said.group(1)).unlink()


def mjpeg_stream(path: Path, sizes: list[int]) -> Path:
    """A raw MJPEG stream (JPEG frames one after another; FFmpeg finds it by its content) whose frames
    have the given sides: a stream whose frame size changes in its middle."""
    import cv2

    rng = np.random.default_rng(3)
    path.write_bytes(b"".join(cv2.imencode(".jpg", rng.integers(0, 255, (side, side, 3), dtype=np.uint8))[1].tobytes()
                              for side in sizes))
    return path


@pytest.fixture
def grows(monkeypatch):
    """OpenCV's VideoCapture, except that videos named grow.* hand over a 64x64 frame from their third
    frame on (what a reader that follows a stream's new size does; OpenCV 4.11's FFmpeg reader instead
    returns the first size, see the next test)."""
    import cv2

    real = cv2.VideoCapture

    class Growing:
        def __init__(self, name, *args):
            self.capture, self.grows = real(name, *args), Path(str(name)).stem == "grow"

        def read(self):
            position = self.capture.get(cv2.CAP_PROP_POS_FRAMES)
            ok, frame = self.capture.read()
            if ok and self.grows and position >= 2:
                frame = np.zeros((64, 64, 3), np.uint8)
            return ok, frame

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", Growing)


def test_a_video_whose_frames_grow_in_its_middle_is_skipped_with_its_reason(grows, tmp_path, caplog):
    from distill.infer import infer
    from factory.sources.video import VideoSource

    student = write_checkpoint(tmp_path / "student", ngf=4, depth=2, size=32)
    (tmp_path / "in").mkdir()
    video = mjpeg_stream(tmp_path / "in" / "grow.avi", [32] * 6)
    Image.fromarray(real_image(np.random.default_rng(6), 32)).save(tmp_path / "in" / "a.png")
    summary = infer(student, [video, tmp_path / "in" / "a.png"], tmp_path / "out")
    assert (summary["skipped"], summary["written"]) == (1, 1)
    assert f"{video}: skipped (frame_size_changed: a frame of 64x64 pixels in a stream of 32x32)" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.name.startswith(".")) == \
        ["a.png"]  # the two frames before it are no output, and no temporary file is left
    assert not [p for p in (tmp_path / "out").rglob("*.tmp*")]
    with pytest.raises(UserError, match=rf"{video}: frame_size_changed: a frame of 64x64"):
        VideoSource([video], every=1)


def test_the_track_strip_and_the_demos_webm_hold_frames_to_the_streams_size(grows, tmp_path):
    """``track_strip`` (the benchmark's picture of tracks) and the demo's WebM re-encoding read videos with
    OpenCV directly and handed a grown frame on; now every video is read through ``open_video``, which stops
    at that frame with its reason."""
    from distill.tracks import track_strip
    from factory.images import BadImage
    from toonfactory.apps.demo import to_webm

    steady = mjpeg_stream(tmp_path / "steady.avi", [32] * 6)
    assert track_strip(steady, [], [0, 1]).shape == (320, 4 * 320, 3)  # two frames and two blank tiles
    grown = mjpeg_stream(tmp_path / "grow.avi", [32] * 6)
    for read in (lambda: track_strip(grown, [], [0, 1, 2, 3]), lambda: to_webm(grown)):
        with pytest.raises(BadImage, match="frame_size_changed: a frame of 64x64 pixels in a stream of 32x32"):
            read()


def test_a_real_stream_whose_frames_grow_never_hands_over_a_larger_frame(tmp_path):
    """With the installed OpenCV a stream of 32x32 frames that turns into 1024x1024 ones is read at
    32x32 whatever it holds, or refused with its reason; never a larger array (memory stays the declared size's)."""
    from factory.images import BadImage, open_video

    capture = open_video(mjpeg_stream(tmp_path / "stream.avi", [32, 32, 1024, 1024, 32]))
    shapes = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            shapes.append(frame.shape)
    except BadImage as exc:
        assert exc.reason == "frame_size_changed"
    finally:
        capture.release()
    assert shapes and set(shapes) == {(32, 32, 3)}


from tests.test_adapt_stylegan2 import base, settings  # noqa: E402,F401 (the tiny StyleGAN2 base checkpoint)


def test_stylegan2_adaptation_removes_its_killed_exports_temporary_files_and_nothing_else(base, tmp_path):
    """The output file lives in a folder adapt does not own (its work folder is beside it), so what a
    SIGKILL during the export left there (a staged temporary file, created O_EXCL|O_NOFOLLOW and flocked)
    is removed by the next run: only the output's own, and only one whose writer is gone."""
    import fcntl

    from adapt.training import adapt

    config = settings(base, tmp_path, steps=2, checkpoint_every=2, validate_every=0)
    stale = tmp_path / ".toon.safetensors.89abcdef.tmp.safetensors"  # the export a SIGKILL cut short
    stale.write_bytes(b"half")
    live = tmp_path / ".toon.safetensors.01234567.tmp.safetensors"  # another process is writing it now
    live.write_bytes(b"being written")
    others = {".other.pt.89abcdef.tmp.pt": b"not this output's", "notes.txt": b"mine",
              ".toon.safetensors.backup": b"mine too"}
    for name, data in others.items():
        (tmp_path / name).write_bytes(data)
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        adapt(config)
    assert not stale.exists() and live.read_bytes() == b"being written"
    assert all((tmp_path / name).read_bytes() == data for name, data in others.items())
    assert config.out.is_file()


def test_stylegan2_adaptation_names_its_output_only_once_it_reads_back(base, tmp_path, monkeypatch):
    import safetensors.torch

    from adapt.training import adapt

    real = safetensors.torch.save_file

    def damaged(tensors, filename, *args, **kwargs):  # the export's file comes out unreadable
        if Path(filename).name.startswith(".toon.safetensors."):
            Path(filename).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
            return
        real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", damaged)
    config = settings(base, tmp_path, steps=2, checkpoint_every=2, validate_every=0)
    with pytest.raises(UserError, match=r"toon\.safetensors: the adapted weights did not read back"):
        adapt(config)
    assert not config.out.exists() and not list(tmp_path.glob(".toon.safetensors.*"))


def limited(limit: int | None, *args, prelude: str | None = None) -> tuple[int, str]:
    """``toonfactory ARGS`` in a process whose files may not grow past ``limit`` bytes (``ulimit -f``; None:
    no cap): each write past it fails as on a full disk (EFBIG), in Python and in native writers alike.
    ``prelude``: Python run in that process before the command (fakes for slow models)."""
    import os
    import resource
    import subprocess

    def cap():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = ["-m", "toonfactory"] if prelude is None else \
        ["-c", f"{prelude}\nimport sys\nfrom toonfactory.cli import main\nsys.argv[0] = 'toonfactory'\nmain()"]
    run = subprocess.run([sys.executable, *command, *map(str, args)], cwd=REPO, preexec_fn=cap,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"})
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize("fmt, name", [("torchscript", "student.torchscript.pt"), ("onnx", "student.onnx")])
def test_an_export_that_cannot_be_written_whole_is_one_line_naming_it(fmt, name, tmp_path):
    """TorchScript's own writer aborted the process (exit -6, not a word); ONNX's was a traceback."""
    student = write_checkpoint(tmp_path / "student", ngf=8, depth=3, size=32)
    code, output = limited(20_000, "export", student, "--format", fmt, "--out", tmp_path / "export")
    assert code == 2, output[-2000:]
    assert f"{tmp_path / 'export' / name}: File too large" in output and "Traceback" not in output, output[-2000:]
    assert not (tmp_path / "export" / name).exists()


def test_a_training_checkpoint_that_cannot_be_written_whole_is_one_line_naming_it(tmp_path):
    """safetensors reported the full disk as a SafetensorError traceback (exit 1)."""
    from distill_fixtures import write_dataset

    data = write_dataset(tmp_path / "pairs", shards=1, per_shard=4, size=32)
    code, output = limited(60_000, "train", "--data", data, "--out", tmp_path / "run",
                           *[a for s in ("distill.steps=2", "distill.size=32", "distill.save_every=2", "distill.val_every=2",
                                         "distill.student.ngf=8", "distill.student.depth=3", "tracking.mode=none")
                             for a in ("--set", s)])
    assert code == 2, output[-2000:]
    assert "Traceback" not in output and "step_0000002.tmp/" in output and ": File too large;" in output, output[-2000:]


def damaged_pairs(folder: Path) -> Path:
    """A dataset of 8 pairs whose every real.png is not an image (a damaged or hostile shard)."""
    import io
    import tarfile

    from distill_fixtures import write_dataset

    write_dataset(folder, shards=1, per_shard=8, size=32)
    tar_path = next((folder / "shards").glob("*.tar"))
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in members:
            data = b"not a png" if member.name.endswith("real.png") else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    tar_path.write_bytes(buffer.getvalue())
    return folder


@pytest.mark.parametrize("loader", [{"workers": 0}, {"workers": 0, "cache_mb": 0}, {"workers": 2, "cache_mb": 0}],
                         ids=["in-memory", "streamed", "streamed-by-2-workers"])
def test_training_on_a_damaged_shard_is_one_line_naming_the_pair(loader, tmp_path):
    """It was a BadImage (or DecompressionBomb) traceback, exit 1; from a loader worker, torch's wrapping."""
    from distill.train import train
    from tests.test_reliability import tiny

    data = damaged_pairs(tmp_path / "pairs")
    with pytest.raises(UserError) as raised:
        train(tiny(steps=2, **loader), data, tmp_path / "run")
    message = str(raised.value)
    assert "\n" not in message and "is not a readable image" in message and ".tar: pair " in message, message


def test_a_deeply_nested_review_is_one_line_for_filter_and_the_viewer(tiny_dataset, tmp_path):
    """The issue's deeply nested review.json (a RecursionError in json): named in one line, never a traceback."""
    import shutil

    from factory.dataset.review import read_review
    from factory.dataset.versions import filter_dataset

    from toonfactory.apps.viewer import Viewer

    data = Path(shutil.copytree(tiny_dataset, tmp_path / "data"))
    (data / "review.json").write_text('{"marks": ' + "[" * 100_000 + "]" * 100_000 + "}")
    for call in (lambda: read_review(data / "review.json"), lambda: Viewer(data),
                 lambda: filter_dataset(data, data / "review.json", tmp_path / "clean")):
        with pytest.raises(UserError, match=r"review\.json: not a readable JSON record \(RecursionError"):
            call()
    assert not (tmp_path / "clean").exists()


def test_a_curate_lock_whose_holder_was_killed_is_taken_over(tmp_path):
    """The issue's 'the curate lock survives SIGKILL (other commands take dead locks over)': a curate run
    killed while holding its folder leaves a lock file that the next run takes over (the case had no test)."""
    import subprocess

    from curate.store import locked

    folder = tmp_path / "curated"
    killed = subprocess.run([sys.executable, "-c", "import os, signal, sys\nfrom pathlib import Path\n"
                             "from curate.store import locked\n"
                             "with locked(Path(sys.argv[1])):\n    os.kill(os.getpid(), signal.SIGKILL)\n", str(folder)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert (folder / ".toonfactory.lock").exists()  # left behind by the killed holder
    with locked(folder):
        pass


def test_a_filtered_version_that_cannot_be_written_whole_is_one_line_naming_the_file(tiny_dataset, tmp_path):
    """dataset filter's shard copy failed without a file name (and EFBIG was a traceback)."""
    import shutil

    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark

    data = Path(shutil.copytree(tiny_dataset, tmp_path / "data"))
    mark(data, index_samples(data)[0].key, "bad")
    code, output = limited(2_000, "dataset", "filter", data, "--out", tmp_path / "clean")
    assert code == 2 and "Traceback" not in output, output[-2000:]
    assert ".tar.tmp: File too large;" in output or "clean" in output.split("File too large")[0], output[-2000:]
    assert not (tmp_path / "clean").exists() and not list(tmp_path.glob(".clean.*"))


def test_a_ray_address_where_nothing_listens_is_one_line_and_exit_2_at_once(tmp_path, monkeypatch):
    """A RAY_ADDRESS (or ``--executor ray`` on a cluster) that does not answer: Ray retried it for ever and
    the run hung with no word. Now its port is tried first (a few seconds at most): one line, exit 2, no
    Ray process started and nothing written."""
    pytest.importorskip("ray")
    from typer.testing import CliRunner

    from toonfactory.cli import app

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", address)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["generate", str(QUICKSTART), "--out", str(tmp_path / "pairs"), "--executor", "ray",
                                      *[a for s in SMALL for a in ("--set", s)]])
    assert time.monotonic() - started < 120  # a hang guard, not a speed claim: before, it never returned
    assert isinstance(result.exception, UserError) and result.exception.exit_code == 2, result.output
    message = str(result.exception)
    assert "\n" not in message and message.startswith(f"--executor ray: cannot join the cluster at RAY_ADDRESS={address}: "), message
    assert "ray start --head" in message and not (tmp_path / "pairs").exists()


@pytest.mark.slow  # the Ray driver process imports Ray and tries to join for the bounded time
def test_a_ray_address_that_accepts_but_never_answers_is_one_line_within_the_join_bound(tmp_path, monkeypatch):
    """A port that accepts a connection but is no Ray cluster (a firewall's tarpit, another service): Ray's
    join retried it for ever; now joining is bounded (RAY_JOIN_S, 120 s; 5 s here) and said in one line."""
    pytest.importorskip("ray")
    from factory import executors
    from toonfactory.recipe import load as load_recipe

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("RAY_ADDRESS", address)
        cluster = executors.RayExecutor(join_s=5)
        started = time.monotonic()
        with pytest.raises(UserError) as raised:
            cluster.start(load_recipe(QUICKSTART, SMALL), tmp_path / "pairs", 3)
        assert time.monotonic() - started < 120  # a hang guard: before, start never returned
    message = str(raised.value)
    joining = f"--executor ray: cannot join the cluster at RAY_ADDRESS={address}: "
    # the bound ran out, or Ray's own join gave up first, or its driver died just after (by timing on a busy machine)
    assert "\n" not in message and any(message.startswith(how) for how in (
        joining + "no answer within 5 s (what Ray said: ", joining + "Ray's driver gave up (exit code ",
        "--executor ray: the Ray driver process exited (code ")), message
    assert cluster.driver is None  # the driver stuck in Ray's join was ended
    Path(message.rsplit("what Ray said: ", 1)[1].rstrip(")")).unlink()


@pytest.mark.slow  # a local Ray cluster starts, then the bounded wait for a free CPU runs out
def test_a_ray_cluster_with_no_free_cpu_is_one_line_within_the_bound(tmp_path, monkeypatch):
    """A cluster whose CPUs are all busy, or that has none (a head started with ``--num-cpus=0``): the first
    task was queued by Ray for ever and start() never returned; now the wait is bounded (RAY_ROOM_S, 120 s;
    3 s here) and said in one line naming the option. A real local cluster of 0 CPUs."""
    pytest.importorskip("ray")
    import signal

    from factory import executors
    from toonfactory.recipe import load as load_recipe

    def hung(*_):
        raise TimeoutError("RayExecutor.start did not return: the run would hang")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cluster = executors.RayExecutor(cpus=0, room_s=3)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(150)  # a hang guard, not a speed claim
    try:
        with pytest.raises(UserError) as raised:
            cluster.start(load_recipe(QUICKSTART, SMALL).recipe, tmp_path / "pairs", 3)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        cluster.close()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(
        "--executor ray: no task could start on the local Ray cluster within 3 s: it has 0 CPUs, 0 free (a shard takes "
        "1 CPU); give it CPUs with --workers N; what Ray said: "), message
    assert cluster.driver is None and not (tmp_path / "pairs").exists()
    Path(message.rsplit("what Ray said: ", 1)[1]).unlink()


def test_identical_uploads_from_two_tabs_are_deleted_only_once_neither_tab_holds_them(tmp_path):
    """Gradio keeps identical uploads (same bytes, same name) at one path: one tab's end deleted the photo
    under the other tab, which had run it, or had stored it and not run it yet."""
    from toonfactory.apps import Sessions

    sessions = Sessions(tmp_path / "cache")
    shared = tmp_path / "cache" / "9f2c" / "me.png"

    def store() -> None:  # what gradio does for each tab's upload of the photo: the same path
        shared.parent.mkdir(parents=True, exist_ok=True)
        shared.write_bytes(b"photo")
        sessions.uploaded([str(shared)])

    store(), store()
    sessions.claim("a", shared), sessions.claim("b", shared)  # both tabs ran it
    sessions.end("a")
    assert shared.is_file(), "tab a's end deleted the photo tab b holds"
    sessions.end("b")
    assert not shared.exists()

    sessions.open("b")
    store()
    sessions.claim("a", shared)
    store()  # tab b stores the same photo; it has not run it when tab a ends
    sessions.end("a")
    assert shared.is_file(), "tab a's end deleted the photo tab b stored and has not run yet"
    sessions.claim("b", shared)
    sessions.end("b")
    assert not shared.exists()


def test_two_tabs_running_one_photo_keep_it_until_both_have_ended(tmp_path, monkeypatch):
    """The same through the page: two sessions upload the same photo (gradio stores it once) and run it;
    the first session's end leaves it to the second, whose end deletes it."""
    from gradio_client import Client, handle_file

    photo = tmp_path / "me.png"
    Image.fromarray(real_image(np.random.default_rng(3), 48)).save(photo)
    with demo_page(tmp_path, monkeypatch) as (url, cache):
        first, second = Client(url, verbose=False, download_files=False), Client(url, verbose=False, download_files=False)
        made = []
        for client in (first, second):
            outputs = client.predict(handle_file(str(photo)), api_name="/on_image")
            made.append([Path(o["path"] if isinstance(o, dict) else o) for o in outputs[:3]])
        stored = holding(cache, photo.read_bytes())
        assert len(stored) == 1, stored  # one file for both sessions
        first.close()
        assert eventually(lambda: not any(p.exists() for p in made[0]))  # the first session ended
        assert stored[0].is_file(), "the first session's end deleted the photo the second one holds"
        second.close()
        assert eventually(lambda: not stored[0].exists() and not any(p.exists() for p in made[1]))
    assert photo.is_file()


def test_the_viewer_reads_its_dataset_again_once_it_changed_on_disk(tmp_path):
    """The viewer indexed its dataset once, at start: a shard a re-run replaced was shown by the old byte
    ranges (other pairs' bytes, or none) until the page was restarted. Now it follows the dataset's files."""
    import os

    from distill_fixtures import write_dataset

    from factory.dataset.reader import index_samples, read_image_field
    from toonfactory.apps.viewer import ALL, Viewer, build

    data = write_dataset(tmp_path / "pairs", shards=2, per_shard=2, size=32, seed=0)
    viewer = Viewer(data)
    assert len(viewer.entries) == 4 and not viewer.current()  # unchanged: not read again
    page = build(data)
    refresh = next(f.fn for f in page.fns.values() if getattr(f.fn, "__name__", "") == "refresh")
    assert len(refresh(None, "", "", ALL, ALL, ALL, "key", False, 1)[2]) == 4
    other = write_dataset(tmp_path / "other", shards=1, per_shard=3, size=32, seed=1)
    os.replace(other / "shards" / "000000.tar", data / "shards" / "000000.tar")  # as a re-run replaces a shard
    assert viewer.current() and len(viewer.entries) == 5
    key = "s000_00002"  # a pair only the new shard holds
    real = read_image_field(data, {e.key: e for e in index_samples(data)}[key], "real")
    assert np.array_equal(viewer.tile(key)[:, :32], real)
    gallery, _, keys, summary = refresh(None, "", "", ALL, ALL, ALL, "key", False, 1)
    assert len(keys) == 5 and key in keys and "5 of 5 pairs" in summary
    assert np.array_equal(np.asarray(gallery[keys.index(key)][0])[:, :32], real)


def test_a_shard_that_is_not_a_tar_is_one_line_for_inspect_and_the_viewer(tmp_path):
    """tarfile says why it cannot open a file once per compression method, a line each: the 'one line
    naming the file' was five lines."""
    import os

    from distill_fixtures import write_dataset
    from typer.testing import CliRunner

    from toonfactory.apps.viewer import Viewer
    from toonfactory.cli import app

    data = write_dataset(tmp_path / "pairs", shards=2, per_shard=2, size=32)
    (data / "stats").mkdir()
    (data / "shards" / "000001.tar").write_bytes(os.urandom(4096))
    with pytest.raises(UserError) as raised:
        Viewer(data)
    result = CliRunner().invoke(app, ["inspect", str(data)])
    assert isinstance(result.exception, UserError), result.output
    for message in (str(raised.value), str(result.exception)):
        assert "\n" not in message and message.startswith(f"{data / 'shards' / '000001.tar'}: not a readable tar shard ("), message
