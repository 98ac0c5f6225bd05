"""Skin tone of an aligned face as ITA° (individual typology angle), so a drawing can be checked against its photo.

ITA° = atan2(L* - 50, b*) in degrees, from CIELAB (D65, sRGB; OpenCV's float Lab) of the skin. The skin
is read on the same mesh regions on both sides of a pair: the two cheeks and the forehead of the 478-point
mediapipe mesh. Within them the per-channel median is taken, so the minority of pixels a teacher draws
as lines, shadows or blush (and a photo's specular highlights, stray hair) do not move it.

Classes (Chardon et al. 1991, as used in dermatology): very light > 55°, light 41-55°, intermediate 28-41°,
tan 10-28°, brown -30-10°, dark < -30°.

The module draws its own masks (no import of the webtoon teacher), so the teacher can import it.
"""

from __future__ import annotations

import cv2
import numpy as np

from warping.landmarks import SKIN_REGIONS

# (name, lower bound in degrees), lightest first; a value belongs to the first class whose bound it exceeds.
ITA_CLASSES = (("very light", 55.0), ("light", 41.0), ("intermediate", 28.0), ("tan", 10.0), ("brown", -30.0),
               ("dark", -np.inf))


def ita(lightness, b):
    """ITA° = atan2(L* - 50, b*) in degrees (scalar or array)."""
    return np.degrees(np.arctan2(np.asarray(lightness, np.float64) - 50.0, np.asarray(b, np.float64)))


def ita_class(angle: float) -> str:
    """The ITA class of an angle in degrees."""
    for name, bound in ITA_CLASSES:
        if angle > bound:
            return name
    return ITA_CLASSES[-1][0]


def skin_mask(shape, points: np.ndarray, regions: tuple[str, ...] = tuple(SKIN_REGIONS)) -> np.ndarray:
    """Boolean mask of the skin regions (convex hull of each region's mesh points) in an image of ``shape``."""
    mask = np.zeros(shape[:2], np.uint8)
    for name in regions:
        hull = cv2.convexHull(np.round(np.asarray(points)[list(SKIN_REGIONS[name])]).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
    return mask > 0


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L* 0-100, a*, b*) of an RGB uint8 image."""
    return cv2.cvtColor(np.asarray(rgb, np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def median_lab(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel median Lab of ``rgb`` over ``mask`` (at least one pixel)."""
    pixels = to_lab(rgb)[mask]
    if len(pixels) == 0:
        raise ValueError("skin mask is empty")
    return np.median(pixels, axis=0)


def region_ita(rgb: np.ndarray, mask: np.ndarray) -> float:
    """ITA° of the median skin colour of ``rgb`` over ``mask``."""
    lightness, _, b = median_lab(rgb, mask)
    return float(ita(lightness, b))


def skin_ita(rgb: np.ndarray, points: np.ndarray) -> float:
    """ITA° of an aligned face's skin (cheeks and forehead of its mediapipe478 ``points``)."""
    return region_ita(rgb, skin_mask(rgb.shape, points))
