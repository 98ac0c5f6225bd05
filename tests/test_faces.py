"""Faces: detectors on real photos and anime art, box enlargement, alignment and paste-back."""

from pathlib import Path

import numpy as np
import pytest

from factory import faces
from factory.errors import ModelLoadError, UserError
from factory.images import read_image

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
CASCADE = ASSETS / "models" / "lbpcascade_animeface.xml"


def asset(relative: str) -> Path:
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(f"shared asset {relative} not found beside the repository (../shared/assets)")
    return path


@pytest.fixture(scope="module")
def obama_and_biden():
    return read_image(asset("faces/face_recognition/test/obama_and_biden.jpg"))


@pytest.mark.parametrize("name", ["mediapipe", "haar", "dlib"])
def test_every_face_is_found_largest_first(name, obama_and_biden):
    image = obama_and_biden[::2, ::2].copy() if name == "dlib" else obama_and_biden  # dlib is slow on 2000 px
    found = faces.build_detector(name).detect(image)
    assert len(found) >= 2  # dlib also finds the half-hidden child at the bottom right
    assert all(a.size >= b.size for a, b in zip(found, found[1:]))
    centres_x = sorted((f.box[0] + f.box[2]) / 2 / image.shape[1] for f in found[:2])
    assert centres_x[0] < 0.5 < centres_x[1]  # one face on each side of the photo
    for face in found:
        kp = face.keypoints5()
        assert kp.shape == (5, 2)
        assert kp[0, 0] < kp[1, 0] and kp[:2, 1].mean() < kp[3:, 1].mean()  # eyes left/right, above the mouth


def test_mediapipe_ignores_the_mesh_false_positive_on_a_single_portrait():
    image = read_image(asset("faces/face_recognition/test/obama1.jpg"))
    found = faces.shared_detector("mediapipe").detect(image)
    assert len(found) == 1 and found[0].scheme == "mediapipe478" and found[0].landmarks.shape == (478, 2)


def test_anime_cascade_finds_34_of_36_tiles():
    grid = read_image(asset("anime/grid36.jpg"))
    detector = faces.build_detector("anime", cascade=asset("models/lbpcascade_animeface.xml"), enlarge=1.5, min_window=64)
    hits = sum(bool(detector.detect(grid[r:r + 512, c:c + 512])) for r in range(0, 3072, 512) for c in range(0, 3072, 512))
    assert hits == 34  # 33 without the padding around the picture (tile 25's face sits at the top edge)


def test_enlarged_box_keeps_the_keypoints_of_the_original_box():
    face = faces.Face(box=np.array([100.0, 50.0, 200.0, 170.0]), score=1.0)
    big = face.enlarged(1.5)
    np.testing.assert_allclose(big.box, [75, 20, 225, 200])
    np.testing.assert_allclose(big.keypoints5(), face.keypoints5())
    assert big.scheme == "keypoints5"
    assert face.enlarged(1.0) is face


def test_detector_enlarges_boxes_and_filters_by_the_original_size():
    class Fixed:
        def detect(self, image):
            return [faces.Face(np.array([0.0, 0.0, 40.0, 40.0]), 1.0), faces.Face(np.array([0.0, 0.0, 100.0, 100.0]), 1.0)]

    found = faces.Detector(Fixed(), min_size=48, enlarge=2.0).detect(np.zeros((8, 8, 3), np.uint8))
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, [-50, -50, 150, 150])


def test_user_mistakes_name_the_field(tmp_path):
    with pytest.raises(UserError, match="faces.cascade"):
        faces.build_detector("anime")
    with pytest.raises(ModelLoadError, match="missing.xml"):
        faces.build_detector("anime", cascade=tmp_path / "missing.xml")
    (tmp_path / "bad.xml").write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ModelLoadError, match="bad.xml"):
        faces.build_detector("anime", cascade=tmp_path / "bad.xml")
    with pytest.raises(UserError, match="faces.detector"):
        faces.build_detector("nope")


def _textured(h=160, w=200, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_paste_back_of_an_unchanged_crop_restores_the_image():
    image = _textured()
    kp = np.array([[80.0, 70.0], [120.0, 72.0], [100.0, 90.0], [85.0, 110.0], [115.0, 111.0]])
    matrix = faces.alignment_matrix(kp, 128)
    pasted = faces.paste_back(image, faces.crop(image, matrix, 128), matrix, feather=0.1)
    assert np.abs(pasted.astype(int) - image).mean() < 2.0


def test_paste_back_changes_only_the_crop_region_with_a_feathered_edge():
    image = np.full((160, 200, 3), 40, np.uint8)
    kp = np.array([[80.0, 70.0], [120.0, 70.0], [100.0, 90.0], [85.0, 110.0], [115.0, 110.0]])
    matrix = faces.alignment_matrix(kp, 64)
    white = np.full((256, 256, 3), 240, np.uint8)  # processed at 4x the crop size
    pasted = faces.paste_back(image, white, matrix, feather=0.2, crop_size=64)
    centre = faces.transform_points(np.array([[32.0, 32.0]]), faces.invert_matrix(matrix))[0].round().astype(int)
    assert pasted[centre[1], centre[0], 0] == 240
    corners = faces.transform_points(np.array([[0.0, 0.0], [63.0, 63.0]]), faces.invert_matrix(matrix))
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    outside = np.ones(image.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert (pasted[outside] == 40).all()
    # the feather: values rise gradually from the crop edge to its inside
    row = pasted[centre[1], :, 0].astype(int)
    ramp = row[(row > 40) & (row < 240)]
    assert len(ramp) >= 4


def test_an_oval_paste_blends_the_head_and_leaves_the_crop_corners_as_they_were():
    image = np.full((200, 200, 3), 40, np.uint8)
    kp = np.array([[80.0, 80.0], [120.0, 80.0], [100.0, 100.0], [85.0, 120.0], [115.0, 120.0]])
    matrix = faces.alignment_matrix(kp, 64)
    white = np.full((64, 64, 3), 240, np.uint8)
    to_image = faces.invert_matrix(matrix)
    centre, corner = faces.transform_points(np.array([[32.0, 30.0], [8.0, 8.0]]), to_image).round().astype(int)
    square, oval = (faces.paste_back(image, white, matrix, oval=shape) for shape in (False, True))
    assert square[centre[1], centre[0], 0] == oval[centre[1], centre[0], 0] == 240
    assert square[corner[1], corner[0], 0] > 200 and oval[corner[1], corner[0], 0] == 40  # no box around the head
    assert (oval <= square).all()


def test_alignment_round_trip_of_points():
    kp = np.array([[80.0, 70.0], [124.0, 78.0], [100.0, 95.0], [84.0, 114.0], [112.0, 119.0]])
    matrix = faces.alignment_matrix(kp, 256, margin=1.2)
    aligned = faces.transform_points(kp, matrix)
    assert abs(aligned[0, 1] - aligned[1, 1]) < 0.02 * 256  # eyes about level (FFHQ also uses the mouth)
    assert aligned[0, 0] < 128 < aligned[1, 0]
    np.testing.assert_allclose(faces.transform_points(aligned, faces.invert_matrix(matrix)), kp, atol=1e-9)
