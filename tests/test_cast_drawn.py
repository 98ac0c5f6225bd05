"""Casting drawn characters: detector specs (CLI and recipes), auto unwarp, calibration, face choice, gallery sync."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from casting.rank import CLEAR_MATCH_Z, aggregate, calibrate, cast, effective_top
from casting.realify import HUMAN_SPREAD, InverseWebtoonWarp, parse_unwarp
from factory.errors import UserError
from factory.faces import DetectorChain, Face, parse_detector_spec
from factory.images import read_image
from factory.stages.face_crop import FacesConfig
from test_cast import COLOURS, ColourEmbedder, SquareDetector, actors_dir, build, face_image, save  # noqa: F401 (fixture)
from warping import landmarks as lm
from warping.profile import load_profile

CASCADE = "models/lbpcascade_animeface.xml"


def test_detector_spec_parses_chains_and_names_the_option(tmp_path):
    assert parse_detector_spec("dlib, mediapipe") == [("dlib", {}), ("mediapipe", {})]
    assert parse_detector_spec(f"dlib,anime:{tmp_path}/a.xml") == [("dlib", {}), ("anime", {"cascade": tmp_path / "a.xml"})]
    assert parse_detector_spec("anime", cascade="c.xml") == [("anime", {"cascade": Path("c.xml")})]
    for spec, message in [("dlib,,mediapipe", "names no detector"), ("dlib,yolo", "unknown detector 'yolo'"),
                          ("anime", "needs its cascade"), ("dlib:x.xml", "only the anime detector takes a path")]:
        with pytest.raises(UserError, match=f"--detector: .*{message}"):
            parse_detector_spec(spec)
    with pytest.raises(UserError, match="--detector: .*missing.xml"):
        DetectorChain(f"dlib,anime:{tmp_path / 'missing.xml'}")


def test_cli_detector_spec_mistakes_exit_2_and_write_nothing(tmp_path):
    from toonfactory.cli import app

    image = save(face_image(COLOURS["ann"]), tmp_path / "q.png")
    runner = CliRunner()
    for spec in ("anime", f"anime:{tmp_path / 'nope.xml'}", "mediapipe,bogus"):
        result = runner.invoke(app, ["cast", "gallery", str(tmp_path), "--out", str(tmp_path / "g"), "--detector", spec])
        assert isinstance(result.exception, UserError) and "--detector" in str(result.exception), result.output
        assert not (tmp_path / "g").exists()
    result = runner.invoke(app, ["cast", "rank", str(image), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "r"),
                                 "--face", "second"])
    assert isinstance(result.exception, UserError) and "--face" in str(result.exception)
    result = runner.invoke(app, ["cast", "rank", str(image), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "r"),
                                 "--unwarp", "sideways"])
    assert isinstance(result.exception, UserError) and "--unwarp" in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_recipe_faces_section_takes_a_chain(tmp_path):
    cascade = tmp_path / "c.xml"
    config = FacesConfig(detector="dlib,mediapipe,anime", cascade=cascade)
    assert config.detector == "dlib,mediapipe,anime"
    with pytest.raises(ValueError, match="needs `cascade`"):
        FacesConfig(detector="dlib,anime")
    with pytest.raises(ValueError, match="unknown"):
        FacesConfig(detector="dlib,yolo")


def test_chain_falls_back_to_the_anime_cascade_and_meshes_its_boxes(assets):
    grid = read_image(assets / "anime" / "grid36.jpg")
    chain = DetectorChain(f"dlib,mediapipe,anime:{assets / CASCADE}", min_size=24)
    tile = grid[1024:1536, 1536:2048]  # tile 15: neither dlib nor mediapipe finds this face
    assert DetectorChain("dlib,mediapipe", min_size=24).detect(tile) == []
    name, found = chain.detect_named(tile)
    assert name == "anime" and found[0].scheme == "mediapipe478" and found[0].landmarks.shape == (478, 2)
    eyes = found[0].keypoints5()[:2]
    x0, y0, x1, y1 = found[0].box
    assert (x0 < eyes[:, 0]).all() and (eyes[:, 0] < x1).all() and (y0 < eyes[:, 1]).all() and (eyes[:, 1] < y1).all()
    assert chain.spec.startswith("dlib,mediapipe,anime:")


def _points(shape: np.ndarray, scale=80.0, angle=0.2, shift=(200.0, 150.0)) -> np.ndarray:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    return shape @ rot.T + np.array(shift)


def test_profile_strength_is_recovered_whatever_the_pose_in_the_picture():
    profile = load_profile()
    human = _points(profile.mean_real)
    assert abs(profile.strength_of(human)) < 1e-6
    for strength in (0.5, 1.0, 1.4):
        toon = profile.target(human, "forward", strength)
        assert profile.strength_of(toon) == pytest.approx(strength, abs=0.02)


def test_auto_unwarp_leaves_human_faces_and_undoes_webtoon_geometry():
    profile = load_profile()
    warp = InverseWebtoonWarp(None, strength=None)
    human = Face(np.array([100.0, 80, 300, 300]), 1.0, _points(profile.mean_real), "dlib68")
    fitted, undone = warp.strength_for(human)
    assert abs(fitted) < 1e-6 and undone == 0.0
    toon = Face(human.box, 1.0, profile.target(human.landmarks, "forward", 1.2), "dlib68")
    fitted, undone = warp.strength_for(toon)
    assert fitted == pytest.approx(1.2, abs=0.02) and undone == pytest.approx(1.2 - HUMAN_SPREAD, abs=0.02)
    assert warp.strength_for(Face(human.box, 1.0))[1] == 0.0  # no landmarks: nothing to fit, nothing undone
    image = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    assert warp(image, human, 0.0) is image
    assert parse_unwarp("auto").label == "auto" and parse_unwarp("default").label == "1"


@pytest.mark.slow
def test_auto_unwarp_on_real_photos_and_webtoon_characters(assets):
    """Real photos are never unwarped; most webtoon characters are (their fitted strength is reported)."""
    warp, chain = parse_unwarp("auto"), DetectorChain("dlib,mediapipe", min_size=24)
    people = ["img1.jpg", "img2.jpg", "img4.jpg", "img17.jpg", "img30.jpg", "img55.jpg"]
    characters = ["boxer_1.png", "castle_2.png", "finger_1.png", "ssam_2.png", "weak_1.png", "freedraw_2.png"]
    real = [warp.strength_for(chain.detect(read_image(assets / "faces" / "deepface" / n))[0]) for n in people]
    toon = [warp.strength_for(chain.detect(read_image(assets / "webtoon" / "characters" / n))[0]) for n in characters]
    assert all(undone == 0.0 for _, undone in real), real
    assert np.mean([fitted for fitted, _ in real]) < 0.3
    assert sum(undone > 0 for _, undone in toon) >= 4, toon
    assert np.mean([fitted for fitted, _ in toon]) > 0.8


def test_calibration_is_a_z_score_against_the_other_actors():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.3, 0.9, (4, 7))
    z = calibrate(scores)
    for q in range(4):
        for a in range(7):
            others = np.delete(scores[q], a)
            assert z[q, a] == pytest.approx((scores[q, a] - others.mean()) / others.std())
    # a drawn face that looks like several actors at once: high raw similarities, no clear winner
    crowded = np.array([[0.93, 0.929, 0.93, 0.90, 0.905, 0.928, 0.91]])
    clear = np.array([[0.95, 0.70, 0.65, 0.72, 0.68, 0.66, 0.71]])
    assert calibrate(crowded).max() < CLEAR_MATCH_Z < calibrate(clear).max()
    assert np.isnan(calibrate(scores[:, :2])).all()  # two actors: no impostor spread
    assert effective_top(5, 3) == 2 and effective_top(5, 1) == 1 and effective_top(2, 40) == 2


def test_borda_rarely_ties_where_plain_votes_did():
    rng = np.random.default_rng(0)
    ties = 0
    for _ in range(50):
        rows = aggregate(rng.uniform(0.5, 0.9, (4, 12)), [f"a{i}" for i in range(12)], top=5)
        ties += rows[0]["points"] == rows[1]["points"]
    assert ties <= 15  # plain top-5 votes tie for first in most of these (4 images, 12 actors)


MORE_ACTORS = {"eve": (40, 200, 200), "fay": (200, 40, 200), "gus": (200, 200, 200), "hal": (40, 40, 40)}  # the cube's corners


def test_verdict_and_report_say_no_clear_match_for_a_character_nobody_plays(actors_dir, tmp_path):
    save(face_image(COLOURS["dee"]), actors_dir / "dee" / "0.png")
    few, _ = build(actors_dir, tmp_path / "few")
    bob = save(face_image(COLOURS["bob"], shift=2), tmp_path / "bob.png")
    result = cast(few, [bob], ColourEmbedder(), SquareDetector())
    assert result.overall[0]["actor"] == "bob" and result.verdict == "uncalibrated (fewer than 8 actors)"
    for name, colour in MORE_ACTORS.items():
        save(face_image(colour), actors_dir / name / "0.png")
    gallery, _ = build(actors_dir, tmp_path / "g")
    olive = save(face_image((120, 120, 40)), tmp_path / "olive.png")  # as close to ann, bob, dee and hal
    result = cast(gallery, [olive], ColourEmbedder(), SquareDetector(), top=5)
    assert result.settings["top"] == 5 and result.settings["top_asked"] == 5
    assert result.verdict == "no clear match"
    result = cast(gallery, [bob], ColourEmbedder(), SquareDetector(), top=5)
    assert result.verdict == "match" and result.overall[0]["actor"] == "bob"
    from casting.report import write_report

    data = json.loads(write_report(result, gallery, tmp_path / "r")["json"].read_text())
    image = data["images"][0]
    assert image["detected_by"] == "squares" and image["realified_by"] is None and image["unwarp"] is None
    assert image["verdict"] == "match" and image["confidence_z"] > data["settings"]["calibration"]["clear_match_z"]
    assert image["face"] == "largest of 1"


def test_face_choice_for_pictures_with_several_people(actors_dir, tmp_path):
    gallery, _ = build(actors_dir, tmp_path / "g")
    pair = np.concatenate([face_image(COLOURS["ann"]), face_image(COLOURS["cid"])], axis=1)
    path = save(pair, tmp_path / "pair.png")
    largest = cast(gallery, [path], ColourEmbedder(), SquareDetector(), face="largest")
    left = cast(gallery, [path], ColourEmbedder(), SquareDetector(), face="1")
    both = cast(gallery, [path], ColourEmbedder(), SquareDetector(), face="all")
    with pytest.raises(UserError, match="pair.png: no face 3 .found 2.*b.png: no face 3 .found 1"):
        cast(gallery, [path, save(face_image(COLOURS["bob"]), tmp_path / "b.png")], ColourEmbedder(), SquareDetector(), face=3)
    assert [i.chosen for i in both.images] == ["face 1 from the left of 2", "face 2 from the left of 2"]
    assert [i.ranking[0]["actor"] for i in both.images] == ["ann", "cid"]
    assert left.images[0].ranking[0]["actor"] == "ann" and left.images[0].chosen == "face 1 from the left of 2"
    assert len(largest.images) == 1 and largest.images[0].chosen == "largest of 2"


def test_gallery_sync_drops_removed_photos_and_actors(actors_dir, tmp_path):
    build(actors_dir, tmp_path / "g")
    (actors_dir / "bob" / "1.png").unlink()
    for photo in (actors_dir / "cid").iterdir():
        photo.unlink()
    (actors_dir / "cid").rmdir()
    gallery, update = build(actors_dir, tmp_path / "g")
    assert sorted(Path(r["image"]).name for r in update.removed) == ["0.png", "1.png", "1.png"]
    assert gallery.actor_names() == ["ann", "bob"] and sorted(gallery.actors) == ["ann", "bob"]
    stored = json.loads((tmp_path / "g" / "gallery.json").read_text())
    assert len(stored["entries"]) == 3 and sorted(stored["actors"]) == ["ann", "bob"]
    thumbs = {p.name for p in (tmp_path / "g" / "faces").iterdir()}
    assert thumbs == {Path(e["face"]).name for e in stored["entries"]}
    _, again = build(actors_dir, tmp_path / "g")
    assert again.removed == [] and again.reused == 3

