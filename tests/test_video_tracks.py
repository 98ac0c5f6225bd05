"""Face tracks in video: ids that hold through a clip and across a cut, the tracks file, models per track or actor."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import write_checkpoint  # noqa: E402
from video_fixtures import PATCH, portraits, two_face_frames, write_video  # noqa: E402

from distill.config import Assignment, InferConfig  # noqa: E402
from distill.infer import infer  # noqa: E402
from distill.tracks import FaceTracks  # noqa: E402
from factory.sources.video import SceneCuts  # noqa: E402
from factory.errors import UserError  # noqa: E402
from factory.faces import shared_detector  # noqa: E402

NAMES = ["astronaut", "hopper"]


def who(face, corners) -> int:
    """Which true face (index into ``corners``) a tracked face's box centre lies in."""
    centre = (face.face.box[:2] + face.face.box[2:]) / 2
    inside = [i for i, (x, y) in enumerate(corners) if x <= centre[0] <= x + PATCH and y <= centre[1] <= y + PATCH]
    assert len(inside) == 1, (centre, corners)
    return inside[0]


def run(tracks: FaceTracks, clip) -> list[list]:
    return [tracks(image) for image, _ in clip]


@pytest.fixture(scope="module")
def embedder():
    from factory.models.embedding import build_embedder

    return build_embedder("dlib")


def test_two_faces_keep_their_ids_through_a_clip():
    clip = two_face_frames(20)
    tracks = FaceTracks(shared_detector("mediapipe", min_size=24), None, InferConfig.of(detect_every=4), fps=25)
    per_frame = run(tracks, clip)
    identity: dict[int, int] = {}
    for (_, corners), faces in list(zip(clip, per_frame))[3:]:  # a new track shows from its third frame
        assert len(faces) == 2
        for face in faces:
            assert identity.setdefault(face.track, who(face, corners)) == who(face, corners)
    assert sorted(identity) == [1, 2] and sorted(identity.values()) == [0, 1]
    detected = {face.detected for faces in per_frame for face in faces}
    assert detected == {True, False}  # detected every 4th frame, followed by optical flow in between


@pytest.mark.parametrize("reid", [True, False])
def test_after_a_cut_the_same_person_keeps_their_id(embedder, reid):
    clip = two_face_frames(26, cut_at=10, gap=4)  # both come back on swapped sides
    tracks = FaceTracks(shared_detector("mediapipe", min_size=24), embedder if reid else None,
                        InferConfig.of(detect_every=4), fps=25)
    per_frame = run(tracks, clip)
    assert tracks.summary()["cuts"] == 1
    before = {who(f, clip[8][1]): f.track for f in per_frame[8]}
    after = {who(f, clip[24][1]): f.track for f in per_frame[24]}
    assert len(before) == len(after) == 2
    if reid:
        assert after == before
    else:  # by motion alone nobody can be linked across a cut: new ids
        assert not set(after.values()) & set(before.values())


def test_smoothing_steadies_keypoints_of_a_still_face():
    """Detector noise on a face that does not move is not followed by the stabilised keypoints."""
    rng = np.random.default_rng(0)
    image, corners = two_face_frames(1)[0]
    frames = [np.clip(image.astype(int) + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8) for _ in range(16)]
    spread = {}
    for smooth in (True, False):
        tracks = FaceTracks(shared_detector("mediapipe", min_size=24), None, InferConfig.of(detect_every=1, smooth=smooth),
                            fps=25)
        points = [np.concatenate([f.keypoints for f in sorted(faces, key=lambda f: who(f, corners))])
                  for faces in (tracks(frame) for frame in frames) if len(faces) == 2]
        spread[smooth] = np.abs(np.diff(points, axis=0)).mean()
    assert spread[True] < 0.6 * spread[False]


def test_scene_cuts_see_a_new_scene_not_motion():
    cuts = SceneCuts()
    clip = two_face_frames(14, cut_at=8)
    assert [i for i, (image, _) in enumerate(clip) if cuts(image)] == [8]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")  # not residual: a random model's output is far from its input
    return (write_checkpoint(root / "a", ngf=8, depth=3, size=64, residual=False),
            write_checkpoint(root / "b", ngf=8, depth=3, size=64, seed=1, residual=False))


def test_infer_writes_the_tracks_file_and_converts_each_track_with_its_model(models, tmp_path):
    default, other = models
    clip = two_face_frames(12)
    video = write_video(tmp_path / "two.mp4", [image for image, _ in clip])
    config = InferConfig.of(mode="face", batch_size=4, embedder="none", detect_every=4, assign=["1=keep", f"2={other}"])
    summary = infer(default, [video], tmp_path / "out", config)
    assert summary["videos"] == 1 and summary["frames"] == 12 and summary["tracks"] == 2
    record = json.loads((tmp_path / "out" / "two.tracks.json").read_text())
    assert record["tracks"]["1"]["model"] == "keep" and record["tracks"]["2"]["model"] == str(other)
    row = record["rows"][0]
    assert set(row) >= {"frame", "track", "box", "landmarks", "score", "detected"}
    assert len(row["box"]) == 4 and np.array(row["landmarks"]).shape == (5, 2)
    inputs, outputs = decode(video), decode(tmp_path / "out" / "two.mp4")
    assert len(outputs) == 12
    last = max(r["frame"] for r in record["rows"])
    change = {}
    for r in (r for r in record["rows"] if r["frame"] == last):
        x0, y0, x1, y1 = (int(v) for v in r["box"])
        change[r["track"]] = np.abs(outputs[last][y0:y1, x0:x1].astype(int) - inputs[last][y0:y1, x0:x1]).mean()
    assert change[1] * 3 < change[2], change  # track 1 kept (codec noise only), track 2 converted


def test_the_command_line_tracks_faces_with_its_default_embedder(models, tmp_path):
    """`toonfactory infer --mode face` on a video with the default `--embedder dlib` and no gallery: the
    embedder is loaded by name (it once reached the tracker as the string "dlib")."""
    from typer.testing import CliRunner

    from toonfactory.cli import app

    video = write_video(tmp_path / "two.mp4", [image for image, _ in two_face_frames(6)])
    result = CliRunner().invoke(app, ["infer", str(models[0]), str(video), "--out", str(tmp_path / "out"), "--mode", "face"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["frames"] == 6 and summary["tracks"] == 2
    assert (tmp_path / "out" / "two.tracks.json").is_file()


def decode(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    return frames


def test_actors_from_a_gallery_name_the_tracks(embedder, tmp_path):
    from casting.gallery import collect_inputs, update_gallery
    from casting.rank import recogniser
    from factory.faces import DetectorChain
    from factory.images import encode_png

    for name, face in zip(NAMES, portraits()):
        (tmp_path / "actors" / name).mkdir(parents=True)
        (tmp_path / "actors" / name / "photo.png").write_bytes(encode_png(cv2.resize(face, (220, 220))))
    gallery, _ = update_gallery(tmp_path / "gallery", *collect_inputs(tmp_path / "actors"), embedder,
                                DetectorChain("mediapipe", min_size=24))
    clip = two_face_frames(6)
    tracks = FaceTracks(shared_detector("mediapipe", min_size=24), embedder, InferConfig.of(detect_every=4), fps=25,
                        recognise=recogniser(gallery))
    faces = run(tracks, clip)[-1]
    assert {face.actor: NAMES[who(face, clip[-1][1])] for face in faces} == {"astronaut": "astronaut", "hopper": "hopper"}
    rules = Assignment({"astronaut": "a.onnx", "2": "b.onnx"})
    assert rules.model_for(1, "astronaut") == "a.onnx"
    assert rules.model_for(2, "astronaut") == "b.onnx"  # a track id rule wins over the actor's
    assert rules.model_for(3, "hopper") == rules.model_for(3, None) == ""  # the default model


@pytest.mark.parametrize("assign, kwargs, message", [
    (["1"], {}, "TRACK_ID=MODEL"),
    (["1=a", "1=b"], {}, "assigned twice"),
    (["singer=a"], {}, "need --gallery"),
    (["1=keep"], {"mode": "whole"}, "--mode face"),
])
def test_bad_assignments_are_user_errors(models, tmp_path, assign, kwargs, message):
    with pytest.raises(UserError, match=message):
        infer(models[0], [tmp_path], tmp_path / "out", InferConfig.of(**{"mode": "face", **kwargs}, assign=assign))
    assert not (tmp_path / "out").exists()


def test_a_pickle_given_as_a_model_is_refused_not_loaded(models, tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"student": 1}))
    video = write_video(tmp_path / "two.mp4", [image for image, _ in two_face_frames(2)])
    with pytest.raises(UserError):
        infer(models[0], [video], tmp_path / "out", InferConfig.of(mode="face", assign=[f"1={evil}"]))
    assert not (tmp_path / "out").exists()


def test_an_unknown_actor_or_a_gallery_of_another_embedder_is_a_user_error(tmp_path):
    from toonfactory.cli.student import face_identities

    with pytest.raises(UserError, match="not a cast gallery"):
        face_identities("dlib", tmp_path, ["singer=x"])
    with pytest.raises(UserError, match="needs an --embedder"):
        face_identities("none", tmp_path, [])
