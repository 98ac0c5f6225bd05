"""Face embedders (dlib's real model, a user's ONNX model), the ONNX realifier, and casting on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from casting.gallery import collect_inputs, update_gallery
from casting.rank import actor_scores, cast, query_faces
from casting.realify import load_realifier
from factory.faces import DetectorChain
from factory.images import read_image
from factory.models.embedding import DlibEmbedder, OnnxEmbedder, build_embedder, embed
from factory.errors import ModelLoadError, UserError
from factory.faces import build_detector

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


@pytest.fixture(scope="module")
def portrait():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:256, 96:352])


@pytest.fixture(scope="module")
def dlib_embedder():
    return DlibEmbedder()


def test_dlib_embedding_is_a_unit_vector_and_alignment_agrees_across_detectors(portrait, dlib_embedder):
    dlib_face = build_detector("dlib", min_size=40).detect(portrait)[0]
    mesh_face = build_detector("mediapipe", min_size=40).detect(portrait)[0]
    box_face = type(dlib_face)(box=dlib_face.box, score=1.0)
    vectors, crops = embed(dlib_embedder, portrait, [dlib_face, mesh_face, box_face])
    assert vectors.shape == (3, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert crops[0].shape == (150, 150, 3)
    # 68 points, the mesh mapped to dlib's 5 points, and dlib's 5-point predictor on a bare box
    assert vectors[0] @ vectors[1] > 0.97 and vectors[0] @ vectors[2] > 0.97
    assert dlib_embedder.name == "dlib_resnet_v1" and dlib_embedder.version.startswith("dlib_face_recognition")


def test_dlib_embedding_tells_people_apart(portrait, dlib_embedder):
    import matplotlib.cbook

    from factory.images import read_image

    other = read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    detector = build_detector("dlib", min_size=40)
    flipped = np.ascontiguousarray(portrait[:, ::-1])
    a, _ = embed(dlib_embedder, portrait, detector.detect(portrait)[:1])
    b, _ = embed(dlib_embedder, flipped, detector.detect(flipped)[:1])
    c, _ = embed(dlib_embedder, other, detector.detect(other)[:1])
    same, different = float(a[0] @ b[0]), float(a[0] @ c[0])
    assert same > 0.95 and different < same - 0.05


def tiny_embedder_onnx(path: Path, dim: int = 16) -> Path:
    """Global average pool then a fixed projection: a real ONNX graph, no training needed."""
    weight = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weight"], ["embedding"])],
        "tiny_face_recognition",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor("weight", TensorProto.FLOAT, weight.shape, weight.ravel())],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_embedder_aligns_to_its_input_and_normalises(tmp_path, portrait):
    model = build_embedder(tiny_embedder_onnx(tmp_path / "arc.onnx"))
    assert isinstance(model, OnnxEmbedder) and model.dim == 16 and model.size == 112
    assert model.name == "onnx:arc" and "@" in model.version
    face = build_detector("mediapipe", min_size=40).detect(portrait)[0]
    vectors, crops = embed(model, portrait, [face, face])
    assert crops[0].shape == (112, 112, 3)
    assert vectors.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedder_load_errors_name_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match="missing.onnx"):
        build_embedder(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        build_embedder(tmp_path / "junk.onnx")
    with pytest.raises(UserError, match="--embedder"):
        build_embedder(tmp_path / "model.pt")


def test_onnx_realifier_runs_an_image_to_image_model(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Neg", ["toon"], ["real"])], "negate",
        [helper.make_tensor_value_info("toon", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("real", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "neg.onnx")
    realify = load_realifier(tmp_path / "neg.onnx")
    assert realify.size == 64
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = realify(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - (255 - image.astype(int))).max() <= 1
    with pytest.raises(UserError, match="does not exist"):
        load_realifier(tmp_path / "missing.onnx")


def test_teacher_yaml_must_realify(tmp_path):
    (tmp_path / "t.yaml").write_text("teacher:\n  kind: cartoonize\n")
    with pytest.raises(UserError, match="toon2real"):
        load_realifier(tmp_path / "t.yaml")


@pytest.mark.slow
def test_casting_real_photos(tmp_path, dlib_embedder):
    """Two actors from face_recognition/train; obama1 and the two-person photo ranked against them."""
    root = ASSETS / "faces" / "face_recognition"
    if not root.is_dir():
        pytest.skip(f"real face photos not found at {root}")
    (tmp_path / "actors.csv").write_text("image,actor,gender\n" + "".join(
        f"{root / 'train' / actor / name},{actor},male\n"
        for actor, names in {"obama": ["obama.jpg"], "biden": ["biden.jpg"]}.items() for name in names))
    inputs, attrs = collect_inputs(tmp_path / "actors.csv")
    detector = DetectorChain("dlib", min_size=80)
    gallery, update = update_gallery(tmp_path / "g", inputs, attrs, dlib_embedder, detector)
    assert update.added == 2 and gallery.actors["obama"] == {"gender": "male"}
    image = read_image(root / "test" / "obama_and_biden.jpg")
    faces = query_faces(image, detector, dlib_embedder)
    scores = actor_scores(gallery, np.stack([f.vector for f in faces]), ["biden", "obama"])
    by_position = {("biden" if f.box[0] < 1000 else "obama"): s for f, s in zip(faces, scores) if f.box[1] < 800}
    assert by_position["biden"].argmax() == 0 and by_position["obama"].argmax() == 1
    result = cast(gallery, [root / "test" / "obama1.jpg"], dlib_embedder, detector, top=1)
    assert result.overall[0]["actor"] == "obama" and result.overall[0]["mean_score"] > 0.82  # dlib's same-person distance 0.6


def test_gray_embedding_ignores_a_drawing_colours_and_settings_are_recorded(portrait, dlib_embedder, tmp_path):
    face = build_detector("dlib", min_size=40).detect(portrait)[0]
    # the same light with every colour gone, as a drawing in other colours keeps a person's forms
    recoloured = np.repeat(cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    gray = DlibEmbedder(colour="gray")
    rgb_pair = embed(dlib_embedder, portrait, [face])[0] @ embed(dlib_embedder, recoloured, [face])[0].T
    gray_pair = embed(gray, portrait, [face])[0] @ embed(gray, recoloured, [face])[0].T
    assert gray_pair[0, 0] > 0.9999 > rgb_pair[0, 0]
    assert dlib_embedder.settings == {} and gray.settings == {"colour": "gray"}
    jittered = DlibEmbedder(jitters=2, colour="gray")
    assert jittered.settings == {"jitters": 2, "colour": "gray"}
    first = embed(jittered, portrait, [face])[0]
    embed(jittered, recoloured[::-1], [face])  # whatever came before, the same face gets the same vector
    np.testing.assert_array_equal(embed(jittered, portrait, [face])[0], first)
    with pytest.raises(UserError, match="--colour: 'sepia'"):
        DlibEmbedder(colour="sepia")
    with pytest.raises(UserError, match="--jitters"):
        DlibEmbedder(jitters=-1)
    with pytest.raises(UserError, match="--jitters: arc.onnx"):
        build_embedder(tiny_embedder_onnx(tmp_path / "arc.onnx"), jitters=3)


def test_cli_gallery_keeps_its_embedder_settings_and_rank_reads_them(tmp_path):
    """A new gallery is embedded for casting (gray, jittered); a sync and `cast rank` reuse its
    settings without being told; asking for other settings on it is refused."""
    import json

    from typer.testing import CliRunner

    from toonfactory.cli import app

    root = ASSETS / "faces" / "face_recognition"
    if not root.is_dir():
        pytest.skip(f"real face photos not found at {root}")
    for actor in ("obama", "biden"):
        (tmp_path / "actors" / actor).mkdir(parents=True)
        (tmp_path / "actors" / actor / f"{actor}.jpg").write_bytes((root / "train" / actor / f"{actor}.jpg").read_bytes())
    runner = CliRunner()
    gallery = ["cast", "gallery", str(tmp_path / "actors"), "--out", str(tmp_path / "g"), "--jitters", "1"]
    assert runner.invoke(app, gallery).exit_code == 0
    meta = json.loads((tmp_path / "g" / "gallery.json").read_text())
    assert meta["embedder"]["settings"] == {"jitters": 1, "colour": "gray"}
    result = runner.invoke(app, gallery[:-2])  # a sync without the options keeps the gallery's
    assert result.exit_code == 0 and "2 unchanged" in result.output, result.output
    result = runner.invoke(app, ["cast", "rank", str(root / "test" / "obama1.jpg"), "--gallery", str(tmp_path / "g"),
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    ranking = json.loads((tmp_path / "r" / "ranking.json").read_text())
    assert ranking["settings"]["embedder"]["settings"] == {"jitters": 1, "colour": "gray"}
    assert ranking["overall"][0]["actor"] == "obama"
    result = runner.invoke(app, gallery[:-2] + ["--colour", "rgb"])
    assert isinstance(result.exception, UserError) and "embedder" in str(result.exception)
