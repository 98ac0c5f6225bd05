"""ITA° (individual typology angle): the skin-tone measure, and the webtoon teacher keeping each person's tone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from factory.teachers.skin_tone import ITA_CLASSES, ita, ita_class, region_ita, skin_ita, skin_mask


def lab_patch(lightness: float, a: float, b: float, size: int = 16) -> np.ndarray:
    """A flat RGB uint8 patch of the given CIELAB colour."""
    lab = np.zeros((size, size, 3), np.float32) + np.array([lightness, a, b], np.float32)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255 + 0.5, 0, 255).astype(np.uint8)


def test_the_angle_of_known_lab_values():
    assert ita(50, 20) == pytest.approx(0.0)
    assert ita(70, 20) == pytest.approx(45.0)
    assert ita(30, 20) == pytest.approx(-45.0)
    assert ita(60, 0) == pytest.approx(90.0)


def test_a_flat_patch_measures_its_own_angle():
    patch = lab_patch(70.0, 10.0, 20.0)
    angle = region_ita(patch, np.ones(patch.shape[:2], bool))
    assert angle == pytest.approx(45.0, abs=1.0)  # uint8 rounding only
    assert region_ita(patch, np.ones(patch.shape[:2], bool)) == angle  # deterministic


def test_dark_and_light_colours_land_in_their_classes():
    full = np.ones((16, 16), bool)
    assert ita_class(region_ita(lab_patch(85.0, 5.0, 12.0), full)) == "very light"
    assert ita_class(region_ita(lab_patch(30.0, 12.0, 18.0), full)) == "dark"
    assert ita_class(region_ita(lab_patch(45.0, 12.0, 20.0), full)) == "brown"
    assert [ita_class(v) for v in (60, 50, 30, 20, 0, -40)] == [name for name, _ in ITA_CLASSES]


def test_the_median_ignores_a_minority_of_drawn_lines():
    patch = lab_patch(70.0, 10.0, 20.0)
    patch[::4] = 0  # a quarter of the rows drawn in black ink
    assert region_ita(patch, np.ones(patch.shape[:2], bool)) == pytest.approx(45.0, abs=1.0)


def test_the_skin_mask_covers_the_regions_it_is_given():
    points = np.zeros((478, 2), np.float32)
    from warping.landmarks import SKIN_REGIONS

    square = [(10, 10), (30, 10), (30, 30), (10, 30)]
    for name, indices in SKIN_REGIONS.items():
        for i, index in enumerate(indices):
            points[index] = square[i % 4]
    mask = skin_mask((64, 64), points)
    assert mask[20, 20] and not mask[40, 40]


def darkened(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The photo with ``factor`` times the light (in linear RGB): the same face with darker skin."""
    linear = (rgb.astype(np.float64) / 255.0) ** 2.2 * factor
    return np.clip(linear ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def portraits() -> dict[str, np.ndarray]:
    from factory.sources.folders import packaged_portraits

    return packaged_portraits()


@pytest.mark.parametrize("name, light, photo_class", [
    ("toonfactory:barack-obama.jpg", 1.0, "light"),  # a dark-skinned man, lit brightly (ITA° about 43)
    ("toonfactory:barack-obama.jpg", 0.2, "dark"),  # the same photo with a fifth of the light
    ("skimage:astronaut", 1.0, "very light"),
])
def test_the_webtoon_teacher_draws_skin_in_the_persons_own_tone(portraits, name, light, photo_class):
    """Issue 25: the toon side's ITA° (cheeks and forehead) is within 8° of the photo's, whatever the
    drawn parameters, and the same sample draws the same skin."""
    from factory.sample import Sample
    from factory.teachers.webtoon import WebtoonConfig
    from factory.teachers.webtoon_fit import align_face

    crop, points = align_face(darkened(portraits[name], light))
    photo = skin_ita(crop, points)
    assert ita_class(photo) == photo_class
    teacher = WebtoonConfig(kind="webtoon").build()

    def toon_ita(seed: int) -> float:
        sample = Sample(key=f"s{seed}", index=0, seed=seed, real=crop)
        sample.meta["faces"] = {"side": "real", "scheme": "mediapipe478", "landmarks": points.tolist()}
        return skin_ita(teacher.draw(crop, sample)[0], points)

    drawn = [toon_ita(seed) for seed in range(3)]
    assert max(abs(angle - photo) for angle in drawn) <= 8.0, (photo, drawn)
    assert toon_ita(0) == drawn[0]
