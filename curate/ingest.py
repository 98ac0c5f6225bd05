"""Pages and strips of any height become face crops that remember where they came from.

A tall image is cut into overlapping slices (a face near a cut is whole in one of them); every
detector of the chain runs on every slice, mediapipe also on square tiles of it (its detector sees
a downscaled picture, where the faces of a painted page are too small); boxes are moved back to page
coordinates and duplicates (across slices, tiles and detectors) merged. Each face keeps its provenance: file,
slice, box on the page, the detector that found it and those that agreed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factory.errors import UserError
from factory.faces import Face, build_detector, parse_detector_spec

log = logging.getLogger(__name__)

DEFAULT_CHAIN = "anime,mediapipe,dlib"
# Sides of the square tiles (half-side overlap) mediapipe also runs on. On the shared comic pages
# (benchmarks/curate_evidence.py) the chain's recall rose from 50% to 79% and precision from 88% to 92%.
TILE_SIDES = (512, 1024)
TILED = {"mediapipe"}
# One drawn face gets boxes of different sizes from different detectors; every box is scaled about its
# centre to the anime cascade's (the crop margin is set for it), so that crops of one character line up
# whoever found them. Median size ratios over faces two detectors both found on the shared sprites,
# anime tiles and comic pages: mediapipe 1.47 (40 faces, IQR 1.41-1.57), dlib 1.58 (10 faces).
BOX_SCALE = {"anime": 1.0, "mediapipe": 1.47, "dlib": 1.58}


@dataclass
class Slice:
    index: int
    y0: int
    y1: int


def slices(height: int, slice_height: int, overlap: int) -> list[Slice]:
    """Rows [y0, y1) covering ``height`` in windows of ``slice_height`` that overlap by ``overlap``."""
    if slice_height <= overlap:
        raise UserError(f"--slice-height ({slice_height}) must be larger than --overlap ({overlap})")
    if height <= slice_height:
        return [Slice(0, 0, height)]
    step = slice_height - overlap
    count = int(np.ceil((height - overlap) / step))
    starts = [min(i * step, height - slice_height) for i in range(count)]
    return [Slice(i, y0, y0 + slice_height) for i, y0 in enumerate(dict.fromkeys(starts))]


@dataclass
class Detection:
    """A face on a page: box (x0, y0, x1, y1) in page pixels, with its provenance."""

    box: np.ndarray
    score: float
    detector: str
    slice: int
    agreed: list[str] = field(default_factory=list)

    @property
    def size(self) -> float:
        return float(np.sqrt(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0)))


def tiles(height: int, width: int, side: int) -> list[tuple[int, int]]:
    """(y0, x0) of the square windows of ``side``, overlapping by half, that cover an image larger than one."""
    if height <= side and width <= side:
        return []
    return [(y.y0, x.y0) for y in slices(height, side, side // 2) for x in slices(width, side, side // 2)]


def overlap_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box: 1 when one box sits inside the other."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / max(smaller, 1e-9))


def merge(detections: list[Detection], priority: list[str], threshold: float = 0.5) -> list[Detection]:
    """One detection per face: the earlier detector in ``priority`` wins, then the larger box;
    the others that covered it are listed in ``agreed``."""
    order = sorted(detections, key=lambda d: (priority.index(d.detector), -d.size))
    kept: list[Detection] = []
    for det in order:
        twin = next((k for k in kept if overlap_ratio(k.box, det.box) >= threshold), None)
        if twin is None:
            kept.append(det)
        elif det.detector not in twin.agreed and det.detector != twin.detector:
            twin.agreed.append(det.detector)
    return sorted(kept, key=lambda d: (d.box[1], d.box[0]))


class ChainDetector:
    """Every detector of the chain on every slice, merged (recall first: comic pages hold many faces).

    ``spec`` names the detectors as everywhere else (``anime,mediapipe,dlib``; ``anime:PATH`` or a bare
    ``anime`` with ``cascade``, an LBP cascade XML such as nagadomi's lbpcascade_animeface.xml). A named
    detector that cannot run is an error, never skipped.
    """

    def __init__(self, spec: str = DEFAULT_CHAIN, *, cascade: Path | None = None,
                 min_size: int = 32, slice_height: int = 1600, overlap: int = 320, max_faces: int = 8,
                 tile_sides: tuple[int, ...] = TILE_SIDES):
        members = parse_detector_spec(spec, "--detector", cascade)
        self.names = [name for name, _ in members]
        self.tile_sides = tile_sides
        self.slice_height, self.overlap, self.min_size = slice_height, overlap, min_size
        slices(slice_height + 1, slice_height, overlap)  # checks the two options early
        self._detectors = {name: build_detector(name, min_size=min_size, **options,
                                                **({"max_faces": max_faces} if name == "mediapipe" else {}))
                           for name, options in members}

    @property
    def spec(self) -> str:
        return ",".join(self.names)

    def detect(self, image: np.ndarray) -> list[Detection]:
        found: list[Detection] = []
        for part in slices(image.shape[0], self.slice_height, self.overlap):
            window = np.ascontiguousarray(image[part.y0:part.y1])
            for name, detector in self._detectors.items():
                found += [_on_page(face, name, part) for face in detector.detect(window)]
                for side in self.tile_sides if name in TILED else ():
                    for y0, x0 in tiles(*window.shape[:2], side):
                        tile = np.ascontiguousarray(window[y0:y0 + side, x0:x0 + side])
                        found += [_on_page(face, name, part, x0, y0) for face in detector.detect(tile)]
        return merge(found, self.names)


def _on_page(face: Face, detector: str, part: Slice, x0: int = 0, y0: int = 0) -> Detection:
    box = np.asarray(face.box, dtype=np.float64) + np.array([x0, part.y0 + y0, x0, part.y0 + y0])
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * BOX_SCALE.get(detector, 1.0)
    return Detection(box=np.concatenate([centre - half, centre + half]), score=float(face.score), detector=detector,
                     slice=part.index)


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
    """The square of side ``margin`` × the box's longer side, about the box's centre."""
    centre = (box[:2] + box[2:]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * margin / 2
    return np.concatenate([centre - half, centre + half])


def crop_square(image: np.ndarray, box: np.ndarray, margin: float = 1.5) -> np.ndarray:
    """A square crop around ``box`` enlarged ``margin`` times; what lies outside the page is white
    (comic gutters), never mirrored page content."""
    square = square_box(box, margin)
    side = max(int(round(square[2] - square[0])), 1)
    x0, y0 = (int(round(v)) for v in square[:2])
    x1, y1 = x0 + side, y0 + side
    out = np.full((side, side, 3), 255, np.uint8)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out
