"""Inference: image folders and the shared video, whole frames and faces, PyTorch and ONNX alike."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint  # noqa: E402

from distill.config import InferConfig  # noqa: E402
from distill.export import export, load_student  # noqa: E402
from distill.infer import infer  # noqa: E402
from factory.images import encode_png, read_image  # noqa: E402

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
VIDEO = ASSETS / "video" / "short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), ngf=8, depth=3, size=64)


@pytest.fixture
def images(tmp_path) -> Path:
    """Images of odd sizes (not multiples of the model's 8), a nested one and a corrupt file."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in [("a.png", 64), ("b.png", 64), ("sub/c.png", 64)]:
        (folder / name).write_bytes(encode_png(real_image(rng, size)[:, : size - 7]))
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def expected(checkpoint: Path, image: np.ndarray) -> np.ndarray:
    model, _ = load_student(checkpoint)
    padded = cv2.copyMakeBorder(image, 0, -image.shape[0] % 8, 0, -image.shape[1] % 8, cv2.BORDER_REFLECT_101)
    x = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = model(x)[0, :, : image.shape[0], : image.shape[1]]
    return ((y.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("backend", ["pytorch", "onnx"])
def test_a_folder_of_images_gives_the_model_output_for_each(checkpoint, images, tmp_path, backend):
    model = checkpoint if backend == "pytorch" else export(checkpoint, "onnx", tmp_path / "onnx")
    summary = infer(model, [images], tmp_path / "out", InferConfig.of(batch_size=2))
    assert summary["images"] == 4 and summary["frames"] == 3 and summary["skipped"] == 1
    for name in ["a.png", "b.png", "sub/c.png"]:
        source = read_image(images / name)
        result = read_image(tmp_path / "out" / "in" / name)
        assert result.shape == source.shape
        assert np.abs(result.astype(int) - expected(checkpoint, source)).max() <= 1


def test_the_shared_video_gives_a_video_of_the_same_size(checkpoint, tmp_path):
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not present (shared test assets are not part of the repository)")
    summary = infer(checkpoint, [VIDEO], tmp_path, InferConfig.of(batch_size=3, max_frames=4))
    assert summary["videos"] == 1 and summary["frames"] == 4
    source, result = cv2.VideoCapture(str(VIDEO)), cv2.VideoCapture(str(tmp_path / "short_hamilton_clip.mp4"))
    frames = 0
    while True:
        ok, frame = result.read()
        if not ok:
            break
        frames += 1
    assert frames == 4
    assert result.get(cv2.CAP_PROP_FRAME_WIDTH) == source.get(cv2.CAP_PROP_FRAME_WIDTH)
    assert result.get(cv2.CAP_PROP_FRAME_HEIGHT) == source.get(cv2.CAP_PROP_FRAME_HEIGHT)


def test_face_mode_changes_the_face_and_keeps_the_background(checkpoint, tmp_path):
    photo = ASSETS / "faces" / "face_recognition" / "train" / "obama"
    if not photo.is_dir():
        pytest.skip(f"{photo} not present (shared test assets are not part of the repository)")
    source_path = sorted(photo.iterdir())[0]
    summary = infer(checkpoint, [source_path], tmp_path, InferConfig.of(mode="face"))
    assert summary["faces"] >= 1
    source = read_image(source_path)
    result = read_image(tmp_path / f"{source_path.stem}.png")
    changed = np.abs(result.astype(int) - source).max(axis=2) > 8
    assert changed.any()
    corners = [changed[:10, :10], changed[:10, -10:], changed[-10:, :10], changed[-10:, -10:]]
    assert not any(c.any() for c in corners)


def test_missing_input_is_a_user_error(checkpoint, tmp_path):
    from factory.errors import UserError

    with pytest.raises(UserError, match="input not found"):
        infer(checkpoint, [tmp_path / "nope"], tmp_path / "out")


@pytest.mark.parametrize("background", ["keep", "stylize"])
def test_person_only_converts_the_person_and_treats_the_background_as_asked(checkpoint, tmp_path, background):
    import skimage.data

    from factory.stages.segment import build_mask

    source = skimage.data.astronaut()[::4, ::4].copy()  # 128 px
    path = tmp_path / "astronaut.png"
    path.write_bytes(encode_png(source))
    infer(checkpoint, [path], tmp_path / "out", InferConfig.of(person_only=background))
    result = read_image(tmp_path / "out" / "astronaut.png")
    person = build_mask("mediapipe")(source) > 0.9
    background_px = build_mask("mediapipe")(source) < 0.05
    converted = expected(checkpoint, source)
    assert np.abs(result[person].astype(int) - converted[person]).mean() < 2
    if background == "keep":
        assert np.abs(result[background_px].astype(int) - source[background_px]).mean() < 1
    else:
        assert np.abs(result[background_px].astype(int) - source[background_px]).mean() > 5


def test_person_only_needs_whole_frames(checkpoint, tmp_path):
    from factory.errors import UserError

    with pytest.raises(UserError, match="--person-only"):
        infer(checkpoint, [tmp_path], tmp_path / "out", InferConfig.of(mode="face", person_only="keep"))


def test_a_face_student_converts_faces_unless_whole_frames_are_asked(checkpoint, tmp_path):
    import json
    import shutil

    photo = ASSETS / "faces" / "face_recognition" / "train" / "obama"
    if not photo.is_dir():
        pytest.skip(f"{photo} not present (shared test assets are not part of the repository)")
    photo = sorted(photo.iterdir())[0]
    face_student = shutil.copytree(checkpoint, tmp_path / "face_student")
    record = json.loads((face_student / "student.json").read_text())
    (face_student / "student.json").write_text(json.dumps({**record, "frame": "face"}))  # as training on face crops writes
    onnx = export(face_student, "onnx", tmp_path / "onnx")  # the record travels in the ONNX metadata
    for model in (face_student, onnx):
        assert infer(model, [photo], tmp_path / f"default_{model.suffix}", InferConfig.of())["faces"] >= 1
        assert infer(model, [photo], tmp_path / f"whole_{model.suffix}", InferConfig.of(mode="whole"))["faces"] == 0
    # a student whose record does not say (scene pairs, or trained before the field) converts whole frames
    assert infer(checkpoint, [photo], tmp_path / "older", InferConfig.of())["faces"] == 0


def test_a_large_frame_is_converted_at_the_working_side_and_enlarged_back(checkpoint, tmp_path):
    image = cv2.resize(real_image(np.random.default_rng(3), 64), (200, 120), interpolation=cv2.INTER_CUBIC)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.png").write_bytes(encode_png(image))
    infer(checkpoint, [tmp_path / "in" / "big.png"], tmp_path / "reduced", InferConfig.of(mode="whole", whole_side=100))
    small = cv2.resize(image, (100, 60), interpolation=cv2.INTER_AREA)
    want = cv2.resize(expected(checkpoint, small), (200, 120), interpolation=cv2.INTER_CUBIC)
    assert np.abs(read_image(tmp_path / "reduced" / "big.png").astype(int) - want).max() <= 1
    infer(checkpoint, [tmp_path / "in" / "big.png"], tmp_path / "full", InferConfig.of(mode="whole", whole_side=0))
    assert np.abs(read_image(tmp_path / "full" / "big.png").astype(int) - expected(checkpoint, image)).max() <= 1


def test_a_thumbnail_working_side_is_refused_naming_the_option():
    from factory.errors import UserError

    with pytest.raises(UserError, match="whole.side 7: 7 px is a thumbnail"):
        InferConfig.of(mode="whole", whole_side=7)
    assert InferConfig.of(whole_side=64).whole_side == 64


def test_on_a_cpu_a_call_holds_one_large_frame_or_several_small_ones(checkpoint, tmp_path):
    from distill.infer import Inference, Student, collect_targets

    calls = []

    class Counted(Student):
        def __call__(self, batch):
            calls.append(batch.shape[0])
            return super().__call__(batch)

    rng = np.random.default_rng(5)
    for name, (height, width) in {"large": (384, 640), "small": (64, 64)}.items():
        (tmp_path / name).mkdir()
        for i in range(3):
            image = cv2.resize(real_image(rng, 64), (width, height), interpolation=cv2.INTER_CUBIC)
            (tmp_path / name / f"{i}.png").write_bytes(encode_png(image))
    student = Counted(checkpoint, device="cpu")
    assert student.on_cpu
    for name, expected_calls in {"large": [1, 1, 1], "small": [3]}.items():
        calls.clear()
        inference = Inference(student, InferConfig.of(mode="whole", batch_size=8))
        inference.run(collect_targets([tmp_path / name], tmp_path / f"out_{name}"))
        assert calls == expected_calls, name


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_video_cut_short_by_ctrl_c_or_an_error_leaves_no_output_under_its_name(checkpoint, tmp_path, monkeypatch, stop):
    """Ctrl-C in the model's thread once closed the open video and renamed it as finished (92 of 275 frames)."""
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not present (shared test assets are not part of the repository)")
    from distill.infer import Student
    from factory.errors import Interrupted

    calls, call = [], Student.__call__

    def stopping(self, batch):
        calls.append(1)
        if len(calls) == 4:
            raise stop("stop")
        return call(self, batch)

    monkeypatch.setattr(Student, "__call__", stopping)
    with pytest.raises(Interrupted if stop is KeyboardInterrupt else RuntimeError) as info:
        infer(checkpoint, [VIDEO], tmp_path / "out", InferConfig.of(batch_size=1, max_frames=12))
    if stop is KeyboardInterrupt:
        assert info.value.exit_code == 130 and "0 output(s) written whole" in str(info.value)
    out = tmp_path / "out"  # the folder goes with the lock when nothing was kept in it
    assert not out.exists() or not [p.name for p in out.iterdir() if not p.name.startswith(".toonfactory")]


def test_an_onnx_model_that_is_not_a_student_is_refused_naming_it(checkpoint, tmp_path):
    """A foreign .onnx with a student.json beside it ended in onnxruntime's ValueError traceback at its first call."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    from factory.errors import ModelLoadError

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, "h", "w"]) for n in ("x", "y"))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "other.onnx")
    shutil.copy(checkpoint / "student.json", tmp_path / "student.json")
    (tmp_path / "a.png").write_bytes(encode_png(np.zeros((64, 64, 3), np.uint8)))
    with pytest.raises(ModelLoadError, match=r"other.onnx: cannot load model: .* this model takes x"):
        infer(tmp_path / "other.onnx", [tmp_path / "a.png"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
