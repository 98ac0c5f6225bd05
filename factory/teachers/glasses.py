"""Glasses on an aligned face photo, found so that the webtoon teacher can draw them as clean frames.

A frame is a thin dark ridge. Two lens rims are fitted at once as one mirrored pair of rounded
rectangles (superellipses) around the mesh's irises: width, height and offset from the iris are
searched on a grid, in units of the inter-ocular distance, and a pair scores the 40th percentile
of the ridge strength along the lower two thirds of both rims (the upper third is left out: brows
are ridges too). A bridge scores the darkest row of ridges running across the nose between the
eyes. Glasses are there when rims and bridge together pass ``GLASSES_SCORE``, tuned on the shared
test photos (3 with glasses score 0.045-0.14, the 75 without at most 0.018).

The module reads the 478-point mediapipe mesh itself (no import of the webtoon teacher), so the
teacher can import it.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from warping.landmarks import IRISES, MOUTH_CORNERS, TEMPLES

GLASSES_SCORE = 0.028
# Candidate rims, times the inter-ocular distance: half width, half height, outward and upward offset.
_GRID = np.stack([a.ravel() for a in np.meshgrid(np.linspace(0.4, 0.7, 7), np.linspace(0.2, 0.4, 5),
                                                  np.linspace(-0.05, 0.2, 6), np.linspace(-0.18, 0.08, 6),
                                                  indexing="ij")], 1)
_ANGLES = np.linspace(0, 2 * np.pi, 64, endpoint=False)
# A superellipse of exponent 4 (a rounded rectangle) on the unit square, and its lower two thirds.
_UNIT = np.stack([np.sign(np.cos(_ANGLES)) * np.abs(np.cos(_ANGLES)) ** 0.5,
                  np.sign(np.sin(_ANGLES)) * np.abs(np.sin(_ANGLES)) ** 0.5], 1)
_LOWER = _UNIT[:, 1] < 0.3


class Glasses(NamedTuple):
    """Frames to draw, in image pixels: two closed rims, a bridge, two arms; their colour (RGB) and the score."""

    rims: tuple[np.ndarray, np.ndarray]
    bridge: np.ndarray
    arms: tuple[np.ndarray, np.ndarray]
    colour: np.ndarray
    score: float


def face_axes(points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(inter-ocular distance, unit right vector, unit up vector) of a mediapipe478 mesh."""
    right = points[IRISES[1]] - points[IRISES[0]]
    iod = float(max(np.linalg.norm(right), 4.0))
    right = right / max(np.linalg.norm(right), 1e-6)
    up = (points[IRISES[0]] + points[IRISES[1]]) / 2 - (points[MOUTH_CORNERS[0]] + points[MOUTH_CORNERS[1]]) / 2
    return iod, right, up / max(np.linalg.norm(up), 1e-6)


def dark_ridges(gray: np.ndarray, iod: float) -> np.ndarray:
    """How much darker each pixel is than its surround at the scale of a frame (float, 0-1 grey levels)."""
    sigma = max(0.8, iod * 0.02)
    return np.maximum(cv2.GaussianBlur(gray, (0, 0), sigma * 2.56) - cv2.GaussianBlur(gray, (0, 0), sigma), 0)


def rim_points(centre: np.ndarray, size: np.ndarray, outward: float, right: np.ndarray, up: np.ndarray,
               unit: np.ndarray = _UNIT) -> np.ndarray:
    """Points of rims: ``size`` (..., 2) half width and height in pixels around ``centre`` (..., 2); ``unit``: which
    points of the unit rim."""
    across = unit[:, 0] * outward * size[..., None, 0]
    upward = unit[:, 1] * size[..., None, 1]
    # x and y apart: numpy broadcasts over a trailing axis of 2 about 20 times slower
    return np.stack([centre[..., None, axis] + across * right[axis] + upward * up[axis] for axis in (0, 1)], -1)


def sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of a float image at (..., 2) pixel points."""
    grid = points.reshape(-1, points.shape[-2] if points.ndim > 2 else len(points), 2).astype(np.float32)
    xs = np.clip(grid[..., 0], 0, image.shape[1] - 1)
    ys = np.clip(grid[..., 1], 0, image.shape[0] - 1)
    return cv2.remap(image, xs, ys, cv2.INTER_LINEAR).reshape(points.shape[:-1])


def find_glasses(image: np.ndarray, points: np.ndarray) -> Glasses | None:
    """Glasses on an aligned face (RGB uint8, mediapipe478 ``points`` in its pixels), or None."""
    iod, right, up = face_axes(points)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    ridges = dark_ridges(gray, iod)
    scores, centres = [], []
    for iris, outward in zip(IRISES, (-1.0, 1.0)):
        centres.append(points[iris] + (_GRID[:, 2:3] * outward * right + _GRID[:, 3:4] * up) * iod)
        lower = rim_points(centres[-1], _GRID[:, :2] * iod, outward, right, up, _UNIT[_LOWER])  # what is scored
        scores.append(np.percentile(sample(ridges, lower), 40, axis=1))
    pair = np.minimum(*scores)
    best = int(pair.argmax())
    middle = (points[IRISES[0]] + points[IRISES[1]]) / 2
    across, along = np.meshgrid(np.linspace(-0.12, 0.12, 9), np.linspace(-0.1, 0.35, 24))
    bridge_rows = sample(ridges, middle + (across[..., None] * right + along[..., None] * up) * iod)
    score = float(pair[best] + bridge_rows.min(1).max())
    if score < GLASSES_SCORE:
        return None
    pair_rims = tuple(rim_points(centre[best], _GRID[best, :2] * iod, outward, right, up)
                      for centre, outward in zip(centres, (-1.0, 1.0)))
    along = np.vstack(pair_rims)
    strong = sample(ridges, along)
    on_frame = along[strong >= np.quantile(strong, 0.7)]
    colour = np.median(np.stack([sample(image[..., c].astype(np.float32), on_frame) for c in range(3)], 1), 0)
    # rim sample 0 is its outer side at mid-height, sample 32 its inner side; 4 and 28 a little above those
    lift = up * (_GRID[best, 1] * 0.3 + _GRID[best, 3]) * iod
    bridge = np.array([pair_rims[0][28], middle + lift, pair_rims[1][28]])
    arms = tuple(np.array([rim[4], points[temple]]) for rim, temple in zip(pair_rims, TEMPLES))
    return Glasses(pair_rims, bridge, arms, colour, score)
