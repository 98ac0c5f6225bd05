"""Crops that leave the photo: padded with one flat colour (never mirrored), the padded share recorded
in the sample's json, rejected as ``out_of_frame`` above ``gates.max_out_of_frame``, never pasted back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from factory import faces
from factory.sample import Sample
from factory.stages.face_crop import FacesConfig, FaceStage
from factory.stages.gates import GatesConfig, GateStage


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def at_the_edge(astronaut) -> np.ndarray:
    """The astronaut with the photo cut just left of her eye: her face runs off the left edge."""
    return np.ascontiguousarray(astronaut[:, 175:])


def aligned(image: np.ndarray, size: int = 128) -> Sample:
    mask = np.full(image.shape[:2], 255, np.uint8)
    sample = Sample(key="s", index=0, seed=1, real=image, mask=mask)
    return next(iter(FaceStage(FacesConfig(), size)([sample])))


def gate(sample: Sample, **config) -> Sample:
    return next(iter(GateStage(GatesConfig(min_sharpness=0, **config), FacesConfig())([sample])))


def test_a_face_at_the_edge_records_its_padding_and_is_rejected_above_the_threshold(astronaut, at_the_edge):
    centred, edge = aligned(astronaut), aligned(at_the_edge)
    assert centred.meta["faces"]["out_of_frame"] < 0.01
    share = edge.meta["faces"]["out_of_frame"]
    assert 0.15 < share < 0.6
    assert gate(centred).reject_reason is None
    assert gate(aligned(at_the_edge)).reject_reason == "out_of_frame"  # default gates.max_out_of_frame: 0.15
    assert gate(aligned(at_the_edge), max_out_of_frame=share + 0.01).reject_reason is None


def test_padding_is_one_flat_colour_not_a_mirror_and_masks_pad_with_nothing(at_the_edge):
    sample = aligned(at_the_edge)
    matrix = np.asarray(sample.meta["faces"]["matrix"])
    inside = faces.in_frame(at_the_edge.shape, matrix, 128)
    assert abs(1 - inside.mean() - sample.meta["faces"]["out_of_frame"]) < 1e-3
    kernel = np.ones((5, 5), np.uint8)  # away from the frame line, where interpolation mixes both
    outside, well_inside = cv2.erode(1 - inside, kernel) > 0, cv2.erode(inside, kernel) > 0
    padding = sample.real[outside].astype(np.float32)
    assert padding.std(0).max() < 0.5  # a mirror would repeat the face's texture here
    assert np.allclose(padding.mean(0), faces.edge_colour(at_the_edge), atol=1.0)
    assert sample.mask[outside].max() == 0 and sample.mask[well_inside].min() == 255


def test_paste_back_never_paints_padding_over_the_photo(at_the_edge):
    matrix = faces.alignment_matrix(faces.shared_detector("mediapipe").detect(at_the_edge)[0].keypoints5(), 128)
    processed = faces.crop(at_the_edge, matrix, 128)
    honest = faces.paste_back(at_the_edge, processed, matrix)
    processed[faces.in_frame(at_the_edge.shape, matrix, 128) == 0] = (255, 0, 255)  # a student that smears the pad
    assert np.array_equal(faces.paste_back(at_the_edge, processed, matrix), honest)
    assert np.percentile(np.abs(honest.astype(int) - at_the_edge.astype(int)), 99) < 20
