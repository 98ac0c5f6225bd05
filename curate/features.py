"""Identity features for drawn faces, without ImageNet or CLIP weights.

A drawn character is told apart mostly by colours in fixed places relative to the face: hair
above and beside it, eyes in a band across its upper half, skin below them. A crop is the face
box enlarged ``margin`` times (square, centred), so these regions are fixed fractions of the
crop. Each region gives a hue x saturation x value histogram (Hellinger-mapped: square roots),
plus a coarse Lab colour layout of the whole crop; the weighted, L2-normalised concatenation is
the feature, compared by cosine similarity.
"""

from __future__ import annotations

import cv2
import numpy as np

SIDE = 96
# (name, weight, (x0, y0, x1, y1) as fractions of the face box, which spans [-0.5, 0.5] about the crop centre)
REGIONS = (
    ("hair", 1.0, (-0.75, -0.75, 0.75, -0.25)),
    ("sides", 0.7, (-0.75, -0.25, 0.75, 0.25)),
    ("eyes", 1.2, (-0.35, -0.15, 0.35, 0.12)),
    ("skin", 0.6, (-0.25, 0.12, 0.25, 0.4)),
)
BINS = (12, 3, 3)
LAYOUT = 6
LAYOUT_WEIGHT = 0.8


def _region(side: int, margin: float, rel: tuple[float, float, float, float]) -> tuple[slice, slice]:
    scale = side / margin
    x0, y0, x1, y1 = (int(np.clip(side / 2 + v * scale, 0, side)) for v in rel)
    return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1))


def _histogram(hsv: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return np.sqrt(hist / max(hist.sum(), 1.0))


def identity_features(crop: np.ndarray, margin: float = 1.5) -> np.ndarray:
    """The feature vector (float32, unit length) of a square RGB face crop made with ``margin``."""
    small = cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(cv2.GaussianBlur(small, (3, 3), 0), cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) * 180 // 256).astype(np.uint8)
    parts = [w * _histogram(np.ascontiguousarray(hsv[_region(SIDE, margin, rel)])) for _, w, rel in REGIONS]
    lab = cv2.cvtColor(cv2.resize(small, (LAYOUT, LAYOUT), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)
    layout = lab.astype(np.float32).ravel() / 255.0
    layout = (layout - layout.mean()) / max(float(np.linalg.norm(layout - layout.mean())), 1e-6)
    vector = np.concatenate([p / max(float(np.linalg.norm(p)), 1e-6) for p in parts] + [LAYOUT_WEIGHT * layout])
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def feature_matrix(crops: list[np.ndarray], margin: float = 1.5) -> np.ndarray:
    if not crops:
        return np.zeros((0, len(identity_features(np.zeros((8, 8, 3), np.uint8), margin))), np.float32)
    return np.stack([identity_features(c, margin) for c in crops])
