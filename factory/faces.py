"""Faces: detection, landmarks and FFHQ-style alignment of real and webtoon faces.

A leaf module: the pipeline's face stage, inference and casting all use it. Detectors return
``Face`` objects sorted largest first, with landmarks in image pixels when the detector has them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pydantic import Field

from factory.config import Strict, choose_kind, kind_names
from factory.errors import ModelLoadError, UserError
from warping.landmarks import KEYPOINTS5

log = logging.getLogger(__name__)



@dataclass
class Face:
    """One detected face: box (x0, y0, x1, y1) and optional landmarks, in image pixels."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None
    scheme: str = "box"

    @property
    def size(self) -> float:
        return float(np.sqrt((self.box[2] - self.box[0]) * (self.box[3] - self.box[1])))

    def keypoints5(self) -> np.ndarray:
        """(5, 2) eyes, nose tip, mouth corners; estimated from the box when there are no landmarks."""
        if self.landmarks is not None and self.scheme in KEYPOINTS5:
            return np.array([self.landmarks[idx].mean(0) for idx in KEYPOINTS5[self.scheme]])
        x0, y0, x1, y1 = self.box
        w, h = x1 - x0, y1 - y0
        rel = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.58], [0.36, 0.76], [0.64, 0.76]])
        return np.array([x0, y0]) + rel * np.array([w, h])

    def enlarged(self, factor: float) -> "Face":
        """The same face with its box scaled by ``factor`` about its centre (1.5 for anime crops).

        A box-only face keeps the keypoints estimated from its original box (scheme ``keypoints5``).
        """
        if factor == 1.0:
            return self
        centre = (self.box[:2] + self.box[2:]) / 2
        half = (self.box[2:] - self.box[:2]) / 2 * factor
        if self.landmarks is None or self.scheme not in KEYPOINTS5:
            return Face(np.concatenate([centre - half, centre + half]), self.score, self.keypoints5(), "keypoints5")
        return Face(np.concatenate([centre - half, centre + half]), self.score, self.landmarks, self.scheme)


class MediapipeMesh:
    """mediapipe's 478-point face mesh (models shipped in the wheel).

    The mesh's own detector is short-range: it misses small faces in large photos. Faces that
    Faces are found by mediapipe's full-range face detector and meshed on a crop around each box;
    when it finds none (stylized faces), the mesh's own short-range detector gets the whole image.
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, crop_side: int = 384):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True,
            min_detection_confidence=min_confidence,
        )
        self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=min_confidence,
        )
        self._finder = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        self._max_faces = max_faces
        self._crop_side = crop_side

    @staticmethod
    def _meshes(mesh, image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        result = mesh.process(np.ascontiguousarray(image))
        return [np.array([(p.x * w, p.y * h) for p in marks.landmark], dtype=np.float64)
                for marks in result.multi_face_landmarks or []]

    def detect(self, image: np.ndarray) -> list[Face]:
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        detections = (self._finder.process(image).detections or [])[: self._max_faces]
        if not detections:
            return [_mesh_face(pts) for pts in self._meshes(self._mesh, image)]
        faces = []
        for detection in detections:
            rel = detection.location_data.relative_bounding_box
            centre = np.array([(rel.xmin + rel.width / 2) * w, (rel.ymin + rel.height / 2) * h])
            faces += [_mesh_face(pts, float(detection.score[0]))
                      for pts in self.mesh_around(image, centre, 2.0 * max(rel.width * w, rel.height * h))]
        return faces

    def mesh_around(self, image: np.ndarray, centre: np.ndarray, side: float) -> list[np.ndarray]:
        """Mesh points (image pixels) of the face in the square of ``side`` around ``centre``,
        resampled to the mesh's working size first (small drawn faces are upscaled)."""
        scale = self._crop_side / side
        matrix = np.array([[scale, 0, self._crop_side / 2 - scale * centre[0]],
                           [0, scale, self._crop_side / 2 - scale * centre[1]]])
        patch = cv2.warpAffine(np.ascontiguousarray(image), matrix, (self._crop_side, self._crop_side),
                               flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return [transform_points(pts, invert_matrix(matrix)) for pts in self._meshes(self._crop_mesh, patch)]


def _mesh_face(points: np.ndarray, score: float = 1.0) -> Face:
    return Face(box=np.array([*points.min(0), *points.max(0)]), score=score, landmarks=points, scheme="mediapipe478")


def dlib_model_path(name: str) -> Path:
    """Path of a model file in face-recognition-models (its own import needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise UserError("face-recognition-models is not installed (needed by the dlib detector)")
    return Path(spec.origin).parent / "models" / name


class DlibHog:
    """dlib's HOG detector with the 68-point shape predictor."""

    def __init__(self, upsample: int = 1):
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
        self._upsample = upsample

    def detect(self, image: np.ndarray) -> list[Face]:
        rects, scores, _ = self._detector.run(np.ascontiguousarray(image), self._upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            shape = self._predictor(image, rect)
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)
            faces.append(Face(box=box, score=float(score), landmarks=pts, scheme="dlib68"))
        return faces


class Cascade:
    """An OpenCV cascade classifier (boxes only: keypoints are estimated from the box)."""

    def __init__(self, path: str | Path, scale_factor: float = 1.1, min_neighbors: int = 5, min_window: int = 24,
                 min_score: float = 0.0, pad: float = 0.0):
        path = Path(path)
        expected = "an OpenCV cascade classifier XML"  # the caller names its option or recipe field
        if not path.is_file():
            raise ModelLoadError(path, f"file not found; expected {expected}")
        try:
            classifier = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):  # a file that is not a cascade
            classifier = None
        if classifier is None or classifier.empty():
            raise ModelLoadError(path, expected)
        self._classifier = classifier
        self._options = dict(scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_window, min_window))
        self._min_score = min_score
        self._pad = pad

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY))
        border = int(round(self._pad * max(gray.shape)))  # a face that fills the picture needs room around it
        if border:
            gray = cv2.copyMakeBorder(gray, border, border, border, border, cv2.BORDER_REPLICATE)
        boxes, _, weights = self._classifier.detectMultiScale3(gray, outputRejectLevels=True, **self._options)
        return [Face(box=np.array([x, y, x + w, y + h], dtype=np.float64) - border, score=float(score))
                for (x, y, w, h), score in zip(boxes, np.ravel(weights)) if score >= self._min_score]


class LandmarkedBoxes:
    """A box-only detector (the anime cascade) whose boxes get mediapipe's mesh: the square around each
    box (twice its side) is upscaled to the mesh's working size and meshed; a box the mesh cannot read
    stays box-only (keypoints estimated from the box)."""

    def __init__(self, boxes, mesh: "MediapipeMesh"):
        self._boxes = boxes
        self._mesh = mesh

    def detect(self, image: np.ndarray) -> list[Face]:
        out = []
        for face in self._boxes.detect(image):
            centre = (face.box[:2] + face.box[2:]) / 2
            meshes = self._mesh.mesh_around(image, centre, 2.0 * float(np.max(face.box[2:] - face.box[:2])))
            out.append(Face(face.box, face.score, meshes[0], "mediapipe478") if meshes else face)
        return out


def haar_cascade(name: str = "haarcascade_frontalface_default.xml", min_score: float = 2.0, **options) -> Cascade:
    """OpenCV's frontal-face Haar cascade, shipped in the opencv wheel: the light option for photos.

    ``min_score`` (the cascade's level weight) drops most false positives: on the shared photos
    true faces score 3-10, clutter 0.3-1.9.
    """
    return Cascade(Path(cv2.data.haarcascades) / name, min_score=min_score, **options)


def anime_cascade(cascade: str | Path, landmarks: bool = True, pad: float = 0.25, **options) -> Cascade | LandmarkedBoxes:
    """An LBP anime-face cascade from a path the user gives (e.g. nagadomi's lbpcascade_animeface.xml),
    its boxes landmarked by the mesh unless ``landmarks`` is false.

    ``pad`` (a fraction of the image side, replicated border) lets the 24 px window fit faces that fill
    a tight crop: 10/30 shared webtoon characters found instead of 6/30.
    """
    boxes = Cascade(cascade, pad=pad, **options)
    return LandmarkedBoxes(boxes, shared_detector("mediapipe").backend) if landmarks else boxes


class Detector:
    """A backend plus the common steps: minimum size, box enlargement, largest first."""

    def __init__(self, backend, min_size: int = 48, enlarge: float = 1.0):
        if enlarge <= 0:
            raise UserError(f"faces: box enlargement must be > 0, got {enlarge}")
        self.backend = backend
        self.min_size = min_size
        self.enlarge = enlarge

    def detect(self, image: np.ndarray) -> list[Face]:
        faces = [f.enlarged(self.enlarge) for f in self.backend.detect(image) if f.size >= self.min_size]
        return sorted(faces, key=lambda f: -f.size)


# -- the detector kinds (declared as every pluggable kind is: see factory.config.one_of) -------------


class MediapipeDetectorConfig(Strict):
    """mediapipe's 478-point face mesh, on the boxes of its full-range face detector (models in the wheel)."""

    kind: Literal["mediapipe"] = "mediapipe"
    max_faces: int = Field(4, ge=1)
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    crop_side: int = Field(384, ge=64)

    def build(self) -> MediapipeMesh:
        return MediapipeMesh(self.max_faces, self.min_confidence, self.crop_side)


class DlibDetectorConfig(Strict):
    """dlib's HOG face detector with the 68-point shape predictor."""

    kind: Literal["dlib"] = "dlib"
    upsample: int = Field(1, ge=0)

    def build(self) -> DlibHog:
        return DlibHog(self.upsample)


class CascadeOptions(Strict):
    scale_factor: float = Field(1.1, gt=1.0)
    min_neighbors: int = Field(5, ge=0)
    min_window: int = Field(24, ge=1)


class HaarDetectorConfig(CascadeOptions):
    """OpenCV's frontal-face Haar cascade, shipped in the opencv wheel: the light option for photos."""

    kind: Literal["haar"] = "haar"
    min_score: float = 2.0

    def build(self) -> Cascade:
        return haar_cascade(**self.model_dump(exclude={"kind"}))


class AnimeDetectorConfig(CascadeOptions):
    """An LBP anime-face cascade the user gives (e.g. nagadomi's lbpcascade_animeface.xml), landmarked by the mesh."""

    kind: Literal["anime"] = "anime"
    cascade: Path
    landmarks: bool = True
    pad: float = Field(0.25, ge=0.0)

    def build(self) -> Cascade | LandmarkedBoxes:
        return anime_cascade(**self.model_dump(exclude={"kind"}))


DETECTORS = (MediapipeDetectorConfig, DlibDetectorConfig, HaarDetectorConfig, AnimeDetectorConfig)


def build_detector(name: str = "mediapipe", *, min_size: int = 48, enlarge: float = 1.0, **options) -> Detector:
    """A face detector by kind (``DETECTORS``): ``mediapipe`` (478-point mesh), ``dlib`` (HOG + 68
    points), ``haar`` (OpenCV's Haar cascade) or ``anime`` (an LBP cascade: pass ``cascade=PATH``).

    ``min_size`` is applied to the detector's own box, before enlargement by ``enlarge``.
    """
    if name == "anime" and "cascade" not in options:
        raise UserError("faces.cascade: the anime detector needs a path to an LBP cascade XML")
    config = choose_kind(DETECTORS, name, options, "faces.detector", "detector")
    return Detector(config.build(), min_size=min_size, enlarge=enlarge)


def parse_detector_spec(spec: str, field: str = "--detector", cascade: str | Path | None = None) -> list[tuple[str, dict]]:
    """``dlib,mediapipe,anime:PATH`` as ``[(name, options)]``; a bare ``anime`` takes ``cascade``."""
    items = [item.strip() for item in str(spec).split(",")]
    if not items or not all(items):
        raise UserError(f"{field}: {spec!r} names no detector (e.g. dlib,mediapipe,anime:CASCADE.xml)")
    parsed = []
    for item in items:
        name, sep, path = (part.strip() for part in item.partition(":"))
        if name not in kind_names(DETECTORS):
            raise UserError(f"{field}: unknown detector {name!r} in {spec!r} (choose from {sorted(kind_names(DETECTORS))}; "
                            f"the anime cascade is given as anime:PATH)")
        if sep and name != "anime":
            raise UserError(f"{field}: {item!r}: only the anime detector takes a path (anime:PATH)")
        if name == "anime":
            path = path or cascade
            if not path:
                raise UserError(f"{field}: the anime detector needs its cascade XML: anime:PATH")
            parsed.append((name, {"cascade": Path(path)}))
        else:
            parsed.append((name, {}))
    return parsed


class DetectorChain:
    """Detectors tried in order; the first that finds any face answers (e.g. ``dlib,mediapipe,anime:PATH``).

    Members are the process's shared detectors, so a chain costs no second model load.
    """

    def __init__(self, spec: str = "dlib,mediapipe", min_size: int = 40, *, cascade: str | Path | None = None,
                 field: str = "--detector"):
        self.members = parse_detector_spec(spec, field, cascade)
        self.min_size = min_size
        try:
            self._detectors = [shared_detector(name, min_size=min_size, **options) for name, options in self.members]
        except ModelLoadError as exc:
            raise UserError(f"{field}: {exc}") from None

    @property
    def spec(self) -> str:
        return ",".join(name if not options else f"{name}:{options['cascade']}" for name, options in self.members)

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_named(image)[1]

    def detect_named(self, image: np.ndarray) -> tuple[str | None, list[Face]]:
        """The faces and the name of the detector that found them (None: no member found any)."""
        for (name, _), detector in zip(self.members, self._detectors):
            found = detector.detect(image)
            if found:
                return name, found
        return None, []


@lru_cache(maxsize=None)
def shared_detector(name: str = "mediapipe", min_size: int = 48, **options) -> Detector:
    """One detector per process and setting (models load once); options must be hashable."""
    return build_detector(name, min_size=min_size, **options)


@lru_cache(maxsize=None)
def shared_chain(spec: str, min_size: int = 48, cascade: Path | None = None) -> DetectorChain:
    """One chain per process and setting, for the factory's face stage and gates."""
    return DetectorChain(spec, min_size, cascade=cascade, field="faces.detector")


def alignment_matrix(keypoints5: np.ndarray, size: int, margin: float = 1.0) -> np.ndarray:
    """2×3 similarity transform from the image to an FFHQ-style square crop of side ``size``.

    As in the FFHQ recipe: the crop is centred a little below the eyes, rotated so the eyes are
    level, and its side is the larger of 4× the eye distance and 3.6× the eye-to-mouth distance,
    times ``margin``.
    """
    left_eye, right_eye, _, mouth_l, mouth_r = keypoints5
    eye_avg = (left_eye + right_eye) / 2
    eye_to_eye = right_eye - left_eye
    eye_to_mouth = (mouth_l + mouth_r) / 2 - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * margin
    centre = eye_avg + eye_to_mouth * 0.1
    scale = size / (2 * half)
    cos, sin = x * scale
    # maps centre to the crop centre, x-axis along the eye line
    return np.array([
        [cos, sin, size / 2 - (cos * centre[0] + sin * centre[1])],
        [-sin, cos, size / 2 - (-sin * centre[0] + cos * centre[1])],
    ])


def edge_colour(image: np.ndarray) -> tuple[float, ...]:
    """The mean colour of the image's outermost pixels (what a crop that leaves the frame is padded with)."""
    ring = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).reshape(-1, *image.shape[2:3])
    return tuple(float(v) for v in ring.mean(0).reshape(-1))


def crop(image: np.ndarray, matrix: np.ndarray, size: int, fill: float | tuple[float, ...] | None = None) -> np.ndarray:
    """The aligned crop. Where it leaves the image it is padded with one flat colour, never mirrored:
    ``fill`` (0 for masks), or the mean colour of the image's border (``edge_colour``) when None."""
    fill = edge_colour(image) if fill is None else fill
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def in_frame(image_shape: tuple[int, ...], matrix: np.ndarray, size: int) -> np.ndarray:
    """Per crop pixel (size x size, float32 0/1): whether the image pixel it samples lies inside the image."""
    height, width = image_shape[:2]
    to_image = invert_matrix(matrix)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    x = to_image[0, 0] * xs + to_image[0, 1] * ys + to_image[0, 2]
    y = to_image[1, 0] * xs + to_image[1, 1] * ys + to_image[1, 2]
    return ((x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)).astype(np.float32)


def out_of_frame(image_shape: tuple[int, ...], matrix: np.ndarray, size: int) -> float:
    """The share of an aligned crop's pixels that lie outside the image (padding, not picture)."""
    return float(1.0 - in_frame(image_shape, matrix, size).mean())


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


@functools.lru_cache(maxsize=8)
def head_oval(side: int) -> np.ndarray:
    """Weights (side x side, 0..1) of an aligned crop's head: 1 inside an oval about the face and
    hair (centre a little above the crop's, 0.8 x its semi-axes), falling smoothly to 0 at its edge."""
    grid = (np.arange(side, dtype=np.float32) + 0.5) / side
    distance = np.hypot((grid[None, :] - 0.5) / 0.42, (grid[:, None] - 0.46) / 0.47)
    ramp = np.clip((1.0 - distance) / 0.2, 0.0, 1.0)
    weights = ramp * ramp * (3 - 2 * ramp)
    weights.setflags(write=False)  # one array per side, shared by every paste (cached)
    return weights


def paste_back(image: np.ndarray, processed_crop: np.ndarray, matrix: np.ndarray, feather: float = 0.1,
               crop_size: int | None = None, oval: bool = False) -> np.ndarray:
    """``image`` with an aligned crop (made by ``crop(image, matrix, crop_size)``) put back where it came from.

    The crop is blended in through a mask that fades to zero over ``feather`` × the crop side at
    the crop's edges, so no seam shows, and is zero where the crop was padding (outside the image).
    ``crop_size`` is the side the crop was made at, when the processed crop has since been resized
    (a teacher working at another resolution). ``oval`` blends only the head: an upright oval about
    the aligned face and its hair, fading out over its outer fifth, so a drawn background never
    shows as a box on the photo.
    """
    side = processed_crop.shape[0]
    if processed_crop.shape[1] != side:
        raise ValueError(f"paste_back expects a square crop, got {processed_crop.shape[:2]}")
    height, width = image.shape[:2]
    scale = (crop_size or side) / side
    to_image = invert_matrix(matrix / scale)
    ramp = max(feather * side, 1.0)
    edge = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    ramp1d = np.clip((edge + 0.5) / ramp, 0.0, 1.0)
    ramp1d = ramp1d * ramp1d * (3 - 2 * ramp1d)
    picture = cv2.erode(in_frame(image.shape, matrix / scale, side), np.ones((3, 3), np.uint8))  # not next to padding
    mask = np.minimum(ramp1d[:, None], ramp1d[None, :]) * picture
    if oval:
        mask = mask * head_oval(side)
    # only the crop's footprint is warped and blended: the rest of the image is copied as it is
    corners = transform_points(np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64), to_image)
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [width, height])
    result = image.copy()
    if x1 <= x0 or y1 <= y0:
        return result
    to_roi = to_image - np.array([[0, 0, x0], [0, 0, y0]])
    size = (int(x1 - x0), int(y1 - y0))
    back = cv2.warpAffine(processed_crop, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    alpha = cv2.warpAffine(mask, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = alpha[..., None] if image.ndim == 3 else alpha
    roi = image[y0:y1, x0:x1].astype(np.float32)
    result[y0:y1, x0:x1] = np.clip(roi * (1 - alpha) + back.astype(np.float32) * alpha + 0.5, 0, 255).astype(image.dtype)
    return result
