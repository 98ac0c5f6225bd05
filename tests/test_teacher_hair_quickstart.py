"""Hair colour kept on the pairs the quickstart recipe makes (issue 25 item 3): its wide, jittered crop, the warp
before the teacher and the augmentation on both sides, where the selfie mask takes in more background than on
the aligned crops of tests/test_teacher_things.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.color import deltaE_ciede2000

from factory.teachers.skin_tone import to_lab
from factory.teachers.webtoon import FaceFrame, polygon_mask
from warping.landmarks import FACE_OVAL

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def quickstart_pair(path: Path):
    """(real, toon, landmarks) of one pair the quickstart's stages make of ``path``, gates left out."""
    from factory.images import DEFAULT_MAX_PIXELS
    from factory.pipeline import build_pipeline
    from factory.sample import Sample
    from factory.sources.folders import ImageSource
    from factory.stages.gates import GateStage
    from toonfactory.recipe import load

    recipe = load(QUICKSTART, []).recipe
    stages = [stage for stage in build_pipeline(recipe).stages if not isinstance(stage, GateStage)]
    stream = iter([ImageSource([path], "real", DEFAULT_MAX_PIXELS).load(Sample.create("00000_000000", 0, recipe.seed))])
    for stage in stages:
        stream = stage(stream)
    made = next(stream)
    return made.real, made.toon, np.asarray(made.meta["faces"]["landmarks"], np.float64)


def hair_de(real: np.ndarray, toon: np.ndarray, points: np.ndarray) -> float:
    """Median CIEDE2000, real vs toon, above the eyes 0.45-0.9 eye distances outside the face oval (the person's)."""
    from factory.stages.segment import MediapipeMasker

    face = FaceFrame(points)
    oval = (polygon_mask(real.shape, points[FACE_OVAL]) > 0.5).astype(np.uint8)
    beyond = cv2.distanceTransform(1 - oval, cv2.DIST_L2, 3)
    probe = (MediapipeMasker()(real) > 0.5) & (beyond > face.iod * 0.45) & (beyond < face.iod * 0.9) & face.above(
        real.shape, 468)
    return float(np.median(deltaE_ciede2000(to_lab(real)[probe], to_lab(toon)[probe])))


@pytest.mark.parametrize("name", [
    "face_recognition/train/kit_harington/john1.jpeg",  # dark brown hair before a beige wall
    pytest.param("deepface/img26.jpg", marks=pytest.mark.xfail(
        strict=True, reason="blonde hair with a dark band before a magenta poster the selfie mask takes in: drawn "
                            "grey-lilac (CIEDE2000 about 20); README, 'Hair on the quickstart's pairs'")),
])
def test_hair_colour_is_kept_on_the_quickstarts_pairs(assets, name):
    real, toon, points = quickstart_pair(assets / "faces" / name)
    assert hair_de(real, toon, points) <= 12
