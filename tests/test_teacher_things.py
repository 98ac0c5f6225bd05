"""Things faces carry, drawn by the webtoon teacher (issue 25 item 3): glasses, hair colour, beards, coloured light."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import deltaE_ciede2000

from factory.sample import Sample
from factory.teachers.glasses import find_glasses
from factory.teachers.skin_tone import median_lab, skin_mask
from factory.teachers.webtoon import FaceFrame, WebtoonConfig, polygon_mask, read_regions, skin_region
from factory.teachers.webtoon_fit import align_face
from warping.landmarks import FACE_OVAL

# Labelled by looking at them (benchmarks/teacher_things.py labels every shared photo).
WITH_GLASSES = ["deepface/img24.jpg", "deepface/img25.jpg"]
WITHOUT_GLASSES = ["deepface/img20.jpg", "deepface/img38.jpg", "deepface/img59.jpg",
                   "face_recognition/train/kit_harington/john2.jpeg", "face_recognition/test/alex_lacamoire1.jpg"]


@pytest.fixture(scope="module")
def portraits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The packaged portraits, aligned as the face stage aligns them (256 px)."""
    from factory.sources.folders import packaged_portraits

    return {name: align_face(image) for name, image in packaged_portraits().items()}


@pytest.fixture(scope="module")
def teacher():
    return WebtoonConfig(kind="webtoon").build()


def shared(assets, name: str) -> tuple[np.ndarray, np.ndarray]:
    from factory.images import read_image

    return align_face(read_image(assets / "faces" / name))


def draw(teacher, aligned, seed: int = 3) -> tuple[np.ndarray, dict]:
    crop, points = aligned
    sample = Sample(key=f"s{seed}", index=0, seed=seed, real=crop)
    sample.meta["faces"] = {"side": "real", "scheme": "mediapipe478", "landmarks": points.tolist()}
    return teacher.draw(crop, sample)


def frames_drawn(toon: np.ndarray, glasses) -> float:
    """Share of the fitted rims' points where the toon is dark (a frame is drawn there)."""
    rims = np.round(np.vstack(glasses.rims)).astype(int)
    lightness = cv2.cvtColor(toon, cv2.COLOR_RGB2Lab)[..., 0][rims[:, 1], rims[:, 0]] * (100 / 255)
    return float((lightness < 40).mean())


def test_glasses_are_drawn_as_frames_on_the_photos_that_wear_them(assets, portraits, teacher):
    faces = [portraits["matplotlib:grace_hopper"]] + [shared(assets, name) for name in WITH_GLASSES]
    for crop, points in faces:
        toon, meta = draw(teacher, (crop, points))
        glasses = find_glasses(crop, points)
        assert meta["glasses"] and glasses is not None
        assert frames_drawn(toon, glasses) > 0.8
        again, _ = draw(teacher, (crop, points))
        assert again.tobytes() == toon.tobytes()


def test_no_frames_on_photos_without_glasses(assets, portraits, teacher):
    faces = [aligned for name, aligned in portraits.items() if name != "matplotlib:grace_hopper"]
    faces += [shared(assets, name) for name in WITHOUT_GLASSES]  # the hardest: beards, hair across the eyes, wrinkles
    for crop, points in faces:
        assert find_glasses(crop, points) is None
    assert not draw(teacher, faces[0])[1]["glasses"]


def test_frames_painted_on_a_face_are_found_where_they_are(portraits):
    crop, points = (value.copy() for value in portraits["skimage:astronaut"])
    face = FaceFrame(points)
    boxes = []
    for iris in (468, 473):
        centre = points[iris]
        half = np.array([face.iod * 0.45, face.iod * 0.28])
        boxes.append((centre - half, centre + half))
        cv2.rectangle(crop, tuple(np.round(centre - half).astype(int)), tuple(np.round(centre + half).astype(int)),
                      (25, 20, 20), 3)
    cv2.line(crop, tuple(np.round(boxes[0][1] * [1, 0] + boxes[0][0] * [0, 1]).astype(int)),
             tuple(np.round(boxes[1][0]).astype(int)), (25, 20, 20), 3)
    glasses = find_glasses(crop, points)
    assert glasses is not None and find_glasses(portraits["skimage:astronaut"][0], points) is None
    for rim, (low, high) in zip(glasses.rims, boxes):
        centre = (low + high) / 2
        assert np.abs(rim.mean(0) - centre).max() < face.iod * 0.15
        assert abs(np.ptp(rim[:, 0]) - (high - low)[0]) < face.iod * 0.2


def synthetic_head(portraits, face_lab, beyond_lab) -> tuple[np.ndarray, FaceFrame, np.ndarray]:
    """The astronaut's mesh on two colours (CIELAB) as varied as a photo's: ``face_lab`` in the face oval,
    ``beyond_lab`` around it."""
    crop, points = portraits["skimage:astronaut"]
    oval = polygon_mask(crop.shape, points[FACE_OVAL]) > 0.5
    lab = np.where(oval[..., None], np.float32(face_lab), np.float32(beyond_lab)).astype(np.float32)
    lab[..., 0] += np.linspace(-10, 10, lab.shape[1], dtype=np.float32)[None]  # light from one side
    lab += cv2.GaussianBlur(np.random.default_rng(0).normal(0, 4.0, lab.shape).astype(np.float32), (0, 0), 1.5)
    return lab, FaceFrame(points), oval


def test_a_bald_scalp_of_the_face_colour_stays_skin(portraits):
    """Hair beyond the face is told from skin by hue and chroma; a scalp of the face's own colour passes."""
    lab, face, oval = synthetic_head(portraits, (70, 16, 28), (64, 17, 30))
    skin, _ = skin_region(lab, face, np.ones(oval.shape, np.float32))
    near = cv2.distanceTransform((~oval).astype(np.uint8), cv2.DIST_L2, 3) < face.iod * 0.5
    assert (skin[near & ~oval] > 0).mean() > 0.5


@pytest.mark.parametrize("name", ["deepface/img28.jpg", "deepface/img23.jpg", "deepface/img12.jpg"])
def test_hair_keeps_its_colour_and_blonde_hair_is_drawn_as_hair(assets, teacher, name):
    crop, points = shared(assets, name)
    from factory.stages.segment import MediapipeMasker

    person = MediapipeMasker()(crop)
    regions = read_regions(crop, points, person)
    face = FaceFrame(points)
    beyond = cv2.distanceTransform((polygon_mask(crop.shape, points[FACE_OVAL]) < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    top = (person > 0.5) & (beyond > face.iod * 0.45) & (beyond < face.iod * 0.9) & face.above(crop.shape, 468)
    assert (regions.skin[top] > 0).mean() < 0.2  # the top of the head is hair, not skin (img12: 72% before)
    hair = regions.hair > 0
    toon, _ = draw(teacher, (crop, points))
    assert deltaE_ciede2000(median_lab(crop, hair), median_lab(toon, hair)) < 12


def test_a_beard_is_drawn_in_the_hairs_colour(assets, teacher):
    crop, points = shared(assets, "deepface/img16.jpg")
    from factory.stages.segment import MediapipeMasker

    regions = read_regions(crop, points, MediapipeMasker()(crop))
    beard, hair = regions.beard > 0, regions.hair > 0
    assert beard.sum() > 0.02 * beard.size
    toon, _ = draw(teacher, (crop, points))
    drawn_beard, drawn_hair = median_lab(toon, beard), median_lab(toon, hair)
    assert np.abs(drawn_beard[1:] - drawn_hair[1:]).max() < 4  # the same a*, b*: the hair's colour


@pytest.mark.parametrize("gains", [(0.75, 0.9, 1.3), (0.85, 1.15, 0.8), (1.15, 0.8, 1.2)])
def test_coloured_light_does_not_draw_skin_grey_or_blue(portraits, teacher, gains):
    crop, points = portraits["toonfactory:barack-obama.jpg"]
    lit = np.clip(crop * np.float32(gains), 0, 255).astype(np.uint8)
    toon, _ = draw(teacher, (lit, points))
    _, a, b = median_lab(toon, skin_mask(toon.shape, points, ("forehead",)))
    assert 8 <= np.degrees(np.arctan2(b, a)) <= 77 and np.hypot(a, b) > 12  # skin hues in white light: 12-71°


def drawn_and_photo_hair(teacher, aligned) -> tuple[np.ndarray, np.ndarray]:
    """(toon L*, photo L*) over the hair the drawing reads its colour from (:func:`hair_core`), CIELAB L*."""
    from factory.stages.segment import MediapipeMasker
    from factory.teachers.webtoon import hair_core

    crop, points = aligned
    person = MediapipeMasker()(crop)
    regions = read_regions(crop, points, person)
    core = hair_core(regions.lab, regions.hair, person, regions.person_skin, regions.face.iod)
    toon, _ = draw(teacher, aligned)
    return tuple(cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0][core] for image in (toon, crop))


@pytest.mark.parametrize("name", ["toonfactory:barack-obama.jpg", "matplotlib:grace_hopper"])
def test_black_hair_and_a_black_cap_are_drawn_dark(portraits, teacher, name):
    """Black hair was drawn light grey (issue 25): its tones came from ears, temples, the background around the head
    and a cap's white crown, spread 1.2x apart (Obama: median 55.5 against the photo's 49.8, 90th percentile 65.9)."""
    toon, photo = drawn_and_photo_hair(teacher, portraits[name])
    assert np.median(toon) <= np.median(photo) + 4
    assert np.percentile(toon, 90) <= np.median(photo) + 15


def test_white_hair_is_drawn_white_not_a_grey_helmet(portraits, teacher):
    toon, photo = drawn_and_photo_hair(teacher, portraits["toonfactory:joe-biden.jpg"])
    assert abs(np.median(toon) - np.median(photo)) < 8
    assert np.percentile(toon, 25) > np.median(photo) - 20  # no dark grey tone on white hair (44 against 74 before)


def test_hair_is_drawn_the_same_for_the_same_seed(portraits, teacher):
    aligned = portraits["toonfactory:barack-obama.jpg"]
    assert np.array_equal(draw(teacher, aligned, seed=5)[0], draw(teacher, aligned, seed=5)[0])


@pytest.mark.parametrize("name", ["toonfactory:joe-biden.jpg", "deepface/img38.jpg"])
def test_grey_hair_is_not_taken_for_skin(assets, portraits, name):
    """Above the face, pixels as grey as grey hair (chroma under 0.6 of the face's) are hair, never skin. (Of the
    30.8% of Biden's hair probe the benchmark counted as skin, none is grey: it is his high bare forehead.)"""
    from factory.stages.segment import MediapipeMasker

    crop, points = portraits[name] if ":" in name else shared(assets, name)
    person = MediapipeMasker()(crop)
    regions = read_regions(crop, points, person)
    face = FaceFrame(points)
    beyond = cv2.distanceTransform((polygon_mask(crop.shape, points[FACE_OVAL]) < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    top = (person > 0.5) & (beyond > face.iod * 0.2) & (beyond < face.iod * 0.9) & face.above(crop.shape, 468)
    lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    grey = top & (np.hypot(lab[..., 1], lab[..., 2]) < 0.6 * np.hypot(*regions.person_skin[1:]))
    assert grey.sum() > 500
    assert (regions.skin[grey] > 0).mean() < 0.05


def hair_probe_de(teacher, aligned, person: np.ndarray) -> float:
    """Median CIEDE2000, photo vs toon, 0.45-0.9 eye distances above the face oval inside the selfie mask."""
    from factory.teachers.skin_tone import to_lab

    crop, points = aligned
    face = FaceFrame(points)
    beyond = cv2.distanceTransform((polygon_mask(crop.shape, points[FACE_OVAL]) < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    probe = (person > 0.5) & (beyond > face.iod * 0.45) & (beyond < face.iod * 0.9) & face.above(crop.shape, 468)
    return float(np.median(deltaE_ciede2000(to_lab(crop)[probe], to_lab(draw(teacher, aligned)[0])[probe])))


def test_the_backdrop_the_selfie_mask_takes_in_is_not_drawn_as_hair(assets, teacher):
    """img27: golden hair before a pink wall the selfie mask takes in whole; the head cut gives the wall back to
    the background (15.8 before it)."""
    from factory.stages.segment import MediapipeMasker

    aligned = shared(assets, "deepface/img27.jpg")
    assert hair_probe_de(teacher, aligned, MediapipeMasker()(aligned[0])) <= 12


@pytest.mark.parametrize("name", ["deepface/img47.jpg", "deepface/img16.jpg"])
def test_hair_before_a_wall_of_its_colour_is_kept(assets, name):
    """Dark hair before a dark blue wall (img47), brown hair before a brown wall (img16): the head cut gives back
    what is coloured like the hair beside the face, so none of the hair above the face is cut."""
    from factory.stages.segment import MediapipeMasker
    from factory.teachers.webtoon import head_cut

    crop, points = shared(assets, name)
    person = MediapipeMasker()(crop)
    face = FaceFrame(points)
    beyond = cv2.distanceTransform((polygon_mask(crop.shape, points[FACE_OVAL]) < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    top = (person > 0.5) & (beyond > face.iod * 0.2) & (beyond < face.iod * 0.9) & face.above(crop.shape, 468)
    assert (head_cut(crop, person, face)[top] < 0.5).mean() < 0.01
