"""Verdicts calibrated on drawn impostors: the levels, the rule, and a small gallery with drawings on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from casting.calibration import CLEAR_MATCH_LIKENESS, SHRINK_MEASURES, DrawnLevels, draw_photo, shrunk
from casting.gallery import Gallery, collect_inputs, update_gallery
from casting.rank import MIN_ACTORS_FOR_VERDICT, cast, verdict
from factory.faces import DetectorChain
from factory.images import read_image
from factory.models.embedding import build_embedder


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_levels_put_other_actors_drawings_at_0_and_the_actors_own_at_1():
    # actor a: two photos along x; b along y; c along z. Drawings lean a little off their person.
    vectors = np.stack([unit([1, 0, 0]), unit([1, 0.1, 0]), unit([0, 1, 0]), unit([0.1, 1, 0]), unit([0, 0, 1])])
    owners = np.array(["a", "a", "b", "b", "c"])
    drawn = np.stack([unit([1, 0.3, 0.3]), unit([1, 0.4, 0.2]), unit([0.3, 1, 0.3]), np.full(3, np.nan), unit([0.3, 0.3, 1])])
    levels = DrawnLevels.measure(vectors, owners, drawn)
    impostor = np.mean([(drawn[i] @ vectors[owners == x].T).mean() for i in (0, 1, 2, 4) for x in "abc" if x != owners[i]])
    assert np.isclose(levels.impostor, impostor)
    # a has two measures, b one (its second drawing is NaN: no face found), c none (one photo): c takes the pooled
    # level, a and b their measures pulled toward it as if they had SHRINK_MEASURES more at the pooled level
    measures = {"a": [drawn[0] @ vectors[1], drawn[1] @ vectors[0]], "b": [drawn[2] @ vectors[3]]}
    pooled = np.mean([*measures["a"], *measures["b"]])
    for actor, own in measures.items():
        expected = (np.sum(own) + SHRINK_MEASURES * pooled) / (len(own) + SHRINK_MEASURES)
        assert np.isclose(levels.genuine[actor], expected)
    assert np.isclose(levels.genuine["c"], pooled)
    genuine_a = levels.genuine["a"]
    assert np.isclose(levels.likeness("a", levels.impostor), 0) and np.isclose(levels.likeness("a", genuine_a), 1)
    assert DrawnLevels.measure(vectors[:2], owners[:2], drawn[:2]) is None  # one actor: no impostors


def test_drawn_levels_compare_drawings_with_the_drawings_of_other_photos_and_only_raise_a_likeness():
    vectors = np.stack([unit([1, 0, 0]), unit([1, 0.1, 0]), unit([0, 1, 0]), unit([0.1, 1, 0])])
    owners = np.array(["a", "a", "b", "b"])
    drawn = np.stack([unit([1, 0.3, 0.3]), unit([1, 0.4, 0.2]), unit([0.3, 1, 0.3]), unit([0.2, 1, 0.4])])
    levels = DrawnLevels.measure(vectors, owners, drawn)
    sims = drawn @ drawn.T  # a drawing against the drawing of the same actor's other photo, never its own
    assert levels.drawn_genuine == shrunk({"a": [sims[0, 1], sims[1, 0]], "b": [sims[2, 3], sims[3, 2]]}, ["a", "b"])
    assert np.isclose(levels.drawn_impostor, np.mean([sims[i, [j for j in range(4) if owners[j] != owners[i]]].mean()
                                                      for i in range(4)]))
    photo = levels.likeness("a", 0.9)
    like_drawings = levels.likeness("a", 0.9, levels.drawn_genuine["a"])  # as like the drawings as a's own: 1
    assert np.isclose(like_drawings, (photo + 1) / 2) and like_drawings > photo
    assert levels.likeness("a", 0.9, levels.drawn_impostor) == photo  # unlike the drawings: the photos decide
    assert levels.likeness("a", 0.9, float("nan")) == photo


def test_an_actor_resting_on_few_drawings_is_pulled_toward_the_pooled_level_and_one_on_many_barely():
    rng = np.random.default_rng(0)
    # 16 actors of 8 drawings whose true levels spread a little about 0.92, and one of 2 photos (2 measures from one
    # pair) whose drawings both lost identity: a level of 0.87 on its own
    measures = {f"p{i}": list(0.92 + rng.normal(0, 0.01) + rng.normal(0, 0.015, 8)) for i in range(16)}
    measures["kit"] = [0.89, 0.85]
    pooled = np.mean([s for v in measures.values() for s in v])
    levels = shrunk(measures, [*measures, "alex"])
    assert levels["alex"] == pytest.approx(pooled)  # one photo, no measure: the pool
    # kit moves 3/5 of the way to the pool (2 measures against SHRINK_MEASURES = 3), an actor of 8 measures 3/11
    assert levels["kit"] - 0.87 == pytest.approx((pooled - 0.87) * SHRINK_MEASURES / (2 + SHRINK_MEASURES))
    assert levels["kit"] > 0.87 + 0.02
    for actor in measures:
        if actor != "kit":
            own = np.mean(measures[actor])
            assert levels[actor] - own == pytest.approx((pooled - own) * SHRINK_MEASURES / (8 + SHRINK_MEASURES))
    # a drawn stranger 0.875 like kit's photos was a full match to him (likeness 1.1 against 0.87); now it is not
    drawn = DrawnLevels(impostor=0.845, genuine={"kit": 0.87})
    assert drawn.likeness("kit", 0.875) > 1
    assert DrawnLevels(impostor=0.845, genuine=levels).likeness("kit", 0.875) < CLEAR_MATCH_LIKENESS


def test_the_likeness_gives_the_verdict_whatever_the_gallery_size():
    assert verdict(None, 2, likeness=CLEAR_MATCH_LIKENESS) == "match"
    assert verdict(5.0, 30, likeness=CLEAR_MATCH_LIKENESS - 0.01) == "no clear match"
    assert verdict(5.0, MIN_ACTORS_FOR_VERDICT - 1).startswith("uncalibrated")  # a gallery without drawings, as before


def _obama_biden(assets, root):
    """(gallery with drawings of obama's and biden's train photos, its embedder, detector), and a drawing of a
    stranger (deepface img3, in neither actor's photos) at ``root/stranger.png``."""
    faces = assets / "faces"
    for photo in [*(faces / "face_recognition/train/obama").iterdir(), *(faces / "face_recognition/train/biden").iterdir()]:
        (root / "actors" / photo.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "actors" / photo.parent.name / f"{photo.stem}.png"), _small(read_image(photo))[..., ::-1])
    embedder = build_embedder("dlib", colour="gray", jitters=0)
    detector = DetectorChain("dlib,mediapipe", min_size=40)
    inputs, attrs = collect_inputs(root / "actors")
    update_gallery(root / "g", inputs, attrs, embedder, detector, draw=True)
    stranger = read_image(faces / "deepface/img3.jpg")
    cv2.imwrite(str(root / "stranger.png"), draw_photo(stranger, detector.detect(stranger)[0], "stranger")[..., ::-1])
    return Gallery.load(root / "g"), embedder, detector


def test_a_two_actor_gallery_with_drawings_refuses_a_drawn_stranger_and_matches_a_photo(assets, tmp_path):
    faces = assets / "faces"
    gallery, embedder, detector = _obama_biden(assets, tmp_path)
    assert gallery.drawn.shape == gallery.vectors.shape and not np.isnan(gallery.drawn).any()

    refused = cast(gallery, [tmp_path / "stranger.png"], embedder, detector)
    assert refused.verdict == "no clear match" and refused.likeness < CLEAR_MATCH_LIKENESS
    calibration = refused.to_json()["settings"]["calibration"]
    assert (calibration["clear_match_likeness"], calibration["shrink_measures"]) == (CLEAR_MATCH_LIKENESS, SHRINK_MEASURES)

    matched = cast(gallery, [faces / "face_recognition/test/obama1.jpg"], embedder, detector)
    assert matched.overall[0]["actor"] == "obama" and matched.verdict == "match"
    assert matched.images[0].to_json()["likeness"] >= CLEAR_MATCH_LIKENESS


def test_a_characters_verdict_reads_the_winners_likeness_averaged_over_its_images(assets, tmp_path):
    gallery, embedder, detector = _obama_biden(assets, tmp_path)
    images = [assets / "faces/face_recognition/test/obama1.jpg", tmp_path / "stranger.png"]
    alone = [cast(gallery, [image], embedder, detector) for image in images]
    both = cast(gallery, images, embedder, detector)
    winner = both.overall[0]["actor"]
    assert winner == "obama" and [item.ranking[0]["actor"] for item in both.images] == ["obama", "obama"]
    levels, owners = gallery.drawn_levels(), np.array([e["actor"] for e in gallery.entries])
    likeness = [levels.likeness(winner, float((gallery.vectors[owners == winner] @ item.query.vector).mean()),
                                float((gallery.drawn[owners == winner] @ item.query.vector).mean())) for item in both.images]
    assert both.likeness == pytest.approx(np.mean(likeness), abs=1e-3)
    assert both.verdict == ("match" if np.mean(likeness) >= CLEAR_MATCH_LIKENESS else "no clear match")
    # the photo alone is a match, the stranger's drawing alone is not: together they are judged by the mean
    assert [a.verdict for a in alone] == ["match", "no clear match"]


def test_drawn_queries_of_actors_match_and_drawn_strangers_do_not(assets, tmp_path):
    faces = assets / "faces"
    people = {"person00": ["img1", "img2", "img4", "img5"], "person06": ["img29", "img30", "img31", "img32"],
              "person10": ["img20"]}
    photos = [(who, faces / f"deepface/{name}.jpg") for who, names in people.items() for name in names]
    photos += [(p.parent.name, p) for who in ("obama", "biden") for p in (faces / f"face_recognition/train/{who}").iterdir()]
    for who, photo in photos:
        (tmp_path / "actors" / who).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "actors" / who / f"{photo.stem}.png"), _small(read_image(photo))[..., ::-1])
    embedder = build_embedder("dlib", colour="gray", jitters=0)
    detector = DetectorChain("dlib,mediapipe", min_size=40)
    inputs, attrs = collect_inputs(tmp_path / "actors")
    update_gallery(tmp_path / "g", inputs, attrs, embedder, detector, draw=True)
    gallery = Gallery.load(tmp_path / "g")
    levels = gallery.drawn_levels()
    assert levels.drawn_impostor < min(levels.drawn_genuine.values())

    # other photos of two actors, and of two people in no folder (deepface person03 and person02), drawn
    for name, actor in (("img33", "person06"), ("img6", "person00"), ("img3", None), ("img8", None)):
        image = _small(read_image(faces / f"deepface/{name}.jpg"))
        cv2.imwrite(str(tmp_path / f"{name}.png"), draw_photo(image, detector.detect(image)[0], name)[..., ::-1])
        result = cast(gallery, [tmp_path / f"{name}.png"], embedder, detector)
        first = result.images[0].ranking[0]
        assert first["score"] == pytest.approx((first["photo_score"] + first["drawn_score"]) / 2, abs=1e-4)
        assert result.likeness >= levels.likeness(first["actor"], first["photo_score"]) - 1e-3  # drawings only raise it
        if actor:
            assert (first["actor"], result.verdict) == (actor, "match"), (name, result.likeness)
        else:
            assert result.verdict == "no clear match", (name, first["actor"], result.likeness)


def _small(image: np.ndarray) -> np.ndarray:
    """At most 640 px: detection on the 2204 px photos takes most of the time."""
    scale = min(1.0, 640 / max(image.shape[:2]))
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
