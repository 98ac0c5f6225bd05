"""A path that does not exist is refused as "not found", naming the option or argument that gave it,
before any work; so is an --assign that names no face."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint  # noqa: E402

from factory.errors import UserError  # noqa: E402
from factory.faces import DetectorChain  # noqa: E402
from tests.test_cast import COLOURS, build, face_image, save  # noqa: E402
from toonfactory.cli import app  # noqa: E402

runner = CliRunner()


def refusal(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, UserError), result.output
    return str(result.exception)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return write_checkpoint(tmp_path / "ckpt", ngf=4, depth=2, size=32)


def test_missing_paths_are_named_by_their_option(tmp_path, checkpoint):
    missing = tmp_path / "nothere"
    assert refusal("inspect", missing) == f"DATASET_DIR {missing}: not found"
    cascade = tmp_path / "nope.xml"
    photo = tmp_path / "in" / "a.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), real_image(np.random.default_rng(0), 64))
    assert refusal("infer", checkpoint, photo, "--out", tmp_path / "o", "--mode", "face", "--detector", "anime",
                   "--cascade", cascade) == f"--cascade {cascade}: not found"
    assert refusal("curate", "comics", photo.parent, "--out", tmp_path / "c", "--cascade", cascade,
                   "--tracking", "none") == f"--cascade {cascade}: not found"
    for name in ("ann", "bob", "cid"):
        save(face_image(COLOURS[name]), tmp_path / "actors" / name / "0.png")
    build(tmp_path / "actors", tmp_path / "g")
    assert refusal("cast", "rank", photo, missing / "x.jpg", "--gallery", tmp_path / "g",
                   "--out", tmp_path / "r") == f"IMAGES {missing / 'x.jpg'}: not found"
    assert not any((tmp_path / name).exists() for name in ("o", "c", "r"))
    with pytest.raises(UserError, match=r"--detector: .*nope.xml: cannot load model: file not found; expected an OpenCV"):
        DetectorChain(f"anime:{cascade}")


def test_an_assigned_track_id_that_no_video_holds_is_refused_naming_it(tmp_path, checkpoint):
    from video_fixtures import two_face_frames, write_video

    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), real_image(np.random.default_rng(0), 64))
    message = refusal("infer", checkpoint, photo, "--out", tmp_path / "o", "--mode", "face", "--assign", "1=keep")
    assert message.startswith("--assign 1=...: track ids number the faces tracked in videos")
    assert not (tmp_path / "o").exists()
    video = write_video(tmp_path / "two.mp4", [image for image, _ in two_face_frames(8)])
    message = refusal("infer", checkpoint, video, "--out", tmp_path / "o", "--mode", "face", "--embedder", "none",
                      "--detect-every", "4", "--assign", "1=keep", "--assign", "9=keep", "--assign", "12=keep")
    assert message.startswith(f"--assign 9, 12: no such track id in the videos (tracks 1, 2; see {tmp_path / 'o' / 'two.tracks.json'})")


def test_the_error_line_names_a_path_with_brackets_as_it_is(tmp_path, checkpoint, monkeypatch, capsys):
    """The error line went through rich markup: `[draft]a.png` was printed as `a.png`, another file's name."""
    from toonfactory.cli import main

    missing = tmp_path / "[draft]a.png"
    monkeypatch.setattr(sys, "argv", ["toonfactory", "infer", str(checkpoint), str(missing), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert f"error: {missing}: input not found" in capsys.readouterr().err.replace("\n", "")
