"""The ``webtoon`` teacher: draws the toon side of a pair from a photo, the way a webtoon artist would.

Flat skin in the person's own tone with one or two cel-shadow tones and a lit tone that follow the
photo's forms (what keeps the drawing recognisable), brows in the photo's own shape, layered eyes (tapered
lash line, an iris darker under the lid, two catch-lights), nose and mouth drawn from the 478-point face mesh,
hair and clothes in a few flat tones with strands and a sheen band along the hair's flow, a beard in the hair's
colour, glasses as clean frames where the photo has them, clean outlines as wide as a share of the face that
taper at their ends, and a simplified background. Every drawing parameter is a range, from the style file or the recipe;
each sample draws its values from ``sample.rng("teacher")`` and records them in its provenance.

Directions: ``real2toon`` makes the toon side from the real photo. ``toon2real`` makes the same
drawing and swaps the roles: the drawing is the pair's *input* side and the photo its target, so a
realifier trained with ``distill.direction: toon2real`` learns toon -> real. In both directions the
sample's source is a real photo (the drawing goes to ``toon``, the photo stays ``real``); a sample
without one is rejected as ``webtoon_needs_real_photo``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np
from pydantic import Field, model_validator

from factory.sample import Sample
from factory.teachers.base import Teacher, TeacherConfig
from factory.teachers.glasses import Glasses, dark_ridges, find_glasses
from factory.teachers.webtoon_style import BACKGROUNDS, BOUNDS, INTEGER_PARAMETERS, Background, Style, load_style
from warping.landmarks import (BROWS, CHEEKS, CHIN, EYES, FACE_OVAL, IRISES, JAW, LIPS_INNER_LOWER, LIPS_INNER_MIDDLE,
                               LIPS_INNER_UPPER, LIPS_OUTER, MOUTH_CORNERS, NOSE_UNDER, UNDER_LOWER_LIP)

log = logging.getLogger(__name__)

# Mean fine-scale lightness detail (OpenCV Lab L, 5x5 mean of |L - its 1 px blur|) above which the lower
# face is beard or stubble rather than skin: clean-shaven skin measures about 1, beards 3 or more.
BEARD_TEXTURE = 2.0
# Skin beyond the face oval (neck, ears, a bald scalp) keeps the hue of the bare skin nearby (a Gaussian over
# SKIN_NEARBY of the inter-ocular distance) within SKIN_HUE_SPREAD degrees and SKIN_CHROMA_SHARE of its chroma,
# where that chroma (CIELAB) is at least SKIN_HUE_CHROMA: on the shared photos blonde hair is 9-25 degrees
# yellower than the face, grey hair under half as saturated, bald scalps 1-5 degrees off.
SKIN_HUE_SPREAD = 9.0
SKIN_CHROMA_SHARE = 0.65
SKIN_HUE_CHROMA = 10.0
SKIN_NEARBY = 0.4
SKIN_BEYOND_OPEN = 0.25
SKIN_BELOW_BROWS_OPEN = 0.1
BROW_LINE = 9
# Hair colour (issue 25): the hair region's edge takes in ears, temples and the background the selfie mask
# leaves around the head; the colour is read from the rest (CIE76 over Lab weighted by HAIR_LAB_WEIGHTS: a pixel
# within HAIR_NOT_SKIN of the skin, or within HAIR_NOT_BACKGROUND of the background just outside the person, is
# not hair), and its cel tones stay within HAIR_TONE_SPREAD of its lightness.
HAIR_LAB_WEIGHTS = np.array([0.5, 1.0, 1.0], np.float32)
HAIR_NOT_SKIN = 8.0
HAIR_NOT_BACKGROUND = 6.0
HAIR_TONE_SPREAD = 14.0
HAIR_STRANDS = (35.0, 70.0)
HAIR_STRAND_SHARE = 35.0
# The selfie mask is loose around a head that fills the frame (a poster, a wall, a crowd taken in as hair): above
# the chin it is cut again by GrabCut at HEAD_CUT_SIZE px over HEAD_CUT_ROUNDS rounds, seeded with the face oval
# and a band HEAD_CUT_BAND inter-ocular distances beyond it above the brows as person, the mask's outside
# (dilated by HEAD_CUT_MARGIN) as background, and as likely background what lies beyond HEAD_CUT_LIKELY of the
# oval and the crop's top and side strips (HEAD_CUT_STRIP of its size); the rest as likely person.
HEAD_CUT_SIZE = 64
HEAD_CUT_ROUNDS = 3
HEAD_CUT_BAND = 0.12
HEAD_CUT_MARGIN = 0.1
HEAD_CUT_LIKELY = 0.8
HEAD_CUT_STRIP = 0.04
# A cut piece whose median colour is within HEAD_CUT_SAME (CIE76, HAIR_LAB_WEIGHTS) of one of 3 colours of the
# head within HEAD_CUT_SAME_BAND of the oval above the brows is given back.
HEAD_CUT_SAME = 10.0
HEAD_CUT_SAME_BAND = 0.3
# Drawn skin's CIELAB hue range and chroma: faces in the shared photos measure hue 12-71 degrees and chroma
# 11-36 in white light (4-6: black-and-white photos, kept as they are); coloured light (blue, green,
# magenta) is drawn as the median face's hue, a saturated one at most the upper chroma.
SKIN_HUES = (10.0, 75.0)
SKIN_CHROMA = (6.0, 38.0)
SKIN_RELIT = (50.0, 20.0)  # hue and least chroma of skin whose hue the light moved out of range
# Cel shapes (issue 25): at most this many per tone, none and no hole smaller than CEL_SPECK of the face
# oval's area, boundaries rounded over CEL_ROUNDING of the inter-ocular distance (rounding over 0.06
# took cross-style casting rank-1 from 90% to 72%: thin shadows along the nose and lips carry identity).
CEL_SHAPES = 6
CEL_SPECK = 0.005
CEL_ROUNDING = 0.02
# Open lines thin toward their ends over this share of the inter-ocular distance (their width is one too).
LINE_TAPER = 0.25
# Hair strands are the photo's creases averaged along the hair's flow over this share of the inter-ocular distance.
STRAND_REACH = 0.5

# Median skin colour of the face in real photos (OpenCV float Lab), measured by ``measure_webtoon`` on
# 30 shared deepface photos; stands in for the person's skin where no face mesh is found.
PHOTO_SKIN_LAB = np.array([69.3, 15.3, 17.4], np.float32)
EYE_WHITE = (248.0, 246.0, 242.0)
HIGHLIGHT = (255.0, 255.0, 255.0)

Range = tuple[float, float]


def _range(description: str):
    return Field(None, description=f"{description}; a [low, high] range drawn per sample (default: the style's)")


class WebtoonConfig(TeacherConfig):
    """Draws a webtoon from a photo: flat cel-shaded skin, drawn features, clean outlines."""

    kind: Literal["webtoon"]
    direction: Literal["real2toon", "toon2real"] = Field(
        "real2toon", description="toon2real: the same drawing, as the input side of a realifier's pair")
    style: Path | None = Field(None, description="style JSON from `fit_style` (the packaged default when unset)")
    background: list[Background] | None = Field(
        None, min_length=1, description="background treatments to choose from, evenly (default: the style's frequencies)")
    shadow_share: Range | None = _range("share of the skin in cel shadow")
    shadow_depth: Range | None = _range(
        "least Lab lightness drop of the first shadow tone on the art's skin (scaled to the person's)")
    shadow_tones: Range | None = _range("cel-shadow tones on the skin (1-2)")
    shadow_detail: Range | None = _range("0: a few broad shadow shapes; 1: shadows follow the face's forms (keeps identity)")
    highlight_share: Range | None = _range("share of the skin in a lit tone")
    blush: Range | None = _range("cheek blush opacity")
    saturation: Range | None = _range("chroma factor of clothes and background (of hair: kept within 0.8-1.3)")
    hair_tones: Range | None = _range("flat tones of hair and of clothes (2-5)")
    hair_highlight: Range | None = _range("opacity of the hair highlight band")
    strands: Range | None = _range("share of hair strand lines kept")
    line_width: Range | None = _range("outline width, times the inter-ocular distance")
    line_darkness: Range | None = _range("outline opacity")
    lash_width: Range | None = _range("upper lash line width, times the inter-ocular distance")
    eye_scale: Range | None = _range("vertical opening of the drawn eyes")
    iris_scale: Range | None = _range("drawn iris radius, times the photo's")
    highlight_size: Range | None = _range("iris highlight radius, times the iris radius")
    crease: Range | None = _range("opacity of the double-eyelid line")
    lip_tint: Range | None = _range("how far the lips move toward a drawn pink")
    background_tones: Range | None = _range("flat tones of a flattened background (2-6)")

    @model_validator(mode="after")
    def _ranges_within_bounds(self):
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not low <= value[0] <= value[1] <= high:
                raise ValueError(f"{name}: [{value[0]}, {value[1]}] must be increasing within [{low}, {high}]")
        return self

    def build(self) -> "WebtoonTeacher":
        return WebtoonTeacher(self)


# ---------------------------------------------------------------- colour and mask helpers


def to_lab(image: np.ndarray) -> np.ndarray:
    """RGB uint8 -> float32 Lab (L 0-100)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def to_rgb(lab: np.ndarray) -> np.ndarray:
    """float32 Lab -> float32 RGB 0-255."""
    return np.clip(cv2.cvtColor(np.ascontiguousarray(lab, np.float32), cv2.COLOR_Lab2RGB), 0, 1) * 255.0


def median_lab(lab: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The median Lab colour of ``region``'s pixels, a channel at a time (much faster than along the first axis
    of an N x 3 array)."""
    return np.array([np.median(lab[..., c][region]) for c in range(3)])


def lab_colour(lab) -> np.ndarray:
    """One Lab colour as an RGB float triple."""
    return to_rgb(np.asarray(lab, np.float32).reshape(1, 1, 3))[0, 0]


def paint(canvas: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Blend ``colour`` (an RGB triple or an image) into the float canvas where ``alpha`` (0-1) says."""
    x, y, w, h = cv2.boundingRect((alpha > 0).astype(np.uint8))  # only the box that changes
    if w == 0:
        return
    box, alpha = canvas[y:y + h, x:x + w], alpha[y:y + h, x:x + w]
    colour = np.asarray(colour, np.float32)
    for c in range(3):  # a channel at a time: numpy broadcasts over a trailing axis of 3 several times slower
        box[..., c] += alpha * ((colour[y:y + h, x:x + w, c] if colour.ndim == 3 else colour[c]) - box[..., c])


def polygon_mask(shape, points: np.ndarray) -> np.ndarray:
    """Anti-aliased filled polygon as float32 alpha."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def stroke_mask(shape, points: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased open polyline of ``width`` pixels as float32 alpha."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.polylines(mask, [np.round(points * 16).astype(np.int32)], False, 255, max(1, int(round(width))), cv2.LINE_AA,
                  shift=4)
    return mask.astype(np.float32) / 255.0


def circle_mask(shape, centre, radius: float) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.circle(mask, tuple(int(v) for v in np.round(np.asarray(centre) * 16)), max(1, int(round(radius * 16))), 255, -1,
               cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def smooth_curve(points: np.ndarray, samples: int = 24) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` (so drawn strokes have no corners)."""
    padded = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, samples // max(1, len(points) - 1) + 2)[:-1, None]
    p0, p1, p2, p3 = (padded[k:len(padded) - 3 + k, None] for k in range(4))  # every segment at once
    out = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                 + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)
    return np.vstack([out.reshape(-1, points.shape[1]), points[-1:]])


def tapered_polygon(curve: np.ndarray, widths: np.ndarray, side: float = 0.0) -> np.ndarray:
    """A filled stroke along ``curve`` with per-point ``widths``; ``side`` 1 grows it to the left only."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-6)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    lo = curve - normal * (widths[:, None] * (1 - side) / 2)
    hi = curve + normal * (widths[:, None] * (1 + side) / 2)
    return np.vstack([lo, hi[::-1]])


def remove_specks(binary: np.ndarray, min_area: float, min_extent: float) -> np.ndarray:
    """Keep connected components with at least ``min_area`` pixels and a bounding box of ``min_extent``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = (stats[:, cv2.CC_STAT_AREA] >= min_area) & (
        np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) >= min_extent)
    keep[0] = False
    return keep[labels].astype(np.uint8)


def around(region: np.ndarray, pad: int) -> tuple[slice, slice]:
    """The box around ``region``'s pixels, ``pad`` wider on every side (within the image): work whose result is
    only drawn on the region is done there."""
    x, y, w, h = cv2.boundingRect(region.astype(np.uint8))
    return slice(max(y - pad, 0), y + h + pad), slice(max(x - pad, 0), x + w + pad)


def largest_shapes(binary: np.ndarray, min_area: float, count: int) -> np.ndarray:
    """The ``count`` largest connected components of at least ``min_area`` pixels (uint8 0/1)."""
    found, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(-areas, kind="stable")[:count]
    keep = np.zeros(found, bool)
    keep[order[areas[order] >= min_area] + 1] = True
    return keep[labels].astype(np.uint8)


def nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``centres`` for every row of ``points`` (squared distance, by matrix product)."""
    return ((centres ** 2).sum(1)[None] - 2 * points @ centres.T).argmin(1)


def quantize_lab(lab: np.ndarray, region: np.ndarray, tones: int, iterations: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means in Lab over ``region``: (centres ordered by lightness, labels of every pixel)."""
    pixels = lab[region > 0]
    if len(pixels) < tones:
        pixels = lab.reshape(-1, 3)
    weights = np.array([1.0, 1.6, 1.6], np.float32)
    sub = pixels[:: max(1, len(pixels) // 6000)] * weights
    order = np.argsort(sub[:, 0], kind="stable")
    centres = sub[order[((np.arange(tones) + 0.5) / tones * (len(order) - 1)).astype(int)]].copy()
    for _ in range(iterations):
        nearest = nearest_centre(sub, centres)
        for k in range(tones):
            members = sub[nearest == k]
            if len(members):
                centres[k] = members.mean(0)
    centres = centres[np.argsort(centres[:, 0])]
    channels = [channel * weight for channel, weight in zip(cv2.split(lab), weights)]  # a channel at a time: faster
    distances = [sum((channel - centre[c]) ** 2 for c, channel in enumerate(channels)) for centre in centres]
    return centres / weights, np.argmin(distances, axis=0).astype(np.uint8)


def xdog(gray: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Dark-line mask (uint8 0/1) from a difference of Gaussians: pixels darker than their surround."""
    fine = cv2.GaussianBlur(gray, (0, 0), sigma)
    coarse = cv2.GaussianBlur(gray, (0, 0), sigma * 1.6)
    return ((fine - coarse) < -threshold).astype(np.uint8)


def odd(value: float) -> int:
    return max(3, int(value) | 1)


def disc(size: float) -> np.ndarray:
    """An elliptic structuring element about ``size`` pixels across."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(size),) * 2)


def smooth_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A binary mask with rounded, simplified borders (uint8 0/1)."""
    return (cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(sigma, 0.5)) > 0.5).astype(np.uint8)


# ---------------------------------------------------------------- the drawing


class FaceFrame:
    """The face mesh in crop pixels and the lengths everything is measured in."""

    def __init__(self, points: np.ndarray):
        self.points = points
        self.iod = float(max(np.linalg.norm(points[IRISES[1]] - points[IRISES[0]]), 4.0))
        eye_mid = (points[IRISES[0]] + points[IRISES[1]]) / 2
        mouth_mid = (points[MOUTH_CORNERS[0]] + points[MOUTH_CORNERS[1]]) / 2
        up = eye_mid - mouth_mid
        self.up = up / max(np.linalg.norm(up), 1e-6)
        right = points[IRISES[1]] - points[IRISES[0]]
        self.right = right / max(np.linalg.norm(right), 1e-6)
        self._ovals: dict[tuple, np.ndarray] = {}
        self._grids: dict[tuple, np.ndarray] = {}

    def oval(self, shape) -> np.ndarray:
        """The mesh's face oval as a bool mask (made once per image size)."""
        key = tuple(shape[:2])
        if key not in self._ovals:
            self._ovals[key] = polygon_mask(shape, self.points[FACE_OVAL]) > 0.5
        return self._ovals[key]

    def grid(self, shape) -> np.ndarray:
        """Pixel coordinates (ys, xs; float32), made once per image size."""
        key = tuple(shape[:2])
        if key not in self._grids:
            self._grids[key] = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
        return self._grids[key]

    def around(self, indices, pad: float) -> tuple[tuple[slice, slice], "FaceFrame"]:
        """The box around mesh points ``indices`` widened by ``pad`` pixels (slices: within the image), and this face in
        the box's pixels: a feature drawn there is the same as drawn on the whole image, at a fraction of the work."""
        points = self.points[np.hstack(indices)]
        x0, y0 = np.maximum(np.floor(points.min(0) - pad), 0).astype(int)
        x1, y1 = np.ceil(points.max(0) + pad).astype(int)
        return (slice(y0, max(y1, y0)), slice(x0, max(x1, x0))), FaceFrame(self.points - [x0, y0])

    def above(self, shape, index: int) -> np.ndarray:
        """Mask of pixels above landmark ``index`` along the face's up axis."""
        ys, xs = self.grid(shape)
        p = self.points[index]
        return ((xs - p[0]) * self.up[0] + (ys - p[1]) * self.up[1]) > 0


def bare_face(shape, face: FaceFrame) -> np.ndarray:
    """The face's bare skin as a bool mask: inside the mesh's oval, above the nose tip (no beard, no
    stubble), away from eyes, brows and lips."""
    pts = face.points
    oval = face.oval(shape)
    features = np.zeros(shape[:2], np.uint8)
    for upper, lower, _, _ in EYES:
        cv2.fillPoly(features, [np.round(np.vstack([pts[upper], pts[lower][::-1]])).astype(np.int32)], 1)
    for upper, lower in BROWS:
        cv2.fillPoly(features, [np.round(np.vstack([pts[upper], pts[lower][::-1]])).astype(np.int32)], 1)
    cv2.fillPoly(features, [np.round(pts[LIPS_OUTER]).astype(np.int32)], 1)
    features = cv2.dilate(features, np.ones((odd(face.iod * 0.12),) * 2, np.uint8))
    return oval & (features == 0) & face.above(shape, 2)


def nearby_mean(images: list[np.ndarray], where: np.ndarray, sigma: float, default) -> list[np.ndarray]:
    """Each of ``images`` averaged over the ``where`` pixels near each pixel (a Gaussian of ``sigma``; ``default``'s
    value where none is near), found at a quarter of the size: a wide average is smooth."""
    size = (where.shape[1], where.shape[0])
    small = (max(1, size[0] // 4), max(1, size[1] // 4))
    where = where.astype(np.float32)
    weight = cv2.GaussianBlur(cv2.resize(where, small, interpolation=cv2.INTER_AREA), (0, 0), sigma / 4)
    means = []
    for image, value in zip(images, default):
        total = cv2.GaussianBlur(cv2.resize(image * where, small, interpolation=cv2.INTER_AREA), (0, 0), sigma / 4)
        mean = np.where(weight > 1e-4, total / np.maximum(weight, 1e-4), value).astype(np.float32)
        means.append(cv2.resize(mean, size, interpolation=cv2.INTER_LINEAR))
    return means


def skin_region(lab: np.ndarray, face: FaceFrame, person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(skin mask uint8, median face Lab): the face mesh plus pixels coloured like it (neck, ears, hands)."""
    shape = lab.shape
    pts = face.points
    oval = face.oval(shape)
    inner = bare_face(shape, face)
    samples = [lab[..., c][inner if inner.sum() > 50 else oval] for c in range(3)]  # a channel at a time: faster
    median = np.array([np.median(channel) for channel in samples])
    low, high = np.array([np.percentile(channel, [16, 84]) for channel in samples]).T
    spread = np.maximum((high - low) / 2, [6.0, 2.5, 2.5])
    light, a, b = cv2.split(lab)  # a channel at a time: numpy broadcasts over a trailing axis of 3 several times slower
    light = (light - median[0]) / (spread[0] * 2.5)
    light *= np.where(light > 0, 0.5, 1.0)  # highlights (a bald head, a shiny forehead) stay skin
    # Shading changes how saturated skin looks much more than its hue (blonde hair differs in hue): the
    # chroma difference along the skin's own chroma direction counts half, across it in full.
    direction = median[1:] / max(float(np.linalg.norm(median[1:])), 1e-3)
    offset_a, offset_b = (a - median[1]) / spread[1:].mean(), (b - median[2]) / spread[1:].mean()
    along = offset_a * direction[0] + offset_b * direction[1]
    across = offset_b * direction[0] - offset_a * direction[1]
    loose = light ** 2 + (along / 2) ** 2 + across ** 2
    near_face = cv2.distanceTransform((~oval).astype(np.uint8), cv2.DIST_L2, 3) < face.iod * 1.3
    beyond = (loose < 4.0) & (person > 0.5) & ~oval & near_face  # neck, ears, a bald scalp
    # Beyond the oval skin goes on in the colour of the nearest bare skin (a shaded temple as the shaded skin
    # beside it, not as the lit forehead): blonde hair is yellower than the skin it frames, grey hair paler.
    near_a, near_b = (mean[beyond] for mean in nearby_mean([a, b], inner, face.iod * SKIN_NEARBY, median[1:]))
    a, b = a[beyond], b[beyond]  # the hue test only where it decides
    chroma = np.hypot(near_a, near_b)
    hue = np.degrees(np.arctan2(b, a) - np.arctan2(near_b, near_a))
    beyond[beyond] = (chroma < SKIN_HUE_CHROMA) | ((np.abs((hue + 180.0) % 360.0 - 180.0) < SKIN_HUE_SPREAD) & (
        np.hypot(a, b) > chroma * SKIN_CHROMA_SHARE))
    beyond = beyond.astype(np.uint8)
    # Not the highlights of hair: above the brows (a scalp) only broad shapes; below them (ears, neck) narrower ones.
    brows = face.above(shape, BROW_LINE)
    beyond = np.where(brows, cv2.morphologyEx(beyond, cv2.MORPH_OPEN, disc(face.iod * SKIN_BEYOND_OPEN)),
                      cv2.morphologyEx(beyond, cv2.MORPH_OPEN, disc(face.iod * SKIN_BELOW_BROWS_OPEN))).astype(np.uint8)
    skin = (((loose < 9.0) & oval) | (beyond > 0)).astype(np.uint8)
    kernel = disc(face.iod * 0.08)
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, kernel)
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, kernel)
    core = polygon_mask(shape, np.vstack([pts[EYES[0][1]], pts[CHIN][None], pts[EYES[1][1]][::-1]])) > 0.5
    count, labels = cv2.connectedComponents(skin | core.astype(np.uint8))
    touching = np.unique(labels[core])
    skin = np.isin(labels, touching[touching > 0]).astype(np.uint8)
    large_gaps = remove_specks((1 - skin).astype(np.uint8), face.iod ** 2 * 0.2, 0)  # small holes close
    return smooth_mask(1 - large_gaps, face.iod * 0.04), median


def person_regions(face: FaceFrame | None, person: np.ndarray, skin: np.ndarray, photo_light: np.ndarray,
                   skin_light: float, scale: float):
    """(person float mask, hair, beard, clothes uint8 masks) of the drawing.

    Also updates ``skin``: the face's small non-skin spots join it, a beard leaves it.

    Hair is the person's non-skin above the chin within 1.3 inter-ocular distances of the face;
    a beard is the textured, darker-than-skin part of the face below the nose, and whatever
    non-skin is there; clothes are the non-skin below the chin that reaches the neck. Whatever
    else the person mask holds (a chair, a shoulder of someone behind) is left to the background.
    """
    person = smooth_mask(person > 0.5, 2.0 * scale)
    other = (person > 0) & (skin == 0)
    if face is None:
        empty = np.zeros(person.shape, np.uint8)
        return person.astype(np.float32), other.astype(np.uint8), empty, empty
    shape, pts, iod = person.shape, face.points, face.iod
    oval = face.oval(shape).astype(np.uint8)
    head = face.above(shape, CHIN)
    lower_face = (cv2.dilate(oval, disc(iod * 0.3)) > 0) & ~face.above(shape, 2)
    mean = cv2.blur(photo_light, (5, 5))
    texture = cv2.blur(np.abs(photo_light - cv2.GaussianBlur(photo_light, (0, 0), 1.0)), (5, 5))  # not shading
    inside = cv2.erode(oval, disc(iod * 0.12)) > 0  # not the jaw's edge, which is textured by its shadow
    hairy = (lower_face & inside & (texture > BEARD_TEXTURE) & (mean < skin_light - 8)).astype(np.uint8)
    hairy = cv2.morphologyEx(hairy, cv2.MORPH_CLOSE, disc(iod * 0.1))
    hairy = cv2.morphologyEx(hairy, cv2.MORPH_OPEN, disc(iod * 0.1))
    hairy = remove_specks(hairy, iod ** 2 * 0.15, 0)
    skin &= 1 - hairy
    other |= hairy > 0
    lower_face &= head
    lips = cv2.dilate((polygon_mask(shape, pts[LIPS_OUTER]) > 0.5).astype(np.uint8), disc(iod * 0.15)) > 0
    beard = remove_specks((other & lower_face & ~lips).astype(np.uint8), iod ** 2 * 0.06, 0)
    skin |= (other & lower_face & (beard == 0)).astype(np.uint8)  # stubble spots, the shadow under the lip
    other &= skin == 0
    near_face = cv2.distanceTransform(1 - oval, cv2.DIST_L2, 3) < iod * 1.3
    hair = (other & head & near_face & (beard == 0)).astype(np.uint8)
    below = (other & ~head).astype(np.uint8)
    count, labels = cv2.connectedComponents(below)
    neck = np.zeros(shape, bool)
    top = int(np.clip(pts[CHIN][1], 0, shape[0] - 1))
    neck[top:, int(max(pts[JAW[-1]][0], 0)):int(min(pts[JAW[0]][0], shape[1]))] = True
    reaching = np.unique(labels[neck & (below > 0)])
    clothes = np.isin(labels, reaching[reaching > 0]).astype(np.uint8)
    drawn = (hair | beard | clothes | (skin & person)) > 0
    return drawn.astype(np.float32), hair, beard, clothes


def cel_shading(lab_photo: np.ndarray, light_edges: np.ndarray, skin: np.ndarray, face: FaceFrame,
                params: dict) -> tuple[list[np.ndarray], np.ndarray]:
    """(one or two nested shadow masks, a highlight mask) as float alpha, from the photo's own light on the skin.

    The light map mixes a broad one (blurred over a tenth of the inter-ocular distance: a few large
    shadow shapes) with the edge-preserving one (``light_edges``: the forms of nose, brow ridge,
    cheekbones and lips, which carry the person's identity) by ``shadow_detail``. Levels are
    quantiles of the face's light, so ``shadow_share`` and ``highlight_share`` are shares of the skin.
    Each tone is drawn as a few smooth shapes: boundaries rounded, at most ``CEL_SHAPES`` per tone,
    none (and no hole in one) smaller than ``CEL_SPECK`` of the face. Only the box around the skin is computed.
    """
    full = skin.shape
    sigma = face.iod * 0.1
    box = around(skin, int(np.ceil(4 * sigma)) + 4)  # as far as the light's blur reaches
    skin, light_edges, oval = skin[box], light_edges[box], face.oval(full)[box]
    weight = cv2.GaussianBlur(skin.astype(np.float32), (0, 0), sigma)
    broad = cv2.GaussianBlur(lab_photo[box][..., 0] * skin, (0, 0), sigma) / np.maximum(weight, 1e-3)
    detail = params["shadow_detail"]
    light = broad + detail * (light_edges - broad)
    face_light = light[oval & (skin > 0)]
    if len(face_light) < 20:
        return [], np.zeros(full, np.float32)
    share = params["shadow_share"]
    median = float(np.median(face_light))
    lit = params["highlight_share"]
    quantiles = np.quantile(face_light, [share, share * 0.3, 1 - lit])  # one sort for all three
    levels = [min(float(quantiles[0]), median - 3.0)]
    if int(params["shadow_tones"]) > 1:
        levels.append(min(float(quantiles[1]), levels[0] - 4.0))
    least = CEL_SPECK * face.oval(full).sum()
    inside = skin > 0

    def region(mask: np.ndarray, within: np.ndarray) -> np.ndarray:
        mask = smooth_mask(mask & within, face.iod * CEL_ROUNDING) & within
        mask = 1 - remove_specks(1 - mask, least, 0)  # small holes close
        mask = largest_shapes(mask & within, least, CEL_SHAPES)
        drawn = (cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7) > 0.5).astype(np.uint8)
        return mask & (1 - drawn + remove_specks(drawn, least, 0))  # nor the bits anti-aliasing cuts off a thin neck

    shadows = [region(light < levels[0], inside)]
    for level in levels[1:]:
        shadows.append(region(light < level, shadows[-1] > 0))
    top = max(float(quantiles[2]), median + 3.0) if lit > 0.01 else np.inf
    alphas = []
    for mask in (*shadows, region(light > top, inside & (shadows[0] == 0))):
        alphas.append(np.zeros(full, np.float32))
        alphas[-1][box] = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
    return alphas[:-1], alphas[-1]


def skin_tones(lab: np.ndarray, skin: np.ndarray, shadows: list[np.ndarray], lit: np.ndarray, fallback: np.ndarray,
               step: float) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(base, lit, shadow tones) of the skin in Lab: the person's own colours, never a style's.

    Each tone is the photo's median colour where it falls (the base where neither shadow nor light
    does), so the drawn skin keeps the person's ITA°. Shadow tone n is at least ``step`` darker per
    tone, as a share of the base's lightness (the style's cel contrast, on any skin).
    """
    def median(region: np.ndarray, default: np.ndarray) -> np.ndarray:
        return median_lab(lab, region).astype(np.float32) if region.sum() > 20 else default.astype(np.float32)

    inside = skin > 0
    shaded = [shade > 0.5 for shade in shadows] + [np.zeros_like(inside)]
    base = median(inside & (lit < 0.5) & ~shaded[0], median(inside, fallback))
    tones, previous = [], base
    for n in range(1, len(shaded)):
        tone = median(shaded[n - 1] & ~shaded[n], previous)
        tone[0] = min(tone[0], base[0] * (1 - step) ** n)
        tones.append(tone)
        previous = tone
    shift = natural_skin(base) - base  # the base's correction moves every tone, each then kept in range itself
    return natural_skin(base), natural_skin(median(lit > 0.5, base) + shift), [natural_skin(t + shift) for t in tones]


def natural_skin(lab: np.ndarray) -> np.ndarray:
    """A skin colour (Lab) as white light shows it: a hue outside SKIN_HUES (blue, green or magenta light)
    becomes SKIN_RELIT's hue with at least its chroma, and chroma is capped (a saturated light). Lightness
    is kept; so is a colour too grey to have a hue (a black-and-white photo)."""
    chroma = float(np.hypot(lab[1], lab[2]))
    if chroma < SKIN_CHROMA[0]:
        return np.asarray(lab, np.float32)
    hue = float(np.degrees(np.arctan2(lab[2], lab[1])))
    if not SKIN_HUES[0] <= hue <= SKIN_HUES[1]:
        hue, chroma = SKIN_RELIT[0], max(chroma, SKIN_RELIT[1])
    chroma = min(chroma, SKIN_CHROMA[1])
    return np.array([lab[0], chroma * np.cos(np.radians(hue)), chroma * np.sin(np.radians(hue))], np.float32)


def flat_tones(lab: np.ndarray, region: np.ndarray, tones: int, saturation: float, smooth: int) -> np.ndarray:
    """The region's pixels in ``tones`` flat Lab colours with simplified shapes (RGB float image; black beyond the
    region's box)."""
    box = around(region, smooth)
    centres, labels = quantize_lab(lab[box], region[box], tones)
    labels = cv2.medianBlur(labels, smooth)
    centres = centres.copy()
    centres[:, 1:] *= saturation
    out = np.zeros(lab.shape, np.float32)
    out[box] = to_rgb(centres[None].astype(np.float32))[0][labels]
    return out


def lab_distance(channels, other) -> np.ndarray:
    """CIE76 distance weighted by HAIR_LAB_WEIGHTS of Lab ``channels`` (L, a, b images) to ``other`` (a colour
    or three images), a channel at a time (numpy broadcasts over a trailing axis of 3 several times slower)."""
    return np.sqrt(sum(((channel - ref) * weight) ** 2
                       for channel, ref, weight in zip(channels, other, HAIR_LAB_WEIGHTS)))


def hair_core(lab: np.ndarray, hair: np.ndarray, person: np.ndarray, skin_lab: np.ndarray, iod: float) -> np.ndarray:
    """The pixels of the hair region that show hair (bool): not the skin-coloured ears and temples, nor the
    background the person mask's loose edge takes in (a pixel as near the background just outside the person
    as it is far from the skin counts as background). Falls back to the whole region where that leaves too little."""
    inside = hair > 0
    if inside.sum() < 50:
        return inside
    channels = cv2.split(lab)
    skin_like = lab_distance(channels, skin_lab) < HAIR_NOT_SKIN
    ring = (cv2.dilate((person > 0.5).astype(np.uint8), disc(iod * 0.3)) > 0) & (person < 0.5)
    core = inside & ~skin_like
    if ring.sum() > 50:  # the background's colour nearby: a wide blur, at a quarter of the size (it is smooth)
        size = (lab.shape[1], lab.shape[0])
        small = (max(1, size[0] // 4), max(1, size[1] // 4))
        ring_small = cv2.resize(ring.astype(np.float32), small, interpolation=cv2.INTER_AREA)
        lab_small = cv2.resize(lab * ring[..., None], small, interpolation=cv2.INTER_AREA)
        weight = cv2.GaussianBlur(ring_small, (0, 0), iod * 0.125)
        near = cv2.GaussianBlur(lab_small, (0, 0), iod * 0.125) / np.maximum(weight, 1e-4)[..., None]
        near = cv2.resize(np.where(weight[..., None] > 1e-3, near, 1e4).astype(np.float32), size,
                          interpolation=cv2.INTER_LINEAR)
        core &= ~(lab_distance(channels, cv2.split(near)) < HAIR_NOT_BACKGROUND)
    return core if core.sum() >= max(50, inside.sum() * 0.25) else inside


def hair_fill(lab: np.ndarray, region: np.ndarray, tones: int, saturation: float, sigma: float,
              colour: np.ndarray | None = None, core: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hair in ``tones`` flat tones of its own hue, shaped by its smoothed lightness: (RGB float image, base Lab).

    The tones follow the large light and shadow shapes of the hair (not its texture); their chroma
    is the hair's, scaled by the style's saturation kept within 0.8-1.3 and capped, so blonde stays blonde;
    ``colour`` (a*, b*), when given, is used instead (a beard in the hair's colour). The colour and the tones'
    lightness come from ``core`` (:func:`hair_core`; the whole region when None), and the tones stay within
    HAIR_TONE_SPREAD of the base's lightness: black hair is drawn black, white hair white, whatever the region's
    edge takes in.
    """
    full = region.shape
    box = around(region, int(np.ceil(4 * sigma)) + odd(sigma * 0.8) + 4)  # as far as the blurs below reach
    lab, region = lab[box], region[box]
    core = region > 0 if core is None else core[box] & (region > 0)
    weight = cv2.GaussianBlur(core.astype(np.float32), (0, 0), sigma)
    light = cv2.GaussianBlur(lab[..., 0] * core, (0, 0), sigma) / np.maximum(weight, 1e-3)
    light = np.where(weight > 1e-2, light, np.nan)
    inside = region > 0
    base = median_lab(lab, core)
    light = np.nan_to_num(light, nan=float(base[0]))
    chroma = np.hypot(base[1], base[2])
    if colour is None:
        colour = base[1:] * min(float(np.clip(saturation, 0.8, 1.3)), 40.0 / max(chroma, 1e-3))
    levels = np.quantile(light[inside], np.arange(1, tones) / tones)
    index = np.digitize(light, levels).astype(np.uint8)
    tone_light = np.array([np.median(light[inside & (index == k)]) if (inside & (index == k)).any() else base[0]
                           for k in range(tones)], np.float32)
    # Textured hair reads as the colour of its strands, not of the shine between dark strands: dark and mid hair
    # is drawn at a lower percentile of its lightness (HAIR_STRAND_SHARE up to HAIR_STRANDS[0], the median from
    # HAIR_STRANDS[1] up).
    low, high = HAIR_STRANDS
    share = HAIR_STRAND_SHARE + (50 - HAIR_STRAND_SHARE) * float(np.clip((base[0] - low) / (high - low), 0, 1))
    strands = float(np.percentile(lab[..., 0][core], share))
    tone_light += strands - base[0]
    base[0] = strands
    tone_light = base[0] + np.clip((tone_light - base[0]) * 1.2, -HAIR_TONE_SPREAD, HAIR_TONE_SPREAD)  # cel steps
    index = cv2.medianBlur(index, odd(sigma * 0.8))
    tones_lab = np.column_stack([np.clip(tone_light, 4, 96), np.tile(colour, (tones, 1))]).astype(np.float32)
    fill = np.zeros((*full, 3), np.float32)
    fill[box] = to_rgb(tones_lab[None])[0][index]
    return fill, np.array([base[0], *colour], np.float32)


def even_lines(binary: np.ndarray, width: float) -> np.ndarray:
    """Lines of one ``width`` along the centre lines of ``binary`` (anti-aliased float alpha)."""
    skeleton = cv2.ximgproc.thinning(binary.astype(np.uint8) * 255)
    distance = cv2.distanceTransform((skeleton == 0).astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(width / 2 + 0.5 - distance, 0, 1)


def tapered_lines(binary: np.ndarray, width: float, taper: float) -> np.ndarray:
    """Lines along the centre lines of ``binary`` (anti-aliased float alpha), ``width`` wide but for their
    last ``taper`` pixels, where they thin to a third like a brush stroke lifted off the page; closed lines
    keep one width. Only the box around ``binary``'s pixels is computed (the lines end a little beyond it)."""
    out = np.zeros(binary.shape, np.float32)
    x, y, w, h = cv2.boundingRect(binary.astype(np.uint8))
    if w == 0:
        return out
    pad = int(width) + 5
    x0, y0, x1, y1 = max(x - pad, 0), max(y - pad, 0), min(x + w + pad, out.shape[1]), min(y + h + pad, out.shape[0])
    skeleton = cv2.ximgproc.thinning(binary[y0:y1, x0:x1].astype(np.uint8) * 255) > 0
    neighbours = cv2.filter2D(skeleton.astype(np.uint8), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    ends = skeleton & (neighbours == 2)  # itself and one neighbour
    to_end = cv2.distanceTransform((~ends).astype(np.uint8), cv2.DIST_L2, 3)
    widths = np.where(skeleton, width * np.clip(0.3 + 0.7 * to_end / max(taper, 1e-3), 0.3, 1.0), 0).astype(np.float32)
    nearby = cv2.dilate(widths, disc(width + 2))  # the widest line within reach of each pixel
    distance = cv2.distanceTransform((~skeleton).astype(np.uint8), cv2.DIST_L2, 3)
    out[y0:y1, x0:x1] = np.clip(nearby / 2 + 0.5 - distance, 0, 1)
    return out


def hair_flow(gray: np.ndarray, hair: np.ndarray, iod: float) -> np.ndarray:
    """The direction the photo's hair runs at every pixel (unit x, y vectors, H x W x 2): across its lightness
    gradient, from the structure tensor over the hair, found at half size (the flow is smooth) and averaged
    over a sixth of the inter-ocular distance."""
    small = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    inside = cv2.resize(hair.astype(np.float32), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    sigma = iod * 0.08
    jxx, jxy, jyy = (cv2.GaussianBlur(g * inside, (0, 0), sigma) for g in (gx * gx, gx * gy, gy * gy))
    doubled = cv2.resize(np.dstack([jyy - jxx, -2 * jxy]), (gray.shape[1], gray.shape[0]))  # the flow's angle, doubled
    angle = 0.5 * np.arctan2(doubled[..., 1], doubled[..., 0])
    return np.dstack([np.cos(angle), np.sin(angle)]).astype(np.float32)


def along_flow(values: np.ndarray, flow: np.ndarray, length: float, within: np.ndarray, steps: int = 4) -> np.ndarray:
    """``values`` averaged along the hair's ``flow`` over ``length`` pixels (a short line through each pixel),
    where ``within`` is set (0 elsewhere; only that box is computed)."""
    out = np.zeros_like(values)
    x, y, w, h = cv2.boundingRect(within.astype(np.uint8))
    if w == 0:
        return out
    pad = int(np.ceil(length / 2)) + 1
    x0, y0 = max(x - pad, 0), max(y - pad, 0)
    x1, y1 = min(x + w + pad, values.shape[1]), min(y + h + pad, values.shape[0])
    box, direction = values[y0:y1, x0:x1], flow[y0:y1, x0:x1]
    ys, xs = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float32)
    total = box.copy()
    for k in range(1, steps + 1):
        reach = k * length / (2 * steps)
        for sign in (-1.0, 1.0):
            total += cv2.remap(box, xs + sign * reach * direction[..., 0], ys + sign * reach * direction[..., 1],
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out[y0:y1, x0:x1] = total / (2 * steps + 1)
    return out


def hair_strands(gray: np.ndarray, hair: np.ndarray, flow: np.ndarray, iod: float, share: float,
                 width: float) -> np.ndarray:
    """Strand lines inside the hair (float alpha): the photo's dark creases averaged along the hair's flow (so
    they run with it and join up), the long ones kept, thinned and tapered."""
    sigma = 1.2 * iod / 64
    crease = cv2.GaussianBlur(gray, (0, 0), sigma * 1.6) - cv2.GaussianBlur(gray, (0, 0), sigma)  # > 0: darker
    inside = cv2.erode(hair, np.ones((3, 3), np.uint8)) > 0
    creases = (along_flow(crease, flow, iod * STRAND_REACH, inside) > 0.006) & inside
    count, labels, stats, _ = cv2.connectedComponentsWithStats(creases.astype(np.uint8), connectivity=8)
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    long_enough = np.flatnonzero(extent >= iod * 0.3) + 1
    kept = np.zeros(count, bool)
    kept[long_enough[np.argsort(-extent[long_enough - 1])][: int(np.ceil(len(long_enough) * share))]] = True
    return tapered_lines(kept[labels], width, iod * LINE_TAPER)


def hair_highlight_band(shape, face: FaceFrame, hair: np.ndarray, flow: np.ndarray, rng_phase: float) -> np.ndarray:
    """A crescent of sheen on the top of the head, inside the hair, its edges combed along the hair's flow:
    streaks of noise (seeded by ``rng_phase``) drawn out along the flow lengthen or cut it."""
    head = around(hair, 0)  # the band lies in the hair: only its box is measured
    ys, xs = (grid[head] for grid in face.grid(shape))
    centre = (face.points[IRISES[0]] + face.points[IRISES[1]]) / 2 + face.up * face.iod * 0.2
    dx, dy = xs - centre[0], ys - centre[1]
    along_up = dx * face.up[0] + dy * face.up[1]
    along_right = dx * face.right[0] + dy * face.right[1]
    radius = np.hypot(along_up / 1.25, along_right) / face.iod
    band = (np.abs(radius - 1.17) < 0.2) & (hair[head] > 0)
    band[band] = np.abs(np.arctan2(along_right[band], along_up[band])) < 1.0
    zone = np.zeros(shape[:2], bool)
    zone[head] = band
    noise = np.random.default_rng(int(rng_phase * 1e4)).standard_normal(shape[:2]).astype(np.float32)
    box = around(zone, int(face.iod * 0.3) + 6)  # as far as the streaks reach, and the blur's kernel
    noise[box] = cv2.GaussianBlur(noise[box], (0, 0), 1.0)
    streaks = along_flow(noise, flow, face.iod * 0.6, zone)
    streaks /= max(float(streaks[zone].std()), 1e-6) if zone.any() else 1.0
    mask = np.zeros(shape[:2], np.float32)
    # a band 0.16 wide, its teeth up to 0.1 further out
    mask[head] = (streaks[head] * 0.1 - np.abs(radius - 1.17) > -0.08) & band
    return cv2.GaussianBlur(mask, (0, 0), 0.8)


def background_layer(image: np.ndarray, lab_smooth: np.ndarray, params: dict, smooth: int) -> np.ndarray:
    """The background as the drawn treatment says (RGB float image)."""
    treatment = params["background"]
    if treatment == "plain":
        return np.broadcast_to(np.asarray(params["background_colour"], np.float32), image.shape).copy()
    if treatment == "keep":
        return to_rgb(lab_smooth)
    if treatment == "blur":
        sigma = image.shape[0] * 0.03
        lab = cv2.GaussianBlur(lab_smooth, (0, 0), sigma)
        lab[..., 1:] *= params["saturation"] * 0.8
        lab[..., 0] = lab[..., 0] * 0.85 + 12.0
        return to_rgb(lab)
    return flat_tones(lab_smooth, np.ones(image.shape[:2], np.uint8), int(params["background_tones"]),
                      params["saturation"], odd(smooth * 1.5))


def iris_gradient(shape, centre: np.ndarray, radius: float, up: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """The iris's colours (RGB float image, set around ``centre``): dark under the upper lid, lighter and a
    little more saturated toward the bottom, as webtoon irises are painted."""
    colour = np.zeros((*shape[:2], 3), np.float32)
    x0, y0 = np.maximum(np.floor(centre - radius - 1).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(centre + radius + 2).astype(int), [shape[1], shape[0]])
    if x1 <= x0 or y1 <= y0:
        return colour
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    down = -((xs - centre[0]) * up[0] + (ys - centre[1]) * up[1]) / radius  # -1 at the top, 1 at the bottom
    t = np.clip((down + 0.7) / 1.6, 0, 1)[..., None]
    t = t * t * (3 - 2 * t)
    dark = iris * np.array([0.5, 0.8, 0.8], np.float32)
    light = np.array([min(iris[0] * 1.3 + 6, 75.0), iris[1] * 1.25, iris[2] * 1.25], np.float32)
    colour[y0:y1, x0:x1] = to_rgb(dark + t * (light - dark))
    return colour


def draw_eye(canvas: np.ndarray, photo_lab: np.ndarray, face: FaceFrame, eye, params: dict, ink, line: float) -> None:
    """Eye white, iris (a gradient, pupil, ring, two catch-lights), thick tapered upper lash line, lower lid, crease."""
    upper_idx, lower_idx, iris_idx, ring_idx = eye
    pts = face.points
    shape = canvas.shape
    outer, inner = pts[upper_idx[0]], pts[upper_idx[-1]]
    chord = inner - outer
    chord_n = chord / max(np.linalg.norm(chord), 1e-6)

    def opened(points, scale):
        rel = points - outer
        along = rel @ chord_n
        across = rel - along[:, None] * chord_n
        return outer + along[:, None] * chord_n + across * scale

    upper = smooth_curve(opened(pts[upper_idx], params["eye_scale"]))
    lower = smooth_curve(opened(pts[lower_idx], 1.0 + (params["eye_scale"] - 1.0) * 0.3))
    white = polygon_mask(shape, np.vstack([upper, lower[::-1]]))
    paint(canvas, white, EYE_WHITE)

    centre = pts[iris_idx]
    radius = float(np.linalg.norm(pts[ring_idx] - centre, axis=1).mean()) * params["iris_scale"]
    radius = max(radius, face.iod * 0.06)
    iris_zone = circle_mask(shape, centre, radius * 0.8)
    photo_iris = photo_lab[(iris_zone > 0.5) & (white > 0.5)]
    iris = np.median(photo_iris, 0) if len(photo_iris) else np.array([30.0, 5.0, 10.0])
    iris = np.array([np.clip(iris[0] * 0.8, 14, 45), iris[1] * 1.4, iris[2] * 1.4], np.float32)
    paint(canvas, circle_mask(shape, centre, radius) * white, iris_gradient(shape, centre, radius, face.up, iris))
    paint(canvas, circle_mask(shape, centre, radius * 0.42) * white, lab_colour(iris * [0.35, 0.6, 0.6]))
    ring = np.zeros(shape[:2], np.uint8)
    cv2.circle(ring, tuple(int(v) for v in np.round(centre * 16)), int(round(radius * 16)), 255,
               max(1, int(round(line * 0.6))), cv2.LINE_AA, shift=4)
    paint(canvas, ring.astype(np.float32) / 255.0 * white * 0.8, ink)
    if params["highlight_size"] > 0.02:  # two catch-lights: the light's, upper and toward it, and a small reflection
        towards = face.up - face.right * 0.8
        size = radius * params["highlight_size"]
        paint(canvas, circle_mask(shape, centre + towards * radius * 0.4, max(size, 1.2)) * white, HIGHLIGHT)
        paint(canvas, circle_mask(shape, centre - towards * radius * 0.4, max(size * 0.5, 0.9)) * white * 0.9, HIGHLIGHT)

    s = np.linspace(1.0, 0.0, len(upper))  # 1 at the outer corner
    lash = params["lash_width"] * face.iod * (0.3 + 0.7 * s ** 0.6)
    wing = outer - chord_n * np.linalg.norm(chord) * 0.12 + face.up * face.iod * 0.03
    lash_curve = np.vstack([wing[None], upper])
    lash = np.concatenate([[lash[0] * 0.3], lash])
    side = -1.0 if np.cross(chord_n, face.up) > 0 else 1.0
    paint(canvas, polygon_mask(shape, tapered_polygon(lash_curve, lash, side)), ink)
    lower_part = lower[: int(len(lower) * 0.65)]
    paint(canvas, stroke_mask(shape, lower_part, line * 0.5) * 0.55, ink)
    if params["crease"] > 0.05:
        height = float(np.abs((pts[upper_idx] - outer) @ np.array([-chord_n[1], chord_n[0]])).max())
        crease = upper[int(len(upper) * 0.2): int(len(upper) * 0.85)] + face.up * max(height * 0.55, face.iod * 0.05)
        paint(canvas, stroke_mask(shape, crease, line * 0.5) * params["crease"], ink)


def draw_glasses(canvas: np.ndarray, glasses: Glasses, line: float) -> None:
    """Clean frames where the photo's are (rims, bridge, arms) in the frame's hue, darkened; a glint on each lens."""
    shape = canvas.shape
    frame = to_lab(np.clip(glasses.colour, 0, 255).astype(np.uint8)[None, None])[0, 0]
    width = max(1.0, line * 1.2)
    alpha = np.zeros(shape[:2], np.float32)
    for rim in glasses.rims:
        alpha = np.maximum(alpha, stroke_mask(shape, np.vstack([rim, rim[:1]]), width))
    alpha = np.maximum(alpha, stroke_mask(shape, smooth_curve(glasses.bridge, 12), width))
    for arm in glasses.arms:
        alpha = np.maximum(alpha, stroke_mask(shape, arm, width * 0.8))
    for rim in glasses.rims:  # a short diagonal stroke in the lens's upper outer quarter (rim[0]: outer side, [16]: top)
        centre = rim.mean(0)
        top, outer = rim[16] - centre, rim[0] - centre
        glint = np.array([centre + top * 0.8 + outer * 0.3, centre + top * 0.3 + outer * 0.75])
        paint(canvas, stroke_mask(shape, glint, max(1.0, line * 0.8)) * 0.6, HIGHLIGHT)
    paint(canvas, alpha, lab_colour([min(float(frame[0]), 30.0), frame[1] * 0.8, frame[2] * 0.8]))


def draw_brow(canvas: np.ndarray, light: np.ndarray, skin_light: float, face: FaceFrame, brow, colour) -> None:
    """The photo's own brow shape (its pixels darker than the skin near the mesh's brow), in one flat colour.

    Falls back to a tapered stroke along the mesh's brow where the photo shows too little of it
    (pale brows, hair over the forehead).
    """
    upper, lower = face.points[brow[0]], face.points[brow[1]]
    centre = smooth_curve((upper + lower) / 2)
    thickness = np.interp(np.linspace(0, 1, len(centre)), np.linspace(0, 1, len(upper)),
                          np.linalg.norm(upper - lower, axis=1))
    taper = np.interp(np.linspace(0, 1, len(centre)), [0, 0.6, 1], [0.35, 0.8, 0.75])
    stroke = polygon_mask(canvas.shape, tapered_polygon(centre, thickness * taper))
    near = cv2.dilate((polygon_mask(canvas.shape, np.vstack([upper, lower[::-1]])) > 0.5).astype(np.uint8),
                      disc(face.iod * 0.1))
    for upper_lid, lower_lid, _, _ in EYES:  # not the eye socket's shadow or eye make-up below the brow
        eye = polygon_mask(canvas.shape, np.vstack([face.points[upper_lid], face.points[lower_lid][::-1]])) > 0.5
        near &= 1 - cv2.dilate(eye.astype(np.uint8), disc(face.iod * 0.2))
    dark = ((light < skin_light - 15) & (near > 0)).astype(np.uint8)
    dark = remove_specks(cv2.medianBlur(dark, 3), face.iod ** 2 * 0.01, 0)
    if dark.sum() < (stroke > 0.5).sum() * 0.4:
        paint(canvas, stroke, colour)
        return
    paint(canvas, cv2.GaussianBlur(smooth_mask(dark, 1.0).astype(np.float32), (0, 0), 0.7), colour)


def draw_mouth(canvas: np.ndarray, photo_lab: np.ndarray, face: FaceFrame, skin_lab, params: dict, ink,
               line: float) -> None:
    """Flat lips toward a drawn pink, the mouth line, an open mouth's inside, a lower-lip mark."""
    pts = face.points
    shape = canvas.shape
    lips = polygon_mask(shape, smooth_curve(np.vstack([pts[LIPS_OUTER], pts[LIPS_OUTER][:1]]), 60))
    photo_lips = photo_lab[lips > 0.5]
    lip = np.median(photo_lips, 0) if len(photo_lips) else np.asarray(skin_lab)
    pink = np.array([skin_lab[0] - 10, skin_lab[1] + 22, skin_lab[2] + 6], np.float32)
    lip = lip + (pink - lip) * params["lip_tint"]
    lip[0] = max(lip[0], skin_lab[0] - 22)
    paint(canvas, lips * 0.9, lab_colour(lip))
    upper_in, lower_in = smooth_curve(pts[LIPS_INNER_UPPER]), smooth_curve(pts[LIPS_INNER_LOWER])
    gap = float(np.linalg.norm(pts[LIPS_INNER_MIDDLE[0]] - pts[LIPS_INNER_MIDDLE[1]]))
    if gap > face.iod * 0.06:
        inside = polygon_mask(shape, np.vstack([upper_in, lower_in[::-1]]))
        paint(canvas, inside, lab_colour([28.0, 28.0, 12.0]))
        teeth = inside * polygon_mask(shape, np.vstack([upper_in, (upper_in - face.up * gap * 0.35)[::-1]]))
        paint(canvas, teeth, (246.0, 244.0, 238.0))
    paint(canvas, stroke_mask(shape, upper_in, line * 0.9) * params["line_darkness"], ink)
    under = smooth_curve(pts[UNDER_LOWER_LIP]) - face.up * face.iod * 0.06
    paint(canvas, stroke_mask(shape, under, line * 0.5) * 0.35, ink)


def draw_nose(canvas: np.ndarray, face: FaceFrame, ink, line: float, light_from_left: bool) -> None:
    pts = face.points
    under = smooth_curve(pts[NOSE_UNDER])
    half = under[: len(under) // 2 + 2] if not light_from_left else under[len(under) // 2 - 2:]
    paint(canvas, stroke_mask(canvas.shape, half, line * 0.7) * 0.6, ink)


def outline_mask(gray: np.ndarray, skin: np.ndarray, person: np.ndarray, hair: np.ndarray, face: FaceFrame | None,
                 width: float, scale: float) -> np.ndarray:
    """Clean outlines (float alpha): silhouette, skin border, jaw, XDoG lines off the skin and hair; ``width`` wide
    (it follows the face's size), open lines and the jaw tapered toward their ends."""
    shape = gray.shape
    lines = np.zeros(shape, np.uint8)
    for region in (person > 0.5, skin > 0):
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        contours = [c for c in contours if cv2.arcLength(c, True) > 12 * scale]
        cv2.drawContours(lines, contours, -1, 1, 1, cv2.LINE_8)
    inset = max(2, int(width) + 1)
    lines[:inset], lines[-inset:], lines[:, :inset], lines[:, -inset:] = 0, 0, 0, 0
    detail = xdog(gray, max(0.8, width * 0.55), 0.012)
    off_skin = cv2.erode((1 - skin).astype(np.uint8), np.ones((odd(width * 2),) * 2, np.uint8))
    detail &= off_skin & (person > 0.5).astype(np.uint8) & (1 - hair)
    iod = face.iod if face else shape[0] / 4.0
    lines |= remove_specks(detail, iod * 0.35, iod * 0.2)
    alpha = tapered_lines(lines, width, iod * LINE_TAPER)
    if face is not None:
        near_skin = cv2.dilate(skin, np.ones((odd(width * 3),) * 2, np.uint8)).astype(np.float32)
        jaw = smooth_curve(face.points[JAW], 48)
        along = np.linspace(0, np.pi, len(jaw))
        jaw_line = polygon_mask(shape, tapered_polygon(jaw, width * (0.3 + 0.7 * np.sin(along) ** 0.5)))
        alpha = np.maximum(alpha, jaw_line * near_skin)
    return alpha


class Regions(NamedTuple):
    """An aligned photo as the drawing reads it: its Lab, as is and smoothed, and its region masks."""

    face: FaceFrame | None
    photo_lab: np.ndarray
    smoothed: np.ndarray  # RGB uint8, edge-preserving
    lab: np.ndarray  # of ``smoothed``
    skin: np.ndarray
    person_skin: np.ndarray  # median Lab of the face's skin
    person: np.ndarray
    hair: np.ndarray
    beard: np.ndarray
    clothes: np.ndarray
    glasses: Glasses | None


def head_cut(image: np.ndarray, person: np.ndarray, face: FaceFrame) -> np.ndarray:
    """``person`` (0-1) with the background its loose edge takes in around the head cut away: GrabCut on a small
    copy of the rows above the chin, seeded as HEAD_CUT_* says; below the chin it is left as it is. The same image
    gives the same cut."""
    size = image.shape[1::-1]
    factor = HEAD_CUT_SIZE / max(size)
    small_size = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
    head = FaceFrame(face.points * factor)
    rows = int(np.clip(np.ceil(head.points[CHIN][1]), 8, small_size[1]))  # not the clothes: dark like a crowd
    small = np.ascontiguousarray(cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)[:rows])
    loose = cv2.resize(person, small_size, interpolation=cv2.INTER_AREA)[:rows] > 0.5
    shape, iod = small.shape, head.iod
    oval = head.oval(shape).astype(np.uint8)
    beyond = cv2.distanceTransform(1 - oval, cv2.DIST_L2, 3)
    seeds = np.full(shape[:2], cv2.GC_PR_FGD, np.uint8)
    seeds[beyond > iod * HEAD_CUT_LIKELY] = cv2.GC_PR_BGD
    width = max(1, round(HEAD_CUT_SIZE * HEAD_CUT_STRIP))
    seeds[:width], seeds[:, :width], seeds[:, -width:] = cv2.GC_PR_BGD, cv2.GC_PR_BGD, cv2.GC_PR_BGD
    seeds[cv2.dilate(loose.astype(np.uint8), disc(iod * HEAD_CUT_MARGIN)) == 0] = cv2.GC_BGD
    seeds[(oval > 0) | ((beyond < iod * HEAD_CUT_BAND) & head.above(shape, BROW_LINE))] = cv2.GC_FGD
    if (seeds == cv2.GC_FGD).all():
        return person
    cv2.setRNGSeed(0)  # GrabCut's colour models start from k-means++
    cv2.grabCut(small, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), HEAD_CUT_ROUNDS, cv2.GC_INIT_WITH_MASK)
    cut = loose & (seeds != cv2.GC_FGD) & (seeds != cv2.GC_PR_FGD)
    # What is cut but coloured like the hair beside the face (dark hair before a dark wall) stays.
    lab = to_lab(small)
    band = (beyond > 0) & (beyond < iod * HEAD_CUT_SAME_BAND) & head.above(shape, BROW_LINE)
    centres, _ = quantize_lab(lab, band, 3)
    count, labels = cv2.connectedComponents(cut.astype(np.uint8))
    for index in range(1, count):
        part = labels == index
        if min(float(lab_distance(median_lab(lab, part), centre)) for centre in centres) < HEAD_CUT_SAME:
            cut &= ~part
    kept = np.ones(small_size[::-1], np.float32)
    kept[:rows] = ~cut
    kept = cv2.resize(kept, size, interpolation=cv2.INTER_LINEAR)
    return np.where(face.above(image.shape, CHIN), np.minimum(person, kept), person).astype(np.float32)


def read_regions(image: np.ndarray, landmarks: np.ndarray | None, person: np.ndarray) -> Regions:
    """Skin, hair, beard, clothes and glasses of an aligned photo (RGB uint8; ``person`` a 0-1 mask, cut again
    around the head by :func:`head_cut`)."""
    scale = image.shape[0] / 256.0
    face = FaceFrame(landmarks) if landmarks is not None else None
    if face is not None:
        person = head_cut(image, person, face)
    glasses = find_glasses(image, landmarks) if face is not None else None
    if glasses is not None:  # the photo's frames are drawn anew: neither skin, shadow, brow nor line
        image = cv2.inpaint(image, frame_mask(image, glasses, face.iod), 3, cv2.INPAINT_TELEA)
    photo_lab = to_lab(image)
    smoothed = cv2.bilateralFilter(cv2.bilateralFilter(image, odd(7 * scale), 30, 5 * scale), odd(7 * scale), 30,
                                   5 * scale)
    lab = to_lab(smoothed)
    if face is not None:
        skin, person_skin = skin_region(lab, face, person)
    else:
        skin, person_skin = np.zeros(image.shape[:2], np.uint8), PHOTO_SKIN_LAB
    person, hair, beard, clothes = person_regions(face, person, skin, photo_lab[..., 0], float(person_skin[0]),
                                                  scale)
    return Regions(face, photo_lab, smoothed, lab, skin, person_skin, person, hair, beard, clothes, glasses)


def frame_mask(image: np.ndarray, glasses: Glasses, iod: float) -> np.ndarray:
    """The photo's frames (uint8 0/1): dark ridges within a tenth of the eye distance of the fitted frames."""
    near = np.zeros(image.shape[:2], np.uint8)
    for curve in (*glasses.rims, glasses.bridge):
        cv2.polylines(near, [np.round(curve).astype(np.int32)], curve is not glasses.bridge, 1, odd(iod * 0.2))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return cv2.dilate((dark_ridges(gray, iod) > 0.015).astype(np.uint8) & near, np.ones((3, 3), np.uint8))


def draw_webtoon(image: np.ndarray, landmarks: np.ndarray | None, person: np.ndarray, params: dict,
                 style: Style) -> np.ndarray:
    """Draw a webtoon version of an aligned face photo (RGB uint8); ``person`` is a 0-1 mask.

    ``landmarks`` are mediapipe's 478 points in image pixels, or None (then no facial features are
    drawn: outlines and flat fills only). ``params`` are one sample's drawn parameters.
    """
    return draw_regions(image, read_regions(image, landmarks, person), params, style)


def draw_regions(image: np.ndarray, regions: Regions, params: dict, style: Style) -> np.ndarray:
    """Draw an aligned face photo (RGB uint8) from its :func:`read_regions`."""
    shape = image.shape
    scale = shape[0] / 256.0
    smooth = odd(5 * scale)
    face, photo_lab, smoothed, lab, skin, person_skin, person, hair, beard, clothes, glasses = regions
    iod = face.iod if face is not None else shape[0] / 4.0

    canvas = background_layer(image, lab, params, smooth)
    person_alpha = cv2.GaussianBlur(person, (0, 0), 0.7)
    if clothes.sum() > 20:
        fill = flat_tones(lab, clothes, int(params["hair_tones"]), params["saturation"], odd(smooth * 2))
        paint(canvas, cv2.GaussianBlur(clothes.astype(np.float32), (0, 0), 0.7) * person_alpha, fill)
    gray_photo = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    strand_width = max(0.8, params["line_width"] * iod * 0.6)
    hair_colour = None  # a beard is drawn in the hair's colour (its own lightness): never a grey of skin and hair
    flow = hair_flow(gray_photo, hair | beard, iod)
    for region, tones in ((hair, int(params["hair_tones"])), (beard, 2)):
        if region.sum() <= 20:
            continue
        core = hair_core(lab, region, person, person_skin, iod) if region is hair else None
        fill, base = hair_fill(lab, region, tones, params["saturation"], iod * 0.12, hair_colour, core)
        hair_colour = base[1:]
        paint(canvas, cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.7) * person_alpha, fill)
        if face is not None and region is hair:
            highlight = hair_highlight_band(shape, face, hair, flow, params["highlight_phase"])
            paint(canvas, highlight * params["hair_highlight"], lab_colour(base + [22.0, 0.0, 0.0]))
        strands = hair_strands(gray_photo, region, flow, iod, params["strands"], strand_width)
        paint(canvas, strands * 0.8, lab_colour(base * [0.45, 1.0, 1.0]))

    ink = lab_colour(style.ink_lab)
    line = max(1.0, params["line_width"] * iod)
    if face is not None:
        shadows, lit = cel_shading(photo_lab, lab[..., 0], skin, face, params)
        step = min(params["shadow_depth"] / max(style.skin_lab[0], 1.0), 0.9)
        skin_lab, lit_lab, shadow_labs = skin_tones(lab, skin, shadows, lit, person_skin, step)
        skin_alpha = cv2.GaussianBlur(skin.astype(np.float32), (0, 0), 0.7)
        paint(canvas, skin_alpha, lab_colour(skin_lab))
        paint(canvas, lit, lab_colour(lit_lab))
        for shade, tone in zip(shadows, shadow_labs):
            paint(canvas, shade, lab_colour(tone))
        if params["blush"] > 0.02:
            blush = np.zeros(shape[:2], np.float32)
            for index in CHEEKS:
                blush = np.maximum(blush, circle_mask(shape, face.points[index], iod * 0.22))
            blush = cv2.GaussianBlur(blush, (0, 0), iod * 0.08) * skin_alpha
            paint(canvas, blush * params["blush"], lab_colour(skin_lab + [-6.0, 24.0, 6.0]))
    gray = cv2.cvtColor(smoothed, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    outlines = outline_mask(gray, skin, person, hair | beard, face, line, scale)
    paint(canvas, outlines * params["line_darkness"], ink)
    if face is not None:
        brow_colour = lab_colour(np.minimum(median_lab(lab, hair > 0) * [0.7, 1, 1], [35, 60, 60])
                                 if hair.sum() > 20 else style.ink_lab)
        # each feature drawn in a box around it, half an eye distance wider
        for brow in BROWS:
            box, local = face.around(brow, iod * 0.5)
            draw_brow(canvas[box], lab[..., 0][box], float(person_skin[0]), local, brow, brow_colour)
        light_from_left = float(photo_lab[..., 0][:, : shape[1] // 2].mean()) > float(photo_lab[..., 0][:, shape[1] // 2:].mean())
        box, local = face.around([NOSE_UNDER], iod * 0.5)
        draw_nose(canvas[box], local, ink, line, light_from_left)
        box, local = face.around([LIPS_OUTER, UNDER_LOWER_LIP], iod * 0.5)
        draw_mouth(canvas[box], photo_lab[box], local, skin_lab, params, ink, line)
        for eye in EYES:
            box, local = face.around(eye, iod * 0.5)
            draw_eye(canvas[box], photo_lab[box], local, eye, params, ink, line)
    if glasses is not None:
        draw_glasses(canvas, glasses, line)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def draw_scene(image: np.ndarray, person: np.ndarray, params: dict, style: Style, iod: float) -> np.ndarray:
    """Draw a whole frame (RGB uint8) the webtoon way: flat colour regions, clean lines, a simplified background.

    Colours are flattened by mean-shift filtering, then quantised: the people (``person``, 0-1) in
    ``hair_tones`` + 3 flat Lab tones, the background in ``background_tones`` paler ones. Lines are
    the people's silhouettes and the dark creases of the flattened frame, thinned to one width
    (``line_width`` times ``iod``, the faces' inter-ocular distance); the background's are fainter.
    Faces are not drawn here: the face teacher draws them on their aligned crops.
    """
    scale = image.shape[0] / 256.0
    smooth = odd(5 * scale)
    flattened = cv2.pyrMeanShiftFiltering(np.ascontiguousarray(image), max(2.0, 5 * scale), 20)
    lab = to_lab(flattened)
    body = smooth_mask(person > 0.5, 2.0 * scale)
    canvas = flat_tones(lab, 1 - body, int(params["background_tones"]), params["saturation"] * 0.85, odd(smooth * 1.5))
    canvas = canvas * 0.85 + 255.0 * 0.15 * (1 - body[..., None])  # a paler, quieter background
    if body.sum() > 20:
        people = flat_tones(lab, body, int(params["hair_tones"]) + 3, params["saturation"], smooth)
        paint(canvas, cv2.GaussianBlur(body.astype(np.float32), (0, 0), 0.7), people)
    width = max(1.0, params["line_width"] * iod)
    gray = cv2.cvtColor(flattened, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    creases = remove_specks(xdog(gray, max(0.8, width * 0.55), 0.012), iod * 0.35, iod * 0.25)
    silhouette = np.zeros(body.shape, np.uint8)
    contours, _ = cv2.findContours(body, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(silhouette, [c for c in contours if cv2.arcLength(c, True) > 12 * scale], -1, 1, 1)
    ink = lab_colour(style.ink_lab)
    paint(canvas, even_lines(silhouette | (creases & body), width) * params["line_darkness"], ink)
    paint(canvas, even_lines(creases & (1 - body), width * 0.7) * params["line_darkness"] * 0.5, ink)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- the teacher


def draw_parameters(ranges: dict, backgrounds: dict, palette: list, rng: np.random.Generator | None) -> dict:
    """One sample's values: each range drawn uniformly (integers inclusive), a background, a colour.

    With ``rng`` None every value is its range's centre and the background the most frequent one.
    """
    params = {}
    for name in BOUNDS:
        low, high = ranges[name]
        value = rng.uniform(low, high) if rng is not None else (low + high) / 2
        params[name] = int(round(value)) if name in INTEGER_PARAMETERS else round(float(value), 4)
    names = [b for b in BACKGROUNDS if backgrounds.get(b, 0) > 0]
    weights = np.array([backgrounds[b] for b in names], np.float64)
    pick = int(rng.choice(len(names), p=weights / weights.sum())) if rng is not None else int(weights.argmax())
    params["background"] = names[pick]
    colour = palette[int(rng.integers(len(palette)))] if rng is not None else palette[0]
    params["background_colour"] = [int(v) for v in colour]
    params["highlight_phase"] = round(float(rng.uniform(0, 2 * np.pi)), 4) if rng is not None else 0.0
    return params


class WebtoonTeacher(Teacher):
    """Draws the toon side from the real photo (see the module docstring for the two directions)."""

    def __init__(self, config: WebtoonConfig):
        super().__init__(config)
        self.style = load_style(config.style)
        self.ranges = {name: tuple(getattr(config, name) or self.style.ranges[name]) for name in BOUNDS}
        if config.background:
            self.backgrounds = {name: 1.0 for name in config.background}
        else:
            self.backgrounds = {name: w for name, w in self.style.backgrounds.items() if w > 0}
        self._masker = None

    def describe(self) -> dict:
        return {**self.config.model_dump(mode="json"), "style_name": self.style.name,
                "ranges": {k: list(v) for k, v in self.ranges.items()}, "backgrounds": self.backgrounds}

    def draw_parameters(self, rng: np.random.Generator) -> dict:
        return draw_parameters(self.ranges, self.backgrounds, self.style.palette, rng)

    def _person_mask(self, sample: Sample, image: np.ndarray) -> tuple[np.ndarray, str]:
        if sample.mask is not None and sample.mask.shape[:2] == image.shape[:2]:
            return sample.mask.astype(np.float32) / 255.0, "sample"
        if self._masker is None:
            from factory.stages.segment import MediapipeMasker

            self._masker = MediapipeMasker()
        return self._masker(image), "selfie"

    @staticmethod
    def _landmarks(sample: Sample, image: np.ndarray) -> tuple[np.ndarray | None, str]:
        faces = sample.meta.get("faces") or {}
        if faces.get("scheme") == "mediapipe478" and faces.get("side", "real") == "real":
            return np.asarray(faces["landmarks"], np.float64), "face_stage"
        from factory.faces import shared_detector

        found = shared_detector("mediapipe", min_size=16).detect(image)
        if found and found[0].scheme == "mediapipe478":
            return found[0].landmarks, "detected"
        return None, "none"

    def draw(self, image: np.ndarray, sample: Sample) -> tuple[np.ndarray, dict]:
        """The drawing of ``image`` for ``sample`` and its provenance (the same fields for every sample)."""
        params = self.draw_parameters(sample.rng("teacher"))
        landmarks, features = self._landmarks(sample, image)
        person, mask_source = self._person_mask(sample, image)
        if features == "none":
            log.debug("%s: no face mesh; drawing without facial features", sample.key)
        regions = read_regions(image, landmarks, person)
        drawing = draw_regions(image, regions, params, self.style)
        return drawing, {**self.describe(), "drawn": params, "features": features, "mask": mask_source,
                         "glasses": regions.glasses is not None}

    def translate(self, images: list[np.ndarray], samples: list[Sample]) -> list[np.ndarray]:
        return [self.draw(image, sample)[0] for image, sample in zip(images, samples)]

    def __call__(self, samples):
        for sample in samples:
            if sample.real is None:
                yield sample.reject("webtoon_needs_real_photo")
                continue
            sample.toon, sample.meta["teacher"] = self.draw(sample.real, sample)
            yield sample


class WebtoonScene(WebtoonTeacher):
    """The webtoon teacher's whole-frame drawing (:func:`draw_scene`), in the same style and ranges:
    the scene teacher of scene pairs, whose faces the face teacher draws."""

    def draw(self, image: np.ndarray, sample: Sample) -> tuple[np.ndarray, dict]:
        params = self.draw_parameters(sample.rng("teacher"))
        person, mask_source = self._person_mask(sample, image)
        sizes = [face["iod"] for face in (sample.meta.get("faces") or {}).get("faces", [])]
        iod = float(np.median(sizes)) if sizes else image.shape[0] / 16.0
        drawing = draw_scene(image, person, params, self.style, iod)
        return drawing, {**self.describe(), "drawn": params, "features": "scene", "mask": mask_source}
