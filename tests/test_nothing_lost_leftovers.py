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
