"""Curation: slicing and provenance, filters with reasons, selection, actor cleaning, overrides, re-runs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from curate.actors import PhotoFaces, judge
from curate.features import identity_features
from curate.filters import (LONE_MIN_SCORE, Thresholds, drawing_difference, duplicate_of, phash, reject_reason,
                                    same_drawing, text_score)
from curate.ingest import ChainDetector, Detection, crop_square, merge, slices, tiles
from curate.run import CropOptions, Summary, cluster_characters, ingest_pages, select_characters
from curate.select import choose, cluster, purity, similarity_to
from curate.store import Workspace, locked
from factory.errors import ModelLoadError, UserError
from factory.faces import Face
from factory.images import read_image
from toonfactory.cli import app


def test_slices_cover_tall_images_with_overlap():
    parts = slices(5775, 1600, 320)
    assert parts[0].y0 == 0 and parts[-1].y1 == 5775
    assert all(b.y0 < a.y1 and a.y1 - b.y0 >= 320 for a, b in zip(parts, parts[1:]))
    assert [(p.y0, p.y1) for p in slices(900, 1600, 320)] == [(0, 900)]
    with pytest.raises(UserError, match="--slice-height"):
        slices(5000, 300, 300)


def test_merge_keeps_one_face_per_place_and_who_agreed():
    same = [Detection(np.array([10., 1000, 110, 1100]), 1.0, "dlib", 0),
            Detection(np.array([12., 1002, 108, 1104]), 2.0, "anime", 1),
            Detection(np.array([14., 1004, 106, 1096]), 0.9, "anime", 0)]
    other = Detection(np.array([500., 50, 560, 110]), 0.7, "mediapipe", 0)
    merged = merge(same + [other], ["anime", "mediapipe", "dlib"])
    assert len(merged) == 2
    face = next(d for d in merged if d.box[1] > 900)
    assert face.detector == "anime" and face.agreed == ["dlib"]


def test_strip_faces_found_across_slices_with_provenance(assets):
    tile = read_image(assets / "anime/grid36.jpg")[:512, 512:1024]  # one face for the cascade
    strip = np.vstack([tile, np.full((300, 512, 3), 255, np.uint8), tile])  # 1324 px tall
    chain = ChainDetector("anime", cascade=assets / "models/lbpcascade_animeface.xml", slice_height=700, overlap=200)
    found = chain.detect(strip)
    assert len(found) == 2
    top, bottom = sorted(found, key=lambda d: d.box[1])
    assert bottom.box[1] - top.box[1] == pytest.approx(812, abs=8)  # same face, moved back to page rows
    assert top.slice == 0 and bottom.slice >= 1 and top.detector == "anime"


def test_crop_is_square_with_margin_and_white_outside_the_page():
    page = np.zeros((100, 100, 3), np.uint8)
    crop = crop_square(page, np.array([0., 0, 40, 20]), margin=1.5)
    assert crop.shape == (60, 60, 3)
    assert crop[0, 0].tolist() == [255, 255, 255] and crop[30, 30].tolist() == [0, 0, 0]


def _face_like(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((192, 192, 3), 230, np.uint8)
    for _ in range(12):
        centre = tuple(int(v) for v in rng.integers(30, 160, 2))
        cv2.circle(image, centre, int(rng.integers(8, 30)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return image


def _found(side: float, detector: str = "mediapipe", score: float = 0.9, agreed: tuple[str, ...] = ()) -> Detection:
    return Detection(box=np.array([0.0, 0.0, side, side]), score=score, detector=detector, slice=0, agreed=list(agreed))


def test_filters_record_reasons():
    limits = Thresholds(min_face=40)
    sharp = _face_like()
    assert reject_reason(_found(100), sharp, limits)[0] is None
    assert reject_reason(_found(20), sharp, limits)[0] == "too_small"
    assert reject_reason(_found(100), cv2.GaussianBlur(sharp, (0, 0), 6), limits)[0] == "blurry"
    bubble = np.full((192, 192, 3), 255, np.uint8)
    for row, words in enumerate(["WELL, YOU", "COULD SAY", "THAT IT'S", "BASED ON"]):
        cv2.putText(bubble, words, (40, 75 + 16 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    reason, scores = reject_reason(_found(100), bubble, limits)
    assert reason == "text" and scores["text"] > limits.max_text


@pytest.mark.slow
def test_the_text_filter_drops_speech_bubbles_and_no_sprite_face_at_any_scale(assets):
    chain = ChainDetector("anime", cascade=assets / "models/lbpcascade_animeface.xml")
    limits = Thresholds()
    for path in sorted((assets / "characters/renpy").glob("*/*.png")):
        for scale in (1.0, 0.6, 1.3):
            image = cv2.resize(read_image(path), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            for det in chain.detect(image):
                assert text_score(crop_square(image, det.box)) <= limits.max_text, (path.name, scale)
    labels = json.loads((Path(__file__).parents[1] / "benchmarks/comic_faces.json").read_text())["pages"]
    page = read_image(assets / "comics/peppercarrot/sample_page_0.jpg")
    bubbles = [text_score(crop_square(page, np.array(b, float))) for b in labels["peppercarrot/sample_page_0.jpg"]["text"]]
    assert sum(score > limits.max_text for score in bubbles) >= 9, bubbles  # "Gotcha!" is lettered too large


def test_a_weak_detection_no_other_detector_saw_is_not_a_face():
    limits, crop = Thresholds(), _face_like()
    weak = LONE_MIN_SCORE["anime"] - 0.2
    assert reject_reason(_found(100, "anime", weak), crop, limits)[0] == "not_a_face"
    assert reject_reason(_found(100, "anime", weak, agreed=("dlib",)), crop, limits)[0] is None  # seen twice
    assert reject_reason(_found(100, "anime", weak + 0.4), crop, limits)[0] is None
    assert reject_reason(_found(100, "dlib", 0.01), crop, limits)[0] is None  # dlib's score does not tell
    assert reject_reason(_found(100, "anime", weak), crop, Thresholds(lone_min_score={}))[0] is None


def test_duplicates_across_scales_but_not_other_drawings():
    drawing, other = _face_like(1), _face_like(2)
    smaller = cv2.resize(drawing[8:184, 4:180], (120, 120), interpolation=cv2.INTER_AREA)  # another slice / box / scale
    assert same_drawing(drawing, smaller) and not same_drawing(drawing, other)
    limits = Thresholds()
    vectors = np.stack([identity_features(other), identity_features(drawing)])
    crops = [other, drawing]
    assert duplicate_of(smaller, phash(smaller), identity_features(smaller), [phash(c) for c in crops], vectors,
                        lambda i: crops[i], limits) == 1
    assert duplicate_of(smaller, phash(smaller), identity_features(smaller), [], vectors, lambda i: None, limits) is None


@pytest.mark.slow
def test_every_expression_of_a_sprite_is_kept_and_each_resaved_copy_dropped(assets, tmp_path):
    sprites = sorted((assets / "characters/renpy").glob("*/*.png"))
    copies = tmp_path / "copies"
    copies.mkdir()
    for i, path in enumerate(sprites):  # resized 0.6x-1.3x, re-saved as JPEG or PNG
        image = read_image(path)
        scale = (0.8, 0.6, 1.3)[i % 3]
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(copies / f"{path.stem}{'.jpg' if i % 2 else '.png'}"), small[..., ::-1])
    chain = ChainDetector("anime,mediapipe", cascade=assets / "models/lbpcascade_animeface.xml", tile_sides=())
    ws, summary = Workspace(tmp_path / "out"), Summary()
    ingest_pages(ws, sprites + sorted(copies.iterdir()), chain, CropOptions(), summary)
    faces = ws.manifest["faces"]
    first = {Path(f["file"]).stem: fid for fid, f in sorted(faces.items()) if f["file"] in map(str, sprites)}
    assert len(first) == 13 and all(not faces[fid]["reason"] for fid in first.values())
    dropped = {(Path(f["file"]).stem, f["reason"]) for f in faces.values() if Path(f["file"]).parent == copies}
    assert all((stem, f"duplicate of {fid}") in dropped for stem, fid in first.items())
    assert all(r == f"duplicate of {first[stem]}" for stem, r in dropped if r.startswith("duplicate"))


def test_drawing_difference_tells_a_copy_from_another_expression(assets):
    chain = ChainDetector("anime", cascade=assets / "models/lbpcascade_animeface.xml")
    normal, surprised = (read_image(assets / f"characters/renpy/sylvie/sylvie_blue_{e}.png") for e in ("normal", "surprised"))
    crop = lambda image: crop_square(image, chain.detect(image)[0].box)  # noqa: E731
    copy = cv2.resize(normal, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    limit = Thresholds().max_drawing_difference
    assert drawing_difference(crop(normal), crop(copy)) < limit / 2
    assert drawing_difference(crop(normal), crop(surprised)) > limit  # only the mouth differs


def test_choose_top_and_threshold():
    scores = np.array([0.9, 0.5, 0.95, 0.7])
    assert choose(scores, 2, None).tolist() == [True, False, True, False]
    assert choose(scores, None, 0.6).tolist() == [True, False, True, True]
    assert choose(scores, 1, 0.6).tolist() == [False, False, True, False]


def test_features_tell_sprite_characters_from_anime_distractors(assets):
    chain = ChainDetector("anime", cascade=assets / "models/lbpcascade_animeface.xml")

    def crops(paths):
        return [crop_square(img, chain.detect(img)[0].box) for img in map(read_image, paths)]

    sylvie = np.stack([identity_features(c) for c in crops(sorted((assets / "characters/renpy/sylvie").glob("*.png")))])
    eileen = np.stack([identity_features(c) for c in crops(sorted((assets / "characters/renpy/eileen").glob("*.png")))])
    grid = read_image(assets / "anime/grid36.jpg")
    tiles = [np.ascontiguousarray(grid[r:r + 512, c:c + 512]) for r in (0, 1536) for c in (0, 1024, 2048)]
    others = np.stack([identity_features(crop_square(t, d.box)) for t in tiles for d in chain.detect(t)])
    scores = similarity_to(sylvie[:1], np.concatenate([sylvie[1:], eileen, others]))
    assert scores[:7].min() > scores[7:].max()  # every other Sylvie ranks above everyone else
    labels = cluster(np.concatenate([sylvie, eileen]), 0.12)
    assert purity(labels, ["sylvie"] * 8 + ["eileen"] * 3) == 1.0 and len(set(labels.tolist())) == 2


def _photo(name, vectors, sizes=None):
    sizes = sizes or [100] * len(vectors)
    faces = [Face(np.array([0., 0, s, s]), 1.0) for s in sizes]
    return PhotoFaces(name, faces, np.array(vectors, np.float32).reshape(len(vectors), 128))


def test_actor_cleaning_keeps_the_majority_and_the_matching_face():
    rng = np.random.default_rng(0)
    actor, stranger = rng.normal(size=128), rng.normal(size=128)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    near = lambda: unit(unit(actor) + rng.normal(scale=0.02, size=128))  # noqa: E731
    photos = [_photo(f"a{i}", [near()]) for i in range(5)]
    photos += [_photo("namesake", [unit(stranger)]), _photo("group", [unit(stranger), near()]),
               _photo("copy", [photos[0].vectors[0]]), _photo("tiny", [near()], [12]), _photo("empty", [])]
    verdicts = {v.name: v for v in judge(photos)}
    assert all(verdicts[f"a{i}"].keep for i in range(5))
    assert verdicts["group"].keep and verdicts["group"].face == 1 and verdicts["group"].notes == ["2 faces"]
    assert {n: verdicts[n].reason for n in ("namesake", "copy", "tiny", "empty")} == {
        "namesake": "other_identity", "copy": "duplicate", "tiny": "too_small", "empty": "no_face"}


class BoxDetector:
    """Stands in for the chain: one 'face' at a fixed place on every page."""

    def detect(self, image):
        return [Detection(np.array([40., 40, 140, 140]), 1.0, "fake", 0)]


def _pages(folder, seeds):
    folder.mkdir(exist_ok=True)
    for seed in seeds:
        page = np.full((220, 220, 3), 255, np.uint8)
        page[20:200, 0:192] = _face_like(seed)[:180]
        cv2.imwrite(str(folder / f"page{seed}.png"), page[..., ::-1])
    return sorted(folder.glob("*.png"))


def test_overrides_and_incremental_runs(tmp_path):
    pages = _pages(tmp_path / "pages", [1, 2, 3])
    out = tmp_path / "out"
    options = CropOptions(side=96, limits=Thresholds(min_face=20))
    ws = Workspace(out)
    first = Summary()
    ingest_pages(ws, pages, BoxDetector(), options, first)
    ids = list(ws.manifest["faces"])
    assert first.new_sources == 3 and len(ids) == 3
    face = ws.manifest["faces"][ids[0]]
    assert face["file"] == str(pages[0]) and face["box"] == [40, 40, 140, 140] and face["detector"] == "fake"
    refs = {"hero": np.stack([ws.features[ids[0]]])}
    select_characters(ws, refs, top=1, threshold=None, summary=first)
    assert [p.stem for p in (out / "characters/hero").iterdir()] == [ids[0]]
    assert (out / "review/characters/hero.html").is_file()

    (out / "overrides.json").write_text(json.dumps({"characters/hero": {ids[0]: "drop", ids[2]: "keep"}}))
    ws = Workspace(out)
    again = Summary()
    ingest_pages(ws, _pages(tmp_path / "pages", [1, 2, 3, 4]), BoxDetector(), options, again)
    select_characters(ws, refs, top=1, threshold=None, summary=again)
    assert again.reused_sources == 3 and again.new_sources == 1 and len(ws.manifest["faces"]) == 4
    kept = sorted(p.stem for p in (out / "characters/hero").iterdir())
    assert kept == [ids[2]]  # the person's decisions stand; the pool crop of the dropped face stays
    assert (out / "faces" / f"{ids[0]}.png").is_file()
    decisions = ws.manifest["groups"]["characters/hero"]["decisions"]
    assert decisions[ids[0]]["by"] == "override" and decisions[ids[2]]["keep"]

    (out / "overrides.json").write_text(json.dumps({"characters/hero": {ids[0]: "maybe"}}))
    with pytest.raises(UserError, match="overrides.json"):
        Workspace(out).overrides()


def test_a_feature_file_cut_short_or_a_pickle_is_named_not_a_traceback(tmp_path):
    """A features.npz cut short ended the next curate run in a BadZipFile traceback."""
    ws = Workspace(tmp_path)
    ingest_pages(ws, _pages(tmp_path / "pages", [1]), BoxDetector(), CropOptions(side=96, limits=Thresholds(min_face=20)),
                 Summary())
    ws.save()
    whole = (tmp_path / "features.npz").read_bytes()
    for damaged in (whole[:200], pickle.dumps({"a": 1})):
        (tmp_path / "features.npz").write_bytes(damaged)
        with pytest.raises(UserError, match=r"features.npz: unreadable feature file"):
            Workspace(tmp_path)


def _add_face(ws: Workspace, face_id: str, vector: np.ndarray) -> None:
    ws.manifest["faces"][face_id] = {"kind": "drawn", "reason": "", "crop": ws.write_crop(face_id, _face_like())}
    ws.features[face_id] = vector / np.linalg.norm(vector)


def test_clustering_counts_faces_left_alone_and_places_them_when_a_match_arrives(tmp_path):
    ws = Workspace(tmp_path)
    axes = np.eye(8)
    for face_id, vector in [("a1", axes[0]), ("a2", axes[0] + 0.05 * axes[1]), ("b1", axes[2]), ("b2", axes[2] + 0.05 * axes[3]),
                            ("odd", axes[4])]:
        _add_face(ws, face_id, vector)
    first = Summary()
    cluster_characters(ws, max_distance=0.12, min_size=2, summary=first)
    assert first.unclustered == 1
    assert sorted(first.groups) == ["characters/cluster_00", "characters/cluster_01"]
    assert all(kept == 2 for kept, _ in first.groups.values())

    _add_face(ws, "odd_twin", axes[4] + 0.05 * axes[5])
    again = Summary()
    cluster_characters(ws, max_distance=0.12, min_size=2, summary=again)
    assert again.unclustered == 0
    decisions = ws.manifest["groups"]["characters/cluster_02"]["decisions"]
    assert sorted(decisions) == ["odd", "odd_twin"] and all(d["keep"] for d in decisions.values())


def test_two_runs_on_one_folder_are_refused(tmp_path):
    with locked(tmp_path):
        with pytest.raises(UserError, match="in use by `toonfactory curate`"):
            with locked(tmp_path):
                pass
    with locked(tmp_path):  # released
        pass


@pytest.mark.slow  # importing spandrel's architectures takes seconds
def test_superres_on_shared_weights_tiles_and_refuses_pickles(assets, tmp_path):
    from curate.superres import SuperResolver

    model = SuperResolver(assets / "models/realesr-animevideov3.pth", tile=64, pad=12)
    tile = read_image(assets / "anime/grid36.jpg")[:512, 512:1024]
    small = cv2.resize(tile, (128, 128), interpolation=cv2.INTER_AREA)
    tiled = model.upscale(small).astype(float)
    model.tile = 512
    whole = model.upscale(small).astype(float)
    assert tiled.shape == (512, 512, 3) and np.abs(tiled - whole).mean() < 1.0
    bicubic = cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC).astype(float)
    error = lambda image: np.mean((image - tile) ** 2)  # noqa: E731
    assert error(whole) < 0.95 * error(bicubic)  # real weights, right architecture: better than bicubic
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(print))
    with pytest.raises(ModelLoadError):
        SuperResolver(evil)


def test_cli_mistakes_exit_2_and_write_nothing(tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["curate", "comics", str(tmp_path / "missing"), "--out", str(out), "--tracking", "none"])
    assert isinstance(result.exception, UserError) and "missing" in str(result.exception) and not out.exists()
    page = _pages(tmp_path / "p", [1])[0]
    result = runner.invoke(app, ["curate", "comics", str(page), "--out", str(out), "--reference", "nobody"])
    assert isinstance(result.exception, UserError) and "NAME=IMAGE" in str(result.exception) and not out.exists()
    assert "overrides.json" in runner.invoke(app, ["curate", "--help"]).output


@pytest.mark.parametrize("command, option, value, problem", [
    ("comics", "--margin", "nan", "finite"), ("comics", "--margin", "1000", "less than or equal to 4"),
    ("comics", "--size", "100000000", "less than or equal to 4096"), ("comics", "--threshold", "nan", "finite"),
    ("comics", "--cluster-distance", "-1", "greater than or equal to 0"), ("comics", "--tracking", "bogus", "'offline'"),
    ("actors", "--radius", "nan", "finite"), ("actors", "--tracking", "bogus", "'offline'")])
def test_a_mistaken_number_or_mode_is_named_before_anything_is_written(tmp_path, command, option, value, problem):
    """--margin nan and --size 1e8 ended in a traceback (a 30 PB crop); --tracking bogus was refused only after
    the pages were curated into --out; --threshold nan kept no face and said nothing."""
    pages = tmp_path / "p"
    _pages(pages, [1])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["curate", command, str(pages), "--out", str(out), option, value])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception).startswith(f"{option} ") and problem in str(result.exception)
    assert not out.exists()


def test_a_named_detector_that_cannot_run_is_an_error_and_the_default_says_what_it_left_out(tmp_path):
    runner = CliRunner()
    page = _pages(tmp_path / "p", [1])[0]
    result = runner.invoke(app, ["curate", "comics", str(page), "--out", str(tmp_path / "a"), "--detector", "anime,dlib",
                                 "--tracking", "none"])
    assert isinstance(result.exception, UserError) and "anime:PATH" in str(result.exception)
    assert not (tmp_path / "a").exists()
    result = runner.invoke(app, ["curate", "comics", str(page), "--out", str(tmp_path / "b"), "--tracking", "none"])
    assert result.exit_code == 0, result.output
    assert "anime detector is off: no --cascade given" in result.output
    assert json.loads((tmp_path / "b/manifest.json").read_text())["faces"] == {}  # random circles: no face, no crash


def test_tiles_cover_the_image_with_half_overlap():
    assert tiles(400, 500, 512) == []  # one window already is the whole image
    corners = tiles(1300, 900, 512)
    assert {x for _, x in corners} == {0, 256, 388} and {y for y, _ in corners} == {0, 256, 512, 768, 788}
    covered = np.zeros((1300, 900), bool)
    for y, x in corners:
        covered[y:y + 512, x:x + 512] = True
    assert covered.all()


def test_mediapipe_finds_a_small_face_on_a_large_page_through_tiles():
    """On a whole 1600 px page a 110 px face is too small for mediapipe's downscaled input; on a tile it is not."""
    import skimage.data

    face = cv2.resize(skimage.data.astronaut()[0:300, 100:400], (110, 110), interpolation=cv2.INTER_AREA)
    page = np.full((1600, 1600, 3), 255, np.uint8)
    page[1100:1210, 500:610] = face
    assert ChainDetector("mediapipe", tile_sides=()).detect(page) == []
    found = ChainDetector("mediapipe").detect(page)
    assert len(found) == 1 and found[0].detector == "mediapipe"
    x0, y0, x1, y1 = found[0].box
    assert 500 <= (x0 + x1) / 2 <= 610 and 1100 <= (y0 + y1) / 2 <= 1210


def test_boxes_of_every_detector_follow_the_anime_cascades_scale():
    """One face found by mediapipe or dlib is cropped as if the anime cascade had found it (same centre)."""
    from curate.ingest import BOX_SCALE, Slice, _on_page

    part = Slice(1, 300, 900)
    for name in ("anime", "mediapipe", "dlib"):
        det = _on_page(Face(box=np.array([100.0, 50.0, 200.0, 150.0]), score=1.0), name, part, x0=10)
        assert det.box[:2] + det.box[2:] == pytest.approx([2 * 160.0, 2 * 400.0])  # moved to the page, centre kept
        assert det.size == pytest.approx(100 * BOX_SCALE[name])
    assert BOX_SCALE["anime"] == 1.0 and BOX_SCALE["mediapipe"] > 1.3 and BOX_SCALE["dlib"] > 1.3


def test_pages_are_appended_to_a_journal_that_a_killed_run_leaves_readable(tmp_path):
    out = tmp_path / "out"
    ws = Workspace(out)
    ingest_pages(ws, _pages(tmp_path / "pages", [1, 2, 3]), BoxDetector(), CropOptions(side=96, limits=Thresholds(min_face=20)),
                 Summary())
    assert not (out / "manifest.json").exists()  # nothing rewritten per page
    lines = (out / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 3
    with open(out / "journal.jsonl", "a") as journal:
        journal.write(lines[0][: len(lines[0]) // 2])  # the line a kill cut short
    again = Workspace(out)
    assert again.manifest["faces"] == ws.manifest["faces"] and again.manifest["sources"] == ws.manifest["sources"]
    assert all(np.array_equal(again.features[f], ws.features[f].astype(np.float32)) for f in ws.features)
    again.save()
    assert not (out / "journal.jsonl").exists()
    assert Workspace(out).manifest["faces"] == ws.manifest["faces"]
