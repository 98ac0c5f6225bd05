"""`toonfactory style fit` and `style preview`: what they write, and the mistakes they refuse (writing nothing)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from factory.errors import UserError
from factory.images import encode_png, read_image
from factory.teachers.webtoon_style import BOUNDS, DEFAULT_STYLE, load_style
from tests.conftest import REPO
from toonfactory.cli import app

NOT_ART = {"jisoo.jpg", "yooa.jpg", "paint_boy.jpg"}


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    path.write_bytes(encode_png(skimage.data.astronaut()))
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, *words: str) -> None:
    assert result.exit_code != 0 and isinstance(result.exception, UserError), result.output
    for word in words:
        assert word in str(result.exception)


def test_fit_writes_a_style_the_teacher_loads_and_preview_compares_it(assets, tmp_path, photo):
    folder = assets / "webtoon" / "characters"
    names = sorted(p.name for p in folder.iterdir() if p.name not in NOT_ART)
    exclude = sorted(set(names) - set(names[::3][:8]) | NOT_ART)
    style_path = tmp_path / "styles" / "eight.json"
    result = invoke("style", "fit", "--toon", folder, "--out", style_path, "--name", "eight",
                    *[a for name in exclude for a in ("--exclude", name)])
    assert result.exit_code == 0, result.output
    style = load_style(style_path)
    assert style.name == "eight" and set(style.ranges) == set(BOUNDS)
    assert style.fitted_on["images"] == 8 and style.fitted_on["excluded"] == exclude
    assert not list(style_path.parent.glob("*.tmp"))

    sheet_path = tmp_path / "preview.png"
    result = invoke("style", "preview", photo, "--style", style_path, "--out", sheet_path, "--size", 128)
    assert result.exit_code == 0, result.output
    sheet = read_image(sheet_path)
    assert sheet.shape[1] == 3 * 128 and sheet.shape[0] > 128  # photo | default | eight, under headers
    assert "photo | default | eight" in result.output.replace("\n", " ")


def test_mistakes_exit_with_the_option_named_and_write_nothing(tmp_path, photo):
    pickled = tmp_path / "style.json"
    pickled.write_bytes(pickle.dumps({"ranges": {}}))
    out = tmp_path / "out.png"
    refused(invoke("style", "preview", photo, "--style", pickled, "--out", out), "--style", str(pickled))
    refused(invoke("style", "preview", pickled, "--style", DEFAULT_STYLE, "--out", out), "PHOTO")
    blank = tmp_path / "blank.png"
    blank.write_bytes(encode_png(np.full((96, 96, 3), 200, np.uint8)))
    refused(invoke("style", "preview", blank, "--style", DEFAULT_STYLE, "--out", out), "no face", str(blank))
    refused(invoke("style", "preview", photo, "--style", DEFAULT_STYLE, "--out", tmp_path / "out.jpg"), "--out")
    assert not out.exists()

    few = tmp_path / "few"
    few.mkdir()
    for n in range(3):
        (few / f"{n}.png").write_bytes(encode_png(np.full((64, 64, 3), 90 + n, np.uint8)))
    style_out = tmp_path / "fitted.json"
    refused(invoke("style", "fit", "--toon", tmp_path / "nowhere", "--out", style_out), "--toon")
    refused(invoke("style", "fit", "--toon", few, "--out", style_out), "8-300 images")
    refused(invoke("style", "fit", "--toon", few, "--out", style_out, "--exclude", "absent.png"), "--exclude")
    refused(invoke("style", "fit", "--toon", few, "--out", tmp_path), "--out")
    assert not style_out.exists()


@pytest.mark.slow
def test_the_installed_command_previews_the_packaged_default(tmp_path, photo):
    out = tmp_path / "sheet.png"
    done = subprocess.run([sys.executable, "-m", "toonfactory", "style", "preview", str(photo), "--style",
                           str(DEFAULT_STYLE), "--out", str(out), "--size", "96"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_image(out).shape[1] == 3 * 96
    bad = subprocess.run([sys.executable, "-m", "toonfactory", "style", "fit", "--toon", str(tmp_path / "none"),
                          "--out", str(tmp_path / "s.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--toon" in bad.stderr and not (tmp_path / "s.json").exists()
