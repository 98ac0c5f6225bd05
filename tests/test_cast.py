"""Virtual casting: gallery format and updates, vote aggregation, filters, bad inputs, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from casting.gallery import GALLERY_FORMAT, Gallery, collect_inputs, read_attributes, update_gallery
from casting.rank import actor_scores, aggregate, calibrate, cast, parse_where, per_actor, query_faces
from casting.report import write_report
from factory.errors import UserError
from factory.faces import Face

# Synthetic "people": a face is a coloured square; its identity is its colour. The fake detector
# finds one face per coloured square on a black background, the fake embedder embeds the colour.
COLOURS = {"ann": (200, 40, 40), "bob": (40, 200, 40), "cid": (40, 40, 200), "dee": (200, 200, 40)}


def face_image(colour, shift=0, faces=1) -> np.ndarray:
    image = np.zeros((96, 96 * faces, 3), np.uint8)
    for i in range(faces):
        image[24:72, 96 * i + 24:96 * i + 72] = np.clip(np.array(colour) + shift, 0, 255)
    return image


class SquareDetector:
    spec = "squares"

    def detect_named(self, image):
        return "squares", self.detect(image)

    def detect(self, image):
        found = []
        for i in range(image.shape[1] // 96):
            tile = image[:, 96 * i:96 * (i + 1)]
            if tile.max() > 0:
                found.append(Face(box=np.array([96 * i + 24.0, 24, 96 * i + 72, 72]), score=1.0))
        return found


class ColourEmbedder:
    name, version, dim, settings = "colour", "1", 3, {}

    def __init__(self):
        self.embedded = 0

    def align(self, image, face):
        x0, y0, x1, y1 = face.box.astype(int)
        return image[y0:y1, x0:x1]

    def embed_aligned(self, crops):
        self.embedded += len(crops)
        vectors = np.array([c.reshape(-1, 3).mean(0) - 120 for c in crops], np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def save(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture
def actors_dir(tmp_path) -> Path:
    root = tmp_path / "actors"
    for name in ("ann", "bob", "cid"):
        for k in range(2):
            save(face_image(COLOURS[name], shift=5 * k), root / name / f"{k}.png")
    return root


def build(actors: Path, out: Path, embedder=None, attributes=None):
    inputs, attrs = collect_inputs(actors, attributes)
    return update_gallery(out, inputs, attrs, embedder or ColourEmbedder(), SquareDetector())


def test_gallery_format_roundtrips(actors_dir, tmp_path):
    gallery, update = build(actors_dir, tmp_path / "g")
    assert (update.added, update.reused, update.rejected) == (6, 0, [])
    meta = json.loads((tmp_path / "g" / "gallery.json").read_text())
    assert meta["format"] == GALLERY_FORMAT
    assert meta["embedder"] == {"name": "colour", "version": "1", "dim": 3, "settings": {}}
    assert sorted(meta["actors"]) == ["ann", "bob", "cid"]
    for entry in meta["entries"]:
        assert Path(entry["image"]).is_file() and len(entry["sha256"]) == 12
        assert (tmp_path / "g" / entry["face"]).is_file()
    loaded = Gallery.load(tmp_path / "g")
    assert loaded.vectors.shape == (6, 3) and loaded.vectors.dtype == np.float32
    np.testing.assert_allclose(loaded.vectors, gallery.vectors)
    assert [e["actor"] for e in loaded.entries] == [e["actor"] for e in gallery.entries]


def test_adding_actors_does_not_recompute_the_rest(actors_dir, tmp_path):
    build(actors_dir, tmp_path / "g")
    save(face_image(COLOURS["dee"]), actors_dir / "dee" / "0.png")
    counting = ColourEmbedder()
    gallery, update = build(actors_dir, tmp_path / "g", counting)
    assert counting.embedded == 1
    assert (update.added, update.reused) == (1, 6)
    assert gallery.actor_names() == ["ann", "bob", "cid", "dee"]
    # a changed photo is re-embedded in place of its old entry
    save(face_image(COLOURS["bob"], shift=-20), actors_dir / "bob" / "0.png")
    gallery, update = build(actors_dir, tmp_path / "g", counting)
    assert (update.replaced, update.added, counting.embedded) == (1, 1, 2)
    assert len(gallery.entries) == 7 == len(Gallery.load(tmp_path / "g").vectors)


def test_gallery_from_another_embedder_is_refused(actors_dir, tmp_path):
    build(actors_dir, tmp_path / "g")
    other = ColourEmbedder()
    other.version = "2"
    with pytest.raises(UserError, match="embedder"):
        build(actors_dir, tmp_path / "g", other)


def test_bad_gallery_photos_are_reported_not_used(actors_dir, tmp_path):
    save(np.zeros((96, 96, 3), np.uint8), actors_dir / "ann" / "blank.png")
    save(face_image(COLOURS["ann"], faces=2), actors_dir / "ann" / "two.png")
    (actors_dir / "bob" / "broken.jpg").write_bytes(b"not a jpeg")
    gallery, update = build(actors_dir, tmp_path / "g")
    reasons = {Path(r["image"]).name: r["reason"] for r in update.rejected}
    assert reasons == {"blank.png": "no_face", "two.png": "several_faces (2)", "broken.jpg": "not_an_image"}
    assert len(gallery.entries) == 6
    assert len(json.loads((tmp_path / "g" / "gallery.json").read_text())["rejected"]) == 3
    # unchanged rejects are remembered, not retried
    counting = ColourEmbedder()
    _, update = build(actors_dir, tmp_path / "g", counting)
    assert counting.embedded == 0 and update.reused == 9


def test_csv_input_with_attributes(tmp_path):
    for name in ("ann", "bob"):
        save(face_image(COLOURS[name]), tmp_path / "photos" / f"{name}.png")
    (tmp_path / "actors.csv").write_text("image,actor,gender\nphotos/ann.png,ann,female\nphotos/bob.png,bob,male\n")
    gallery, _ = build(tmp_path / "actors.csv", tmp_path / "g")
    assert gallery.actors == {"ann": {"gender": "female"}, "bob": {"gender": "male"}}
    assert gallery.actor_names({"gender": "FEMALE"}) == ["ann"]
    (tmp_path / "bad.csv").write_text("photo,actor\nx.png,ann\n")
    with pytest.raises(UserError, match="bad.csv.*image"):
        collect_inputs(tmp_path / "bad.csv")


@pytest.mark.parametrize("content, problem", [
    ("image,actor\nphotos/ann.png,ann\nphotos/bob.png,\n", "line 3: column 'actor' is empty"),
    ("image,actor\nphotos/ann.png\n", "line 2: column 'actor' is empty"),
    (",actor\n", "missing column"), (b"\xff\xd8\xff\xe0 a photo", "not a UTF-8 CSV file")])
def test_a_csv_row_without_an_actor_or_a_file_that_is_no_csv_is_named(tmp_path, content, problem):
    """An empty actor became an actor named '' that rank could cast; a short row or a photo given as the CSV
    ended in an AttributeError or UnicodeDecodeError traceback."""
    csv_file = tmp_path / "actors.csv"
    csv_file.write_bytes(content if isinstance(content, bytes) else content.encode())
    for read in (collect_inputs, read_attributes) if "missing" not in problem else (collect_inputs,):
        with pytest.raises(UserError, match=f"actors.csv: {problem}"):
            read(csv_file)


def test_a_folder_of_actor_folders_is_refused_by_name_or_taken_apart_when_asked(tmp_path):
    from toonfactory.cli import app

    root = tmp_path / "people"
    for part in ("train", "test"):
        for name in ("ann", "bob"):
            save(face_image(COLOURS[name], shift=5 if part == "test" else 0), root / part / name / "1.png")
    save(face_image(COLOURS["cid"]), root / "cid" / "1.png")
    with pytest.raises(UserError, match=r"people/test: an actor folder that holds folders of images \(ann, bob\).*--nested"):
        collect_inputs(root)
    inputs, attrs = collect_inputs(root, nested=True)
    assert sorted(attrs) == ["ann", "bob", "cid"]  # train/ann and test/ann are one actor
    assert sorted(Path(i.image).relative_to(root).as_posix() for i in inputs if i.actor == "ann") == ["test/ann/1.png",
                                                                                                       "train/ann/1.png"]
    runner = CliRunner()
    for command in (["cast", "gallery", str(root)], ["curate", "actors", str(root), "--tracking", "none"]):
        result = runner.invoke(app, [*command, "--out", str(tmp_path / "out")])
        assert isinstance(result.exception, UserError) and "people/test" in str(result.exception), command
        assert not (tmp_path / "out").exists()


def test_the_shared_face_recognition_folder_is_refused_naming_train(assets):
    with pytest.raises(UserError, match="face_recognition/train: an actor folder"):
        collect_inputs(assets / "faces/face_recognition")
    inputs, _ = collect_inputs(assets / "faces/face_recognition", nested=True)
    assert {i.actor for i in inputs} >= {"obama", "biden", "kit_harington", "rose_leslie", "alex_lacamoire"}


def test_borda_votes_weight_ranks_and_break_ties_by_calibrated_score():
    actors = ["a", "b", "c", "d"]
    scores = np.array([
        [0.9, 0.8, 0.1, 0.0],
        [0.2, 0.9, 0.8, 0.0],
        [0.7, 0.4, 0.0, 0.95],
    ])
    rows = aggregate(scores, actors, top=2)
    # top 2: first place 2 points, second 1; a (2 + 1) and b (1 + 2) tie on points
    assert {r["actor"]: r["points"] for r in rows} == {"a": 3, "b": 3, "d": 2, "c": 1}
    assert {r["actor"]: r["firsts"] for r in rows} == {"a": 1, "b": 1, "d": 1, "c": 0}
    z = calibrate(scores).mean(0)
    assert [r["actor"] for r in rows[:2]] == (["a", "b"] if z[0] > z[1] else ["b", "a"])
    assert rows[0]["mean_z"] == pytest.approx(max(z[0], z[1]), abs=1e-3)
    # top 3 of 4 actors: 3 + 2 + 1 points per face
    assert sum(r["points"] for r in aggregate(scores, actors, top=3)) == 3 * 6
    # a top as large as the gallery would give every actor a vote: it is cut to actors - 1
    assert sum(r["points"] for r in aggregate(scores, actors, top=10)) == 3 * 6
    assert [r["points"] for r in aggregate(scores[:, :2], ["a", "b"], top=5)] == [2, 1]


def test_casting_scores_an_actor_by_the_mean_photo_and_naming_by_the_best():
    gallery = Gallery(root=Path("."), embedder={}, detector="", actors={"a": {}, "b": {}},
                              entries=[{"actor": "a"}, {"actor": "a"}, {"actor": "b"}],
                              vectors=np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32))
    query = np.array([[0, 1.0]])
    np.testing.assert_allclose(actor_scores(gallery, query, ["a", "b"]), [[0.5, 0.8]])
    np.testing.assert_allclose(actor_scores(gallery, query, ["a", "b"], how="best"), [[1.0, 0.8]])
    # a photo left out (NaN: the query's own photo in a leave-one-out) does not count
    np.testing.assert_allclose(per_actor(np.array([[np.nan, 0.4, 0.8]]), np.array(["a", "a", "b"]), ["a", "b"]), [[0.4, 0.8]])


def test_rank_votes_filters_and_reports(actors_dir, tmp_path):
    (tmp_path / "attrs.csv").write_text("actor,gender\nann,female\nbob,male\ncid,female\n")
    gallery, _ = build(actors_dir, tmp_path / "g", attributes=tmp_path / "attrs.csv")
    queries = [save(face_image(COLOURS["bob"], shift=3), tmp_path / "q" / f"{k}.png") for k in range(2)]
    queries.append(save(face_image(COLOURS["cid"]), tmp_path / "q" / "other.png"))
    queries.append(save(np.zeros((96, 96, 3), np.uint8), tmp_path / "q" / "blank.png"))
    queries.append(tmp_path / "q" / "missing.png")
    result = cast(gallery, queries, ColourEmbedder(), SquareDetector(), top=1)
    assert [i.status for i in result.images] == ["ok", "ok", "ok", "no_face", "unreadable_file"]
    assert result.overall[0]["actor"] == "bob" and result.overall[0]["points"] == 2 and result.overall[0]["firsts"] == 2
    assert result.images[0].ranking[0]["actor"] == "bob"
    assert result.images[0].ranking[0]["score"] > 0.99

    female = cast(gallery, queries, ColourEmbedder(), SquareDetector(), top=1, where={"gender": "female"})
    assert female.actors == ["ann", "cid"]
    assert {r["actor"] for r in female.overall} == {"ann", "cid"}
    assert female.images[2].ranking[0]["actor"] == "cid"
    with pytest.raises(UserError, match="no actor matches"):
        cast(gallery, queries, ColourEmbedder(), SquareDetector(), where={"gender": "other"})

    paths = write_report(result, gallery, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["overall"][0]["actor"] == "bob"
    assert [i["status"] for i in data["images"]][-2:] == ["no_face", "unreadable_file"]
    page = paths["html"].read_text()
    assert "faces/character_0.jpg" in page and "bob" in page
    for row in data["images"][0]["ranking"]:
        assert (tmp_path / "report" / "actors" / Path(row["photo"]).name).is_file()
    sheet = np.asarray(Image.open(paths["png"]))
    assert sheet.shape[0] > 3 * 128 and sheet.std() > 10


def test_rank_refuses_empty_gallery_and_faceless_queries(tmp_path, actors_dir):
    empty, _ = update_gallery(tmp_path / "g0", [], {}, ColourEmbedder(), SquareDetector())
    query = save(face_image(COLOURS["ann"]), tmp_path / "q.png")
    with pytest.raises(UserError, match="no embedded faces"):
        cast(empty, [query], ColourEmbedder(), SquareDetector())
    gallery, _ = build(actors_dir, tmp_path / "g")
    blank = save(np.zeros((96, 96, 3), np.uint8), tmp_path / "blank.png")
    with pytest.raises(UserError, match="blank.png: no_face"):
        cast(gallery, [blank], ColourEmbedder(), SquareDetector())
    with pytest.raises(UserError, match="not a cast gallery"):
        Gallery.load(tmp_path / "nowhere")


def test_realify_runs_on_the_crop_and_embeds_the_result(actors_dir, tmp_path):
    gallery, _ = build(actors_dir, tmp_path / "g")

    class Swap:  # "realifies" by turning red into blue: an ann query must then match cid
        name, size = "swap", 96

        def __call__(self, image):
            return image[..., ::-1].copy()

    image = face_image(COLOURS["ann"])
    [plain] = query_faces(image, SquareDetector(), ColourEmbedder())
    [real] = query_faces(image, SquareDetector(), ColourEmbedder(), realifier=Swap())
    assert real.realified.shape == (96, 96, 3) and real.redetected
    actors = gallery.actor_names()
    assert actors[int(actor_scores(gallery, plain.vector[None], actors).argmax())] == "ann"
    assert actors[int(actor_scores(gallery, real.vector[None], actors).argmax())] == "cid"


def test_parse_where():
    assert parse_where(["gender=female", " age = 30 "]) == {"gender": "female", "age": "30"}
    with pytest.raises(UserError, match="key=value"):
        parse_where(["gender"])


def test_cli_reports_user_mistakes_with_exit_2(tmp_path):
    from toonfactory.cli import app

    runner = CliRunner()
    folder = tmp_path / "actors" / "ann"
    save(np.full((64, 64, 3), 90, np.uint8), folder / "plain.png")
    result = runner.invoke(app, ["cast", "gallery", str(tmp_path / "actors"), "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "g" / "gallery.json").read_text())["rejected"][0]["reason"] == "no_face"
    query = save(np.full((64, 64, 3), 90, np.uint8), tmp_path / "q.png")
    result = runner.invoke(app, ["cast", "rank", str(query), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)
    assert "no embedded faces" in str(result.exception)
    assert not (tmp_path / "r").exists()
    result = runner.invoke(app, ["cast", "rank", str(query), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "r"),
                                 "--where", "gender"])
    assert isinstance(result.exception, UserError)
