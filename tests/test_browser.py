"""The pages in a real browser: Debian's Chromium driven by Playwright (no browser download).

Without Chromium or Playwright these tests skip with the reason; with TOONFACTORY_REQUIRE_BROWSER=1
(as in CI) that is a failure instead. Screenshots go to $TOONFACTORY_SCREENSHOTS when set.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
CHROMIUM_NAMES = ("chromium", "chromium-browser")
PORTRAIT = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no Chromium on PATH (Debian: apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing_browser()
    if reason:
        if os.environ.get("TOONFACTORY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (TOONFACTORY_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    executable = next(shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(*args) -> tuple[subprocess.Popen, str]:
    """Start a `toonfactory` page server and wait until it answers; (process, url)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "toonfactory", *map(str, args), "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("the server did not answer within 240 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def screenshot(page, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("TOONFACTORY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)
    return folder / name


def wait_for(condition, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def test_view_filters_by_a_score_and_marks_a_pair(browser, tiny_dataset, tmp_path):
    data = Path(shutil.copytree(tiny_dataset, tmp_path / "data"))
    from factory.dataset.reader import index_samples

    sharpness = sorted(e.meta["gates"]["sharpness"] for e in index_samples(data))
    threshold = (sharpness[3] + sharpness[4]) / 2  # four of the eight pairs are at least this sharp
    proc, url = serve("view", data)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        summary = page.locator("#summary")
        wait_for(lambda: "8 of 8 pairs" in summary.inner_text())
        assert page.locator("#pairs img").count() == 8
        page.locator("#score-min input, #score-min textarea").first.fill(f"{threshold:.2f}")
        wait_for(lambda: "4 of 8 pairs" in summary.inner_text())
        wait_for(lambda: page.locator("#pairs img").count() == 4)

        page.locator("#pairs img").first.click()
        key_box = page.locator("#key input, #key textarea").first
        key = wait_for(lambda: key_box.input_value())
        page.locator("#note input, #note textarea").first.fill("eyes smeared")
        page.locator("#mark").click()
        review_file = data / "review.json"
        wait_for(lambda: review_file.is_file() and key in json.loads(review_file.read_text())["marks"])
        assert json.loads(review_file.read_text())["marks"][key]["note"] == "eyes smeared"
        assert sharpness.index(next(e.meta["gates"]["sharpness"] for e in index_samples(data) if e.key == key)) >= 4
        wait_for(lambda: "marked" in page.locator("#status").inner_text())
        shot = screenshot(page, tmp_path, "viewer.png")
        assert shot.stat().st_size > 20_000
        assert not list((data / "shards").glob("*.tmp")) and len(list((data / "shards").glob("*.tar"))) == 2
    finally:
        stop(proc)


def test_demo_shows_the_students_output_for_an_uploaded_photo(browser, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from distill_fixtures import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "student", ngf=8, depth=3, size=64)
    whole = write_checkpoint(tmp_path / "whole", ngf=8, depth=3, size=64, seed=1)
    proc, url = serve("demo", checkpoint, "--whole", whole)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#photo")
        page.set_input_files("#photo input[type=file]", str(PORTRAIT))
        page.wait_for_selector("#photo img", timeout=30_000)
        page.locator("#run-photo").click()
        for name in ("whole", "face", "person-only"):
            page.wait_for_selector(f"#out-{name} img", timeout=180_000)
        timing = page.locator("#photo-timing").inner_text()
        assert "ms/frame" in timing and "whole-frame student" in timing
        assert page.get_by_text("whole (whole-frame student)").count() >= 1
        size = page.locator("#out-whole img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size == [512, 600]  # the whole frame at its own size (Grace Hopper is 512 x 600)
        screenshot(page, tmp_path, "demo.png")
    finally:
        stop(proc)
