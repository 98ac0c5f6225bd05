"""Warps on the shared real and webtoon faces, the warp stage, and `toonfactory warp`."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from factory.errors import UserError
from factory.faces import shared_detector
from factory.images import read_image
from factory.sample import Sample
from factory.stages.warp import WarpConfig, face68
from warping import landmarks as lm
from warping.profile import load_profile
from warping.warp import build_warp

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
PHOTOS = ("jisoo.jpg", "yooa.jpg", "paint_boy.jpg")  # in the webtoon folder but not webtoon drawings


def folder(relative: str) -> Path:
    path = ASSETS / relative
    if not path.is_dir():
        pytest.skip(f"shared assets {relative} not found beside the repository (../shared/assets)")
    return path


def small(path: Path, side: int = 256) -> np.ndarray:
    """An image decoded at reduced size (JPEG draft mode) and scaled so its longest side is ``side``."""
    with Image.open(path) as img:
        img.draft("RGB", (side, side))
        image = np.asarray(img.convert("RGB"))
    scale = side / max(image.shape[:2])
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def shared_faces():
    """(name, image, face68 points, direction) for every shared face mediapipe finds."""
    detector = shared_detector("mediapipe", 16)
    found = []
    for sub, direction in (("faces/deepface", "forward"), ("webtoon/characters", "inverse")):
        for path in sorted(folder(sub).glob("*")):
            if path.suffix.lower() not in (".jpg", ".png") or path.name in PHOTOS:
                continue
            image = small(path)
            points = face68(image, detector)
            if points is not None:
                found.append((path.name, image, points, direction))
    return found


@pytest.mark.slow
def test_no_fold_on_any_shared_face_for_strengths_0_to_1(shared_faces):
    assert len(shared_faces) >= 61 + 25
    profile = load_profile()
    for name, image, points, direction in shared_faces:
        for method in ("tps", "pa"):
            for strength in (0.25, 0.5, 0.75, 1.0):
                warp = build_warp(points, profile.target(points, direction, strength), image.shape[:2], method)
                assert warp.jacobian_determinant().min() > 0, (name, method, strength)


def test_redetected_landmarks_move_toward_the_target(shared_faces):
    profile = load_profile().with_knobs(eye_scale=1.15, face_length=0.95)
    detector = shared_detector("mediapipe", 16)
    before, after = [], []
    for name, image, points, direction in [f for f in shared_faces if f[3] == "forward"][:12]:
        target = profile.target(points, "forward", 1.0)
        warped = build_warp(points, target, image.shape[:2], "tps").apply(image)
        again = face68(warped, detector)
        assert again is not None, name
        scale = lm.eye_distance(target)
        before.append(np.linalg.norm(points - target, axis=1).mean() / scale)
        after.append(np.linalg.norm(again - target, axis=1).mean() / scale)
    assert np.mean(after) < 0.7 * np.mean(before)


def test_forward_then_inverse_on_a_real_face(shared_faces):
    name, image, points, _ = shared_faces[0]
    target = load_profile().target(points, "forward", 1.0)
    forward = build_warp(points, target, image.shape[:2], "tps")
    restored = build_warp(forward.dst, forward.src, image.shape[:2], "tps").apply(forward.apply(image))
    moved = np.abs(forward.displacement).max(-1) > 0.5
    assert np.abs(restored.astype(int) - image)[moved].mean() < 4.0


class FixedDetector:
    """Finds one face whose face68 landmarks are given."""

    def __init__(self, points):
        from factory.faces import Face

        self.face = Face(np.array([*points.min(0), *points.max(0)]), 1.0, points, "dlib68")

    def detect(self, image):
        return [self.face] if image.any() else []


def synthetic_sample(key="a", size=128):
    points = load_profile().mean_real * 18 + [size / 2, size * 0.42]
    sample = Sample.create(key, 0, recipe_seed=7)
    rng = np.random.default_rng(0)
    sample.real = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    sample.mask = np.zeros((size, size), np.uint8)
    sample.mask[30:110, 35:95] = 255
    return sample, points


def test_stage_warps_the_source_and_mask_and_records_meta():
    from factory.stages.warp import WarpStage

    sample, points = synthetic_sample()
    original = sample.real.copy()
    config = WarpConfig(strength=0.8, strength_jitter=0.3, knobs={"eye_scale": 1.2})
    stage = WarpStage(config, detector=FixedDetector(points))
    out = next(stage([sample]))
    meta = out.meta["warp"]
    assert out.reject_reason is None
    assert meta["side"] == "real" and meta["direction"] == "forward" and meta["mask_warped"]
    assert 0.5 <= meta["strength"] <= 0.8 and meta["knobs"]["eye_scale"] == 1.2
    assert len(meta["src"]) == len(meta["dst"]) == 68
    assert not np.array_equal(out.real, original) and set(np.unique(out.mask)) <= {0, 255}
    again, _ = synthetic_sample()
    assert next(stage([again])).meta["warp"] == meta  # the jittered strength is seeded by the sample key


def test_stage_on_a_toon_side_and_its_rejects():
    from factory.stages.warp import WarpStage

    sample, points = synthetic_sample()
    stage = WarpStage(WarpConfig(placement="toon"), detector=FixedDetector(points))
    assert next(stage([sample])).reject_reason == "warp_no_toon_image"
    sample, _ = synthetic_sample()
    sample.toon = sample.real.copy()
    out = next(stage([sample]))
    assert out.meta["warp"]["direction"] == "forward" and not out.meta["warp"]["mask_warped"]
    blank, _ = synthetic_sample()
    blank.real[:] = 0
    assert next(WarpStage(WarpConfig(), detector=FixedDetector(points))([blank])).reject_reason == "warp_no_landmarks"


def test_bad_profile_is_a_user_error_naming_the_field(tmp_path):
    with pytest.raises(UserError, match="warp.profile"):
        WarpConfig(profile=tmp_path / "nope.json").build()


def test_recipe_accepts_a_warp_section():
    from factory.recipe import validate

    recipe = validate({"source": {"kind": "samples"}, "teacher": {"kind": "cartoonize"},
                       "warp": {"method": "pa", "placement": "real", "knobs": {"jaw_width": 0.9}}}, "test.yaml")
    assert recipe.warp.method == "pa" and recipe.warp.knobs.jaw_width == 0.9


def test_cli_fit_profile_and_preview(tmp_path):
    from toonfactory.cli import app

    real_dir, toon_dir = tmp_path / "real", tmp_path / "toon"
    real_dir.mkdir()
    toon_dir.mkdir()
    for name in ("img1.jpg", "img2.jpg", "img3.jpg"):
        Image.fromarray(small(folder("faces/deepface") / name)).save(real_dir / name.replace(".jpg", ".png"))
    for name in ("boxer_1.png", "beauty_1.jpg", "ssam_1.png"):
        Image.fromarray(small(folder("webtoon/characters") / name)).save(toon_dir / (name.split(".")[0] + ".png"))
    (toon_dir / "notes.txt").write_text("not an image")
    profile = tmp_path / "profile.json"
    runner = CliRunner()
    result = runner.invoke(app, ["warp", "fit-profile", "--real", str(real_dir), "--toon", str(toon_dir), "--out", str(profile)])
    assert result.exit_code == 0, result.output
    assert load_profile(profile).info["toon_faces"] == 3
    out = tmp_path / "preview.png"
    result = runner.invoke(app, ["warp", "preview", str(real_dir / "img1.png"), "--profile", str(profile),
                                 "--strength", "0.7", "--size", "128", "--out", str(out)])
    assert result.exit_code == 0, result.output
    panels = read_image(out)
    assert panels.shape[1] == 3 * panels.shape[1] // 3 and max(panels.shape[0], panels.shape[1] // 3) == 128
    result = runner.invoke(app, ["warp", "preview", str(real_dir / "img1.png"), "--profile", str(tmp_path / "x.json"),
                                 "--out", str(out)])
    assert result.exit_code == 2 or isinstance(result.exception, UserError)


def test_cli_warp_never_writes_over_a_folder_or_another_kind_of_file(tmp_path):
    """--out photo.jpg was replaced by the preview PNG; --out FOLDER ended in an IsADirectoryError traceback."""
    from toonfactory.cli import app

    photo = tmp_path / "face.png"
    Image.fromarray(small(folder("faces/deepface") / "img1.jpg")).save(photo)
    mine = tmp_path / "holiday.jpg"
    mine.write_bytes(b"my photo")
    runner = CliRunner()
    for args, suffix in ((["preview", str(photo)], ".png"),
                         (["fit-profile", "--real", str(tmp_path), "--toon", str(tmp_path)], ".json")):
        busy = tmp_path / f"busy{suffix}"
        busy.mkdir()
        for out, problem in ((mine, f"expected a {suffix} file"), (busy, "is a folder")):
            result = runner.invoke(app, ["warp", *args, "--out", str(out)])
            assert isinstance(result.exception, UserError) and problem in str(result.exception), result.output
        assert not list(busy.iterdir())
    assert mine.read_bytes() == b"my photo"
