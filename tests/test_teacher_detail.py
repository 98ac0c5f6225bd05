"""Detail where webtoon art has it (issue 25 item 4): layered eyes, hair strands and sheen along the hair's
flow, tapered lines whose width follows the face's size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from factory.sample import Sample
from factory.teachers.webtoon import (EYES, FaceFrame, WebtoonConfig, along_flow, even_lines, hair_flow,
                                      hair_highlight_band, hair_strands, iris_gradient, tapered_lines, to_lab)
from factory.teachers.webtoon_fit import align_face


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    return align_face(skimage.data.astronaut())


def stripes(angle: float, period: float = 6.0, size: int = 128) -> np.ndarray:
    """Dark thin stripes running at ``angle`` (radians, image x/y) on a light grey, float 0-1."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    across = -xs * np.sin(angle) + ys * np.cos(angle)
    return (0.7 - 0.3 * (np.abs((across % period) - period / 2) < 0.8)).astype(np.float32)


def test_open_lines_thin_toward_their_ends_closed_lines_keep_one_width():
    shape = np.zeros((64, 160), np.uint8)
    cv2.line(shape, (10, 20), (150, 20), 1, 3)
    cv2.circle(shape, (80, 45), 12, 1, 2)
    alpha = tapered_lines(shape, 4.0, 20.0)
    widths = (alpha[:32] > 0.5).sum(0)
    assert widths[12] < widths[80] and widths[80] >= 3 and widths[148] < widths[80]
    ring, even = alpha[32:].sum(), even_lines(shape, 4.0)[32:].sum()  # the ring has no end: one width all round
    assert abs(ring - even) < 0.03 * even


def test_outlines_are_as_wide_as_the_face_is_large(astronaut):
    """The same face drawn at 256 and 512 px: the outlines are twice as wide (they are a share of its size)."""
    from factory.teachers.webtoon import outline_mask, read_regions

    crop, points = astronaut
    widths = []
    for factor in (1, 2):
        size = (crop.shape[1] * factor,) * 2
        image = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC)
        regions = read_regions(image, points * factor, np.ones(size, np.float32))
        gray = cv2.cvtColor(regions.smoothed, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        alpha = outline_mask(gray, regions.skin, regions.person, regions.hair, regions.face, 0.035 * regions.face.iod,
                             factor)
        inked = (alpha > 0.5).astype(np.uint8)
        middle = cv2.ximgproc.thinning(inked * 255) > 0
        widths.append(np.median(cv2.distanceTransform(inked, cv2.DIST_L2, 3)[middle]) * 2)
    assert 1.6 < widths[1] / widths[0] < 2.4


@pytest.mark.parametrize("angle", [0.3, 1.2, 2.4])
def test_hair_flow_and_strands_run_along_the_hair(angle):
    gray = stripes(angle)
    hair = np.zeros(gray.shape, np.uint8)
    cv2.circle(hair, (64, 64), 55, 1, -1)
    flow = hair_flow(gray, hair, 64.0)
    inside = cv2.erode(hair, np.ones((15, 15), np.uint8)) > 0
    along = np.abs(flow[inside] @ np.array([np.cos(angle), np.sin(angle)], np.float32))
    assert np.median(along) > 0.95
    strands = hair_strands(gray, hair, flow, 64.0, 1.0, 1.5) > 0.5
    assert strands.sum() > 100
    count, labels, stats, _ = cv2.connectedComponentsWithStats(strands.astype(np.uint8))
    assert np.hypot(stats[1:, 2], stats[1:, 3]).max() > 64 * 0.8  # long strokes, not dashes


def test_averaging_along_the_flow_keeps_lines_that_run_with_it_and_fades_those_across():
    gray = stripes(0.0, period=5.0)
    along = np.dstack([np.ones_like(gray), np.zeros_like(gray)])
    across = np.dstack([np.zeros_like(gray), np.ones_like(gray)])
    everywhere = np.ones(gray.shape, bool)
    contrast = {name: float(np.ptp(along_flow(gray, flow, 24.0, everywhere)[20:108, 20:108])) for name, flow in
                (("along", along), ("across", across))}
    assert contrast["along"] > 0.25 and contrast["along"] > 2.5 * contrast["across"]


def test_the_hair_sheen_is_a_band_combed_along_the_flow_and_stays_in_the_hair(astronaut):
    crop, points = astronaut
    face = FaceFrame(points)
    hair = np.ones(crop.shape[:2], np.uint8)
    hair[int(points[10][1]):] = 0
    vertical = np.dstack([np.zeros(crop.shape[:2], np.float32), np.ones(crop.shape[:2], np.float32)])
    band = hair_highlight_band(crop.shape, face, hair, vertical, 1.5)
    assert band.max() > 0.9 and not band[cv2.dilate(hair, np.ones((7, 7), np.uint8)) == 0].any()
    assert np.array_equal(band, hair_highlight_band(crop.shape, face, hair, vertical, 1.5))  # seeded
    horizontal = vertical[..., ::-1].copy()
    edges = {name: np.abs(np.diff((hair_highlight_band(crop.shape, face, hair, flow, 1.5) > 0.5).astype(np.float32),
                                  axis=1)).sum() for name, flow in (("vertical", vertical), ("horizontal", horizontal))}
    assert edges["vertical"] > 1.3 * edges["horizontal"]  # teeth along a vertical flow cut the band across x


def test_irises_are_dark_under_the_lid_and_light_below():
    colour = iris_gradient((64, 64), np.array([32.0, 32.0]), 12.0, np.array([0.0, -1.0]), np.array([35.0, 8.0, 20.0]))
    lightness = to_lab(np.clip(colour, 0, 255).astype(np.uint8))[..., 0]
    assert lightness[41, 32] > lightness[23, 32] + 15


def test_each_drawn_eye_has_an_iris_gradient_and_two_catch_lights(astronaut):
    crop, points = astronaut
    teacher = WebtoonConfig(kind="webtoon", highlight_size=[0.3, 0.3], iris_scale=[1.1, 1.1]).build()
    sample = Sample(key="eyes", index=0, seed=1, real=crop, mask=np.full(crop.shape[:2], 255, np.uint8))
    sample.meta["faces"] = {"side": "real", "scheme": "mediapipe478", "landmarks": points.tolist()}
    toon = teacher.draw(crop, sample)[0]
    lightness = to_lab(toon)[..., 0]
    face = FaceFrame(points)
    ys, xs = np.mgrid[0:crop.shape[0], 0:crop.shape[1]].astype(np.float32)
    for _, _, centre_index, ring in EYES:
        centre = points[centre_index]
        radius = max(float(np.linalg.norm(points[ring] - centre, axis=1).mean()) * 1.1, face.iod * 0.06)
        dx, dy = xs - centre[0], ys - centre[1]
        r = np.hypot(dx, dy) / radius
        down = -(dx * face.up[0] + dy * face.up[1]) / radius
        spots = ((lightness > 90) & (r < 0.95)).astype(np.uint8)
        assert cv2.connectedComponents(spots)[0] - 1 == 2
        painted = (r > 0.5) & (r < 0.85) & (lightness > 10) & (lightness < 85)
        assert np.median(lightness[painted & (down > 0.25)]) > np.median(lightness[painted & (down < -0.25)]) + 5
