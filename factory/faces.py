"""Faces: detection, landmarks and FFHQ-style alignment of real and webtoon faces.

A leaf module: the pipeline's face stage, inference and casting all use it. Detectors return
``Face`` objects sorted largest first, with landmarks in image pixels when the detector has them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from factory.errors import UserError

log = logging.getLogger(__name__)

# Indices of (left eye, right eye, nose tip, left mouth corner, right mouth corner), "left" as seen
# in the image, for each landmark scheme. Eyes of the 478-point mesh are its iris centres.
KEYPOINTS5 = {
    "mediapipe478": ([468], [473], [1], [61], [291]),
    "dlib68": (list(range(36, 42)), list(range(42, 48)), [30], [48], [54]),
}


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


class MediapipeMesh:
    """mediapipe's 478-point face mesh (model shipped in the wheel)."""

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True,
            min_detection_confidence=min_confidence,
        )

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(image))
        faces = []
        for marks in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in marks.landmark], dtype=np.float64)
            box = np.array([*pts.min(0), *pts.max(0)])
            faces.append(Face(box=box, score=1.0, landmarks=pts, scheme="mediapipe478"))
        return faces


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


class Detector:
    """A backend plus the common filtering: minimum size, largest first."""

    def __init__(self, backend, min_size: int = 48):
        self.backend = backend
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> list[Face]:
        faces = [f for f in self.backend.detect(image) if f.size >= self.min_size]
        return sorted(faces, key=lambda f: -f.size)


def build_detector(name: str = "mediapipe", *, min_size: int = 48, **options) -> Detector:
    """A face detector by name: ``mediapipe`` (478-point mesh) or ``dlib`` (HOG + 68 points)."""
    backends = {"mediapipe": MediapipeMesh, "dlib": DlibHog}
    if name not in backends:
        raise UserError(f"faces.detector: unknown detector {name!r} (choose from {sorted(backends)})")
    return Detector(backends[name](**options), min_size=min_size)


@lru_cache(maxsize=None)
def shared_detector(name: str = "mediapipe", min_size: int = 48) -> Detector:
    """One detector per process and setting (models load once)."""
    return build_detector(name, min_size=min_size)


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


def crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The aligned crop; pixels outside the image are filled by reflection."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)
