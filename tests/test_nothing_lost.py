"""Nothing lost, second round (issue 28): each test is one way an adversary lost a user's files or
wrote outside a folder. New interfaces are imported inside the tests, so on older code each test fails
on its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint  # noqa: E402

from factory.errors import UserError  # noqa: E402
from tests.test_cast import COLOURS, ColourEmbedder, SquareDetector, face_image, save  # noqa: E402

runner = CliRunner()


def app():
    from toonfactory.cli import app as root

    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gallery_of(actors: Path, out: Path):
    from casting.gallery import collect_inputs, update_gallery

    inputs, attrs = collect_inputs(actors)
    return update_gallery(out, inputs, attrs, ColourEmbedder(), SquareDetector())


@pytest.fixture
def actors(tmp_path) -> Path:
    for name in ("ann", "bob"):
        save(face_image(COLOURS[name]), tmp_path / "actors" / name / "1.png")
    return tmp_path / "actors"


def test_a_gallery_never_deletes_a_users_photos_in_a_folder_it_did_not_make(actors, tmp_path):
    mine = tmp_path / "photos"
    (mine / "faces").mkdir(parents=True)
    (mine / "faces" / "family_photo_2019.jpg").write_bytes(b"family")
    (mine / "faces" / "wedding.jpg").write_bytes(b"wedding")
    with pytest.raises(UserError, match=r"not made by `toonfactory cast gallery`"):
        gallery_of(actors, mine)
    assert snapshot(mine) == {"faces/family_photo_2019.jpg": b"family", "faces/wedding.jpg": b"wedding"}
    gallery_of(actors, tmp_path / "g")  # its own folder: a file it did not make there is still kept
    (tmp_path / "g" / "faces" / "wedding.jpg").write_bytes(b"wedding")
    gallery_of(actors, tmp_path / "g")
    assert (tmp_path / "g" / "faces" / "wedding.jpg").read_bytes() == b"wedding"


def test_a_gallery_whose_face_leaves_its_folder_is_refused_and_nothing_is_copied(actors, tmp_path):
    from casting.gallery import Gallery

    gallery_of(actors, tmp_path / "g")
    meta_path = tmp_path / "g" / "gallery.json"
    meta = json.loads(meta_path.read_text())
    (tmp_path / "secret.txt").write_text("secret")
    meta["entries"][0]["face"] = "../../../../../../../../" + str(tmp_path / "secret.txt").lstrip("/")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"gallery.json.*leaves its folder"):
        Gallery.load(tmp_path / "g")
    meta["entries"] = [{"nonsense": 1}]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"gallery.json: malformed gallery"):
        Gallery.load(tmp_path / "g")


def test_a_gallery_inside_its_actors_folder_is_refused(actors, tmp_path):
    for out in (actors, actors / "g"):
        result = runner.invoke(app(), ["cast", "gallery", str(actors), "--out", str(out)])
        assert isinstance(result.exception, UserError), result.output
        assert "input" in str(result.exception)
    assert not (actors / "g").exists() and not (actors / "faces").exists()
