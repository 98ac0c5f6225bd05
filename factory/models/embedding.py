"""Face embeddings: an aligned face crop becomes an L2-normalised identity vector.

Casting, curation and identity checks use it. An embedder aligns a detected face
its own way (``align``) and maps aligned crops to vectors (``embed_aligned``). Two ship here:
dlib's 128-d ResNet (weights from face-recognition-models, the default) and any ONNX
face-recognition model a user brings (ArcFace-style 5-point alignment).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from factory.config import Strict, choose_kind
from factory.errors import ModelLoadError, UserError
from factory.faces import Face, dlib_model_path
from factory.files import sha256_file
from factory.models.onnx import open_session
from warping.landmarks import DLIB5_FROM

log = logging.getLogger(__name__)


# ArcFace's 112×112 template: eyes, nose tip, mouth corners ("left" as seen in the image).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


class Embedder(Protocol):
    """What casting needs from a face-recognition model."""

    name: str
    version: str
    dim: int
    settings: dict  # what changes its vectors besides the weights (non-default options only)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The aligned RGB uint8 crop this model expects for ``face`` in ``image``."""

    def embed_aligned(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 unit vectors for aligned crops."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embed(embedder: Embedder, image: np.ndarray, faces: list[Face]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Vectors (N, dim) and aligned crops of ``faces`` in ``image``."""
    crops = [embedder.align(image, face) for face in faces]
    if not crops:
        return np.zeros((0, embedder.dim), np.float32), []
    return embedder.embed_aligned(crops), crops


COLOURS = ("rgb", "gray")


def recolour(crops: list[np.ndarray], colour: str) -> list[np.ndarray]:
    """``gray``: each crop's luminance in all three channels (drawn skin and hair colours then
    count for nothing; casting drawn faces wants that), ``rgb``: the crops as they are."""
    if colour == "rgb":
        return crops
    return [np.repeat(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for c in crops]


def _check_colour(colour: str) -> str:
    if colour not in COLOURS:
        raise UserError(f"--colour: {colour!r} must be one of {', '.join(COLOURS)}")
    return colour


class DlibEmbedder:
    """dlib's ResNet face descriptor (99.38% on LFW), aligned with ``dlib.get_face_chip``.

    ``jitters`` averages the descriptor over that many random crops, flips and rotations of the chip
    (dlib's ``num_jitters``: steadier, ``jitters + 1`` times slower)."""

    dim = 128
    chip_size = 150

    def __init__(self, model: Path | None = None, jitters: int = 0, colour: str = "rgb", padding: float = 0.25):
        import dlib

        if not 0 <= int(jitters) <= 100:
            raise UserError(f"--jitters: {jitters} must be between 0 and 100")

        self._dlib = dlib
        path = Path(model) if model else dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
        if not path.is_file():
            raise ModelLoadError(path, "dlib face recognition model file (.dat)")
        self._path = path
        self._model = dlib.face_recognition_model_v1(str(path))
        self._predictor5 = None
        self.jitters = int(jitters)
        self.colour = _check_colour(colour)
        self.padding = padding
        self.settings = {k: v for k, v in (("jitters", self.jitters), ("colour", self.colour)) if v not in (0, "rgb")}
        self.name = "dlib_resnet_v1"
        self.version = f"{path.name}@{sha256_file(path, 12)}"

    def _shape(self, image: np.ndarray, face: Face):
        dlib = self._dlib
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        rect = dlib.rectangle(x0, y0, x1, y1)
        if face.landmarks is not None and face.scheme == "dlib68":
            points = face.landmarks
        elif face.landmarks is not None and face.scheme in DLIB5_FROM:
            points = face.landmarks[DLIB5_FROM[face.scheme]]
        else:  # a box only (anime detectors): dlib's 5-point predictor finds the keypoints in it
            if self._predictor5 is None:
                self._predictor5 = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
            return self._predictor5(np.ascontiguousarray(image), rect)
        return dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        shape = self._shape(image, face)
        return self._dlib.get_face_chip(np.ascontiguousarray(image), shape, size=self.chip_size, padding=self.padding)

    def embed_aligned(self, crops: list[np.ndarray]) -> np.ndarray:
        chips = [np.ascontiguousarray(c) for c in recolour(crops, self.colour)]
        if not self.jitters:
            vectors = self._model.compute_face_descriptor(chips, num_jitters=0)
        else:  # dlib's jitter generator lives in the model and advances: a fresh one (50 ms) per chip
            # gives every chip the same views, so a face's vector never depends on what came before
            vectors = [self._dlib.face_recognition_model_v1(str(self._path)).compute_face_descriptor(chip, num_jitters=self.jitters)
                       for chip in chips]
        return normalise(np.array([np.array(v) for v in vectors]))


class OnnxEmbedder:
    """A user's ONNX face-recognition model (ArcFace family): NCHW input, 5-point similarity alignment.

    The crop side is read from the model's input shape (112 when dynamic); pixels are scaled as
    ``(x - mean) / std`` in the given channel order.
    """

    def __init__(self, path: Path, *, channels: str = "rgb", mean: float = 127.5, std: float = 127.5,
                 colour: str = "rgb", jitters: int = 0):
        path = Path(path)
        if jitters:
            raise UserError(f"--jitters: {path.name} is an ONNX embedder; only dlib jitters")
        self.colour = _check_colour(colour)
        self.settings = {"colour": colour} if colour != "rgb" else {}
        if channels not in ("rgb", "bgr"):
            raise UserError(f"embedder.channels: {channels!r} must be 'rgb' or 'bgr'")
        self._session = open_session(path, "an ONNX face-recognition model")
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(path, "one NCHW image input")
        side = inputs[0].shape[2]
        self.size = side if isinstance(side, int) and side > 0 else 112
        self._input = inputs[0].name
        output = self._session.get_outputs()[0]
        self.dim = int(output.shape[-1]) if isinstance(output.shape[-1], int) else self._probe_dim()
        self.channels, self.mean, self.std = channels, mean, std
        self.name = f"onnx:{path.stem}"
        self.version = f"{path.name}@{sha256_file(path, 12)}"

    def _probe_dim(self) -> int:
        blank = np.zeros((1, 3, self.size, self.size), np.float32)
        return int(self._session.run(None, {self._input: blank})[0].shape[-1])

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        template = ARCFACE_TEMPLATE * (self.size / 112.0)
        matrix, _ = cv2.estimateAffinePartial2D(face.keypoints5().astype(np.float32), template.astype(np.float32))
        if matrix is None:
            raise UserError("embedder: cannot align a face with degenerate keypoints")
        return cv2.warpAffine(image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)

    def embed_aligned(self, crops: list[np.ndarray]) -> np.ndarray:
        batch = np.stack(recolour(crops, self.colour)).astype(np.float32)
        if self.channels == "bgr":
            batch = batch[..., ::-1]
        batch = ((batch - self.mean) / self.std).transpose(0, 3, 1, 2)
        vectors = [self._session.run(None, {self._input: np.ascontiguousarray(x[None])})[0][0] for x in batch]
        return normalise(np.stack(vectors).reshape(len(crops), -1))


# -- the embedder kinds (declared as every pluggable kind is: see factory.config.one_of) ------------


class DlibEmbedderConfig(Strict):
    """dlib's ResNet face descriptor (128-d, 99.38% on LFW), on dlib's aligned face chip."""

    kind: Literal["dlib"] = "dlib"
    model: Path | None = None
    jitters: int = 0  # checked by the embedder (0..100), which names --jitters
    colour: str = "rgb"
    padding: float = 0.25

    def build(self) -> DlibEmbedder:
        return DlibEmbedder(self.model, self.jitters, self.colour, self.padding)


class OnnxEmbedderConfig(Strict):
    """An ONNX face-recognition model (ArcFace-style input, aligned on the five keypoints)."""

    kind: Literal["onnx"] = "onnx"
    path: Path
    channels: str = "rgb"
    mean: float = 127.5
    std: float = 127.5
    colour: str = "rgb"
    jitters: int = 0

    def build(self) -> OnnxEmbedder:
        return OnnxEmbedder(**self.model_dump(exclude={"kind"}))


EMBEDDERS = (DlibEmbedderConfig, OnnxEmbedderConfig)


def build_embedder(spec: str | Path = "dlib", **options) -> Embedder:
    """``dlib`` (default), or the path of an ``.onnx`` face-recognition model (kind ``onnx``); ``options``
    such as ``jitters`` and ``colour`` (a gallery's recorded ``settings``) go to its config."""
    if str(spec) == "dlib":
        return choose_kind(EMBEDDERS, "dlib", options, "--embedder", "embedder").build()
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        return choose_kind(EMBEDDERS, "onnx", {"path": path, **options}, "--embedder", "embedder").build()
    raise UserError(f"--embedder: {spec!r} is neither 'dlib' nor an .onnx file")
