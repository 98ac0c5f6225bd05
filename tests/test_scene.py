"""Scene pairs (output.frame: scene): whole frames, faces drawn by the face teacher and pasted back."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from video_fixtures import two_face_frames, write_video  # noqa: E402

from factory import executors  # noqa: E402
from factory.errors import RecipeError  # noqa: E402
from factory.generate import generate  # noqa: E402
from factory.pipeline import build_pipeline  # noqa: E402
from factory.recipe import Resolved, validate  # noqa: E402
from factory.sample import Sample  # noqa: E402
from factory.sources.video import VideoSourceConfig  # noqa: E402
from factory.stages.face_crop import FacesConfig  # noqa: E402
from factory.stages.gates import GatesConfig, GateStage  # noqa: E402
from factory.stages.scene import (SceneConfig, SceneTeacherStage, SkinModel, blend_two_bands, body_skin,  # noqa: E402
                                  carry_skin, hull_mask, median_delta_e, seam_energy)
from factory.teachers.webtoon import to_lab  # noqa: E402


def scene_recipe(source: dict, **sections) -> dict:
    return {"name": "scene", "seed": 3, "source": source, "teacher": {"kind": "webtoon"},
            "faces": {"min_size": 24}, "gates": {"face_on_toon": True, "max_out_of_frame": 0.3},
            "output": {"frame": "scene", "size": 256, "count": 4, "shard_size": 2}, "tracking": {"mode": "none"},
            **sections}


def make(recipe: dict, index: int, key: str = "k") -> Sample:
    """One candidate through every stage of the recipe's pipeline (stopping at a reject)."""
    pipeline = build_pipeline(validate(recipe, "test"))
    sample = pipeline.source.load(Sample.create(key, index, recipe["seed"]))
    for stage in pipeline.stages:
        if sample.reject_reason:
            break
        sample = next(iter(stage(iter([sample]))))
    return sample


def toon_faces(sample: Sample):
    return FacesConfig(min_size=24).shared_detector().detect(sample.toon)


def centre(box) -> np.ndarray:
    box = np.asarray(box, np.float64)
    return (box[:2] + box[2:]) / 2


def test_a_portrait_becomes_a_scene_pair_with_its_face_drawn_where_it_was():
    sample = make(scene_recipe({"kind": "samples"}), 2)  # toonfactory:barack-obama.jpg
    assert sample.reject_reason is None
    assert sample.real.shape == sample.toon.shape == (256, 256, 3)
    (face,) = sample.meta["faces"]["faces"]
    found = toon_faces(sample)
    assert found, "no face on the toon side"
    assert np.linalg.norm(centre(found[0].box) - centre(face["box"])) < 0.15 * np.sqrt(
        np.prod(np.subtract(face["box"][2:], face["box"][:2])))
    drawn = sample.meta["teacher"]["faces"][0]
    assert drawn["teacher"]["kind"] == "webtoon" and drawn["teacher"]["features"] == "face_stage"
    assert sample.meta["teacher"]["scene"]["features"] == "scene"
    assert drawn["seam"] <= 1.5
    assert sample.meta["gates"]["toon_face"] == "1/1"
    # the whole frame is drawn, not only the face: the background outside the face is changed too
    outside = hull_mask(sample.real.shape, np.asarray(face["landmarks"]), face["iod"]) == 0
    assert np.abs(sample.toon.astype(int) - sample.real.astype(int))[outside].mean() > 10


def test_several_faces_in_one_frame_are_each_drawn(assets):
    folder = assets / "faces" / "face_recognition" / "test"
    recipe = scene_recipe({"kind": "folder", "path": str(folder)}, scene={"zoom": [20.0, 20.0]})  # the whole width
    files = sorted(p.name for p in folder.iterdir())
    sample = make(recipe, files.index("kit_with_rose.jpg"))
    assert sample.reject_reason is None
    faces = sample.meta["faces"]["faces"]
    assert len(faces) == 2
    assert [f["teacher"]["kind"] for f in sample.meta["teacher"]["faces"]] == ["webtoon", "webtoon"]
    assert sample.meta["gates"]["toon_face"] == "2/2"
    found = [centre(f.box) for f in toon_faces(sample)]
    for face in faces:
        assert min(np.linalg.norm(c - centre(face["box"])) for c in found) < 10


def test_another_teacher_can_draw_the_scene(assets):
    weights = assets / "models" / "cartoongan_hayao"
    sample = make(scene_recipe({"kind": "samples"}, scene={"teacher": {"kind": "cartoongan", "weights": str(weights),
                                                                      "device": "cpu"}}), 2)
    assert sample.reject_reason is None
    assert sample.meta["teacher"]["scene"]["kind"] == "cartoongan"
    assert sample.meta["teacher"]["faces"][0]["teacher"]["kind"] == "webtoon"


class Dots:
    """A face teacher that draws a white dot on each of the five alignment keypoints it is given."""

    def translate(self, images, samples):
        out = []
        for image, sample in zip(images, samples):
            drawing = np.zeros_like(image)
            points = np.asarray(sample.meta["faces"]["landmarks"])[[468, 473, 1, 61, 291]]
            for x, y in points:
                centre = (int(round(x * 16)), int(round(y * 16)))
                cv2.circle(drawing, centre, 5 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
            out.append(drawing)
        return out

    def describe(self):
        return {"kind": "dots"}


def test_paste_back_lands_within_a_pixel_of_the_landmarks():
    sample = make(scene_recipe({"kind": "samples"}), 0)  # the astronaut
    face = sample.meta["faces"]["faces"][0]
    stage = SceneTeacherStage(SceneConfig(), None, Dots(), FacesConfig())
    back, _ = stage._draw_face(sample, 0, face)
    grey = back[..., 0].astype(np.float64)
    expected = np.asarray(face["landmarks"])[[468, 473, 1, 61, 291]]
    ys, xs = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
    for x, y in expected:
        near = (np.hypot(xs - x, ys - y) < 8) * grey
        found = np.array([(near * xs).sum(), (near * ys).sum()]) / near.sum()
        assert np.linalg.norm(found - [x, y]) < 1.0


def test_the_body_skin_takes_the_drawn_face_tone():
    """A synthetic person: a face, a hand of the same skin a little darker, a grey shirt and a blue sleeve."""
    real = np.zeros((200, 200, 3), np.uint8)
    real[:] = (40, 90, 40)
    real[20:80, 70:130] = (205, 150, 120)        # the face
    real[120:170, 20:70] = (180, 128, 100)       # a hand, in shade
    real[100:200, 80:160] = (128, 128, 128)      # a grey shirt
    real[120:200, 160:200] = (60, 80, 180)       # a blue sleeve
    lab = to_lab(real)
    face = np.zeros((200, 200), bool)
    face[25:75, 75:125] = True
    person = np.zeros((200, 200), np.uint8)
    person[20:, 20:] = 1
    model = SkinModel(lab, face)
    skin = body_skin(lab, person, model, 3.5, face.astype(np.uint8), iod=30.0)
    assert skin[125:165, 25:65].all()
    assert not skin[100:200, 80:200].any()
    tone = np.array([75.0, 20.0, 25.0], np.float32)
    toon = np.full_like(real, 90)
    toon[120:170, 20:70] = (150, 100, 60)
    carried = carry_skin(toon, skin, tone)
    assert median_delta_e(to_lab(carried), skin > 0, tone) < 2.0
    assert (carried[100:200, 80:] == toon[100:200, 80:]).all()


def test_a_pasted_box_shows_a_seam_the_hull_paste_does_not():
    sample = make(scene_recipe({"kind": "samples"}), 2)
    face = sample.meta["faces"]["faces"][0]
    scene = cv2.GaussianBlur(sample.real, (0, 0), 3)
    drawn = 255 - sample.real  # a drawing unlike the scene everywhere
    box = np.zeros(scene.shape[:2], np.uint8)
    x0, y0, x1, y1 = (int(v) for v in face["box"])
    box[y0:y1, x0:x1] = 1
    hard = np.where(box[..., None] > 0, drawn, scene)
    assert seam_energy(hard, box, 6) > 1.5
    hull = hull_mask(scene.shape, np.asarray(face["landmarks"]), 0.3 * face["iod"])
    alpha = cv2.GaussianBlur(hull.astype(np.float32), (0, 0), 0.12 * face["iod"])
    soft = blend_two_bands(scene, drawn, alpha, face["iod"] * 0.5)
    assert seam_energy(soft, hull, 6) < seam_energy(np.where(hull[..., None] > 0, drawn, scene), hull, 6)


@pytest.mark.slow
def test_scene_pairs_are_reproducible_from_the_seed_over_one_and_two_workers(tmp_path):
    data = scene_recipe({"kind": "samples"})
    made = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = generate(Resolved(validate(data, "test"), "test"), out, executors.choose("local", workers))
        assert not result.failed
        made[workers] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted((out / "shards").glob("*.tar"))}
    assert len(made[1]) == 2 and made[1] == made[2]
    other = generate(Resolved(validate({**data, "seed": 4}, "test"), "test"), tmp_path / "seed4")
    assert not other.failed
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((tmp_path / "seed4" / "shards").glob("*.tar"))} != made[1]


def test_scene_pairs_from_a_video_are_byte_identical_over_one_and_two_workers(tmp_path):
    # each frame is decoded by seeking, so a worker that starts mid-clip loads the frames one worker loads
    video = write_video(tmp_path / "clip.mp4", [image for image, _ in two_face_frames(40, cut_at=22, gap=0)])
    data = scene_recipe({"kind": "video", "path": str(video), "every": 6}, gates={"face_on_toon": True, "max_seam": 3.0})
    made = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = generate(Resolved(validate(data, "test"), "test"), out, executors.choose("local", workers))
        assert not result.failed and result.manifest["counts"]["accepted"] == 4
        made[workers] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted((out / "shards").glob("*.tar"))}
    assert len(made[1]) == 2 and made[1] == made[2]


def test_video_frames_are_every_k_apart_within_a_shot_and_never_across_a_cut(tmp_path):
    frames = [image for image, _ in two_face_frames(60, cut_at=33, gap=0)]
    video = write_video(tmp_path / "clip.mp4", frames)
    source = VideoSourceConfig(kind="video", path=video, every=10).build()
    items = [(frame, shot) for _, frame, shot in source.items]
    assert items == [(5, 0), (15, 0), (25, 0), (38, 1), (48, 1), (58, 1)]
    sample = source.load(Sample.create("k", 4, 0))
    assert sample.meta["source"]["frame"] == 48 and sample.real.shape == (270, 480, 3)
    # the synthetic frames are faces pasted as squares on a gradient: their own box edges count as seams
    sample = make(scene_recipe({"kind": "video", "path": str(video), "every": 10},
                               gates={"face_on_toon": True, "max_seam": 3.0}), 1)
    assert sample.reject_reason is None and len(sample.meta["faces"]["faces"]) >= 1


def test_each_gate_rejects_with_its_reason():
    made = make(scene_recipe({"kind": "samples"}), 2)
    gates = GateStage(GatesConfig(face_on_toon=True, max_out_of_frame=0.3), FacesConfig(min_size=24))

    def judged(change) -> str | None:
        sample = Sample(made.key, made.index, made.seed, made.real.copy(), made.toon.copy(), made.mask,
                        {k: (dict(v) if isinstance(v, dict) else v) for k, v in made.meta.items()})
        change(sample)
        return gates.judge(sample, []).reject_reason

    assert judged(lambda s: None) is None

    def no_toon_face(s):
        s.toon = np.full_like(s.toon, 128)

    def blurry(s):
        s.real = cv2.GaussianBlur(s.real, (0, 0), 6)

    def cut(s):
        s.meta["faces"]["out_of_frame"] = 0.5

    def seam(s):
        s.meta["teacher"] = {**s.meta["teacher"], "faces": [{**s.meta["teacher"]["faces"][0], "seam": 2.5,
                                                              "seam_scene": 1.0}]}

    def edge_of_the_picture(s):  # the scene drawing alone is as busy along the boundary
        s.meta["teacher"] = {**s.meta["teacher"], "faces": [{**s.meta["teacher"]["faces"][0], "seam": 2.5,
                                                              "seam_scene": 2.6}]}

    assert judged(no_toon_face) == "no_face_on_toon"
    assert judged(blurry) == "blurry"
    assert judged(cut) == "out_of_frame"
    assert judged(seam) == "visible_seam"
    assert judged(edge_of_the_picture) is None


def test_a_photo_without_a_face_is_rejected_and_counted(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "wall.png"), np.full((300, 300, 3), 120, np.uint8))
    sample = make(scene_recipe({"kind": "folder", "path": str(folder)}), 0)
    assert sample.reject_reason == "no_face"


@pytest.mark.parametrize("change, field", [
    ({"scene": {"zoom": [2.0, 3.0]}, "output": {"frame": "face"}}, "scene"),
    ({"warp": {}}, "warp"),
    ({"segment": {"person_only": {"background": "keep"}}}, "segment.person_only"),
    ({"scene": {"zoom": [4.0, 2.0]}}, "scene"),
    ({"source": {"kind": "video", "path": "clip.mp4", "every": 0}}, "source.every"),
])
def test_recipe_mistakes_name_the_field(change, field):
    data = {**scene_recipe({"kind": "samples"}), **change}
    if "output" in change:
        data["output"] = {**scene_recipe({})["output"], **change["output"]}
    with pytest.raises(RecipeError) as caught:
        validate(data, "r.yaml")
    assert "r.yaml" in str(caught.value) and field in str(caught.value)
