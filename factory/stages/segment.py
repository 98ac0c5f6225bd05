"""Person masks: mediapipe selfie segmentation (default), SAM with prompts, and the face-mesh hull.

A mask backend is a callable ``backend(image) -> float32 H×W`` in [0, 1] (1 = person). The
``segment`` stage softens it (smoothstep + Gaussian feather, so composites have no hard seams),
stores it on the sample as H×W uint8 and records its provenance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from factory.config import Strict, choose_kind, one_of
from factory.errors import ModelLoadError, UserError
from factory.masks import soften, to_uint8
from factory.sample import Sample
from factory.stage import Stage
from factory.stages.backgrounds import BackgroundsConfig, BackgroundSwap
from factory.stages.inpaint import InpaintConfig, OpenCVInpaintConfig
from factory.stages.person_only import PersonOnlyConfig, PersonOnlyTeacher

log = logging.getLogger(__name__)

Relative = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Relative, Relative]
Box = tuple[Relative, Relative, Relative, Relative]


class MediapipeMaskConfig(Strict):
    """mediapipe selfie segmentation; the model ships in the wheel."""

    kind: Literal["mediapipe"] = "mediapipe"
    model: Literal["general", "landscape"] = Field("general", description="general: 256×256 input; landscape: 144×256")

    def build(self) -> "MediapipeMasker":
        return MediapipeMasker(self.model)


class SamMaskConfig(Strict):
    """Segment Anything from a user's checkpoint, prompted by the face, by points/boxes, or automatically.

    Points and boxes are in image-relative coordinates (0..1), so one recipe fits every image size.
    """

    kind: Literal["sam"]
    checkpoint: Path = Field(description="SAM state dict (.pth as released, or .safetensors)")
    model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    prompt: Literal["face", "points", "boxes", "auto"] = "face"
    points: list[Point] = Field(default_factory=list, description="relative (x, y) clicks, with point_labels")
    point_labels: list[Literal[0, 1]] = Field(default_factory=list, description="1 = person, 0 = background; default all 1")
    boxes: list[Box] = Field(default_factory=list, description="relative (x0, y0, x1, y1) boxes; masks are united")
    face_box_scale: float = Field(2.2, ge=1.0, le=6.0, description="face box growth for the face prompt (to take hair and shoulders)")
    points_per_side: int = Field(16, ge=2, le=64, description="grid of the automatic mode")
    pred_iou_thresh: float = Field(0.86, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.9, ge=0.0, le=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _prompts_present(self):
        if self.prompt == "points" and not self.points:
            raise ValueError("prompt `points` needs `points`: relative (x, y) pairs")
        if self.prompt == "boxes" and not self.boxes:
            raise ValueError("prompt `boxes` needs `boxes`: relative (x0, y0, x1, y1)")
        if self.point_labels and len(self.point_labels) != len(self.points):
            raise ValueError("`point_labels` must have one label per point")
        return self

    def build(self) -> "SamMasker":
        return SamMasker(load_sam(self.checkpoint, self.model_type, self.device), self)


class FaceHullMaskConfig(Strict):
    """The convex hull of the face mesh: a face/skin region for face-only work."""

    kind: Literal["face_hull"]
    grow: float = Field(0.0, ge=-0.3, le=0.5, description="dilate (+) or erode (-) by this fraction of the face size")

    def build(self) -> "FaceHullMasker":
        return FaceHullMasker(self.grow)


MASKS = (MediapipeMaskConfig, SamMaskConfig, FaceHullMaskConfig)
MaskConfig = one_of(MASKS)


class SegmentConfig(Strict):
    """The recipe's `segment` section: a person mask per sample, and what to do with it."""

    mask: MaskConfig = MediapipeMaskConfig()
    side: Literal["auto", "real", "toon"] = Field("auto", description="image to segment; auto: real if present, else toon")
    feather: float = Field(0.01, ge=0.0, le=0.1, description="Gaussian feather sigma, fraction of the short side")
    min_coverage: float = Field(0.01, ge=0.0, le=1.0, description="reject samples whose mask covers less")
    inpaint: InpaintConfig = OpenCVInpaintConfig()
    person_only: PersonOnlyConfig | None = Field(None, description="stylize only the person, composite it back")
    backgrounds: BackgroundsConfig | None = Field(None, description="paste pairs onto varied backgrounds (cutface)")

    def build(self) -> "SegmentStage":
        return SegmentStage(self)

    def wrap_teacher(self, teacher: Stage) -> Stage:
        """The teacher stage itself, or wrapped for person-only stylization when the recipe asks."""
        if self.person_only is None:
            return teacher
        inpainter = self.inpaint.build() if self.person_only.background == "stylize" else None
        return PersonOnlyTeacher(teacher, self.person_only, inpainter)

    def background_stage(self) -> Stage | None:
        """The cutface background swap (after the teacher, before augmentation), if the recipe asks."""
        return BackgroundSwap(self.backgrounds) if self.backgrounds is not None else None


def build_mask(spec: str | dict = "mediapipe"):
    """A mask backend from a kind name or a recipe-style mapping, e.g. for inference options."""
    data = {"kind": spec} if isinstance(spec, str) else dict(spec)
    return choose_kind(MASKS, str(data.pop("kind", None)), data, "mask backend", "mask").build()


class MediapipeMasker:
    """mediapipe's selfie segmentation (a per-image model: no state is carried between images)."""

    kind = "mediapipe"

    def __init__(self, model: str = "general"):
        import mediapipe as mp

        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0 if model == "general" else 1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        result = self._segmenter.process(np.ascontiguousarray(image))
        return np.asarray(result.segmentation_mask, dtype=np.float32)


def _face_detector():
    from factory.faces import shared_detector

    return shared_detector("mediapipe", min_size=16)


class FaceHullMasker:
    """Union of the convex hulls of every detected face mesh, grown or shrunk by a fraction of its size."""

    kind = "face_hull"

    def __init__(self, grow: float = 0.0, detector=None):
        self.grow = grow
        self.detector = detector or _face_detector()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        mask = np.zeros(image.shape[:2], np.uint8)
        for face in self.detector.detect(image):
            face_mask = np.zeros_like(mask)
            points = face.landmarks if face.landmarks is not None else _box_corners(face.box)
            cv2.fillConvexPoly(face_mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
            radius = int(round(abs(self.grow) * face.size))
            if radius:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
                face_mask = (cv2.dilate if self.grow > 0 else cv2.erode)(face_mask, kernel)
            mask |= face_mask
        return mask.astype(np.float32)


def _box_corners(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def load_sam(checkpoint: Path, model_type: str, device: str = "auto"):
    """Build a SAM of ``model_type`` and load the user's weights (never unpickling code). The file is read
    first: building a SAM takes seconds of CPU (a minute for vit_h), which a wrong file need not wait for."""
    from segment_anything import sam_model_registry

    from factory.models.tensors import pick_device

    checkpoint = Path(checkpoint)
    expected = f"segment.mask.checkpoint: a SAM {model_type} state dict (.pth as released or .safetensors)"
    if not checkpoint.is_file():
        raise ModelLoadError(checkpoint, f"{expected}; file not found")
    state = read_sam_weights(checkpoint, expected)
    model = sam_model_registry[model_type]()
    _load_state(model, state, checkpoint, expected)
    device = pick_device(device)
    log.info("SAM %s loaded from %s on %s", model_type, checkpoint, device)
    return model.to(device).eval()


def load_sam_weights(model, checkpoint: Path, expected: str) -> None:
    """Load a state dict into a SAM; a wrong file or model type is a ModelLoadError naming both."""
    _load_state(model, read_sam_weights(checkpoint, expected), checkpoint, expected)


def read_sam_weights(checkpoint: Path, expected: str) -> dict:
    """A SAM state dict from ``.safetensors`` or a weights-only ``.pth``; an unreadable file is a ModelLoadError."""
    import torch

    try:
        if checkpoint.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(checkpoint))
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix
        raise _refused(checkpoint, expected, exc) from None


def _load_state(model, state, checkpoint: Path, expected: str) -> None:
    try:
        model.load_state_dict(state)
    except Exception as exc:  # a mismatched file (another model type) is the user's to fix
        raise _refused(checkpoint, expected, exc) from None


def _refused(checkpoint: Path, expected: str, exc: Exception) -> ModelLoadError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(checkpoint, f"{expected}; {first_line}")


class SamMasker:
    """SAM prompted per image: by the detected face, by recipe points/boxes, or by its automatic grid."""

    kind = "sam"

    def __init__(self, model, config: SamMaskConfig, detector=None):
        from segment_anything import SamPredictor

        self.model = model
        self.config = config
        self.predictor = SamPredictor(model)
        self._detector = detector

    @property
    def detector(self):
        if self._detector is None:
            self._detector = _face_detector()
        return self._detector

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.config.prompt == "auto":
            return self._automatic(image)
        h, w = image.shape[:2]
        scale = np.array([w, h, w, h], dtype=np.float64)
        self.predictor.set_image(np.ascontiguousarray(image))
        if self.config.prompt == "points":
            points = np.array(self.config.points, dtype=np.float64) * scale[:2]
            labels = np.array(self.config.point_labels or [1] * len(points))
            return self._predict(points=points, labels=labels)
        if self.config.prompt == "boxes":
            boxes = np.array(self.config.boxes, dtype=np.float64) * scale
            return np.max([self._predict(box=box) for box in boxes], axis=0)
        faces = self.detector.detect(image)
        if not faces:
            return np.zeros((h, w), np.float32)
        return np.max([self._predict(**self._face_prompt(face.box, h, w)) for face in faces], axis=0)

    def _face_prompt(self, box: np.ndarray, h: int, w: int) -> dict:
        """A positive click on the face and a box grown around it, open downwards (shoulders)."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half_w, half_h = (x1 - x0) * self.config.face_box_scale / 2, (y1 - y0) * self.config.face_box_scale / 2
        grown = np.array([max(0, cx - half_w), max(0, cy - half_h), min(w - 1, cx + half_w), h - 1])
        return {"points": np.array([[cx, cy]]), "labels": np.array([1]), "box": grown}

    def _predict(self, points=None, labels=None, box=None) -> np.ndarray:
        logits, scores, _ = self.predictor.predict(
            point_coords=points, point_labels=labels, box=box, multimask_output=True, return_logits=True,
        )
        best = logits[int(np.argmax(scores))]
        return (1.0 / (1.0 + np.exp(-np.clip(best, -30, 30)))).astype(np.float32)

    def _automatic(self, image: np.ndarray) -> np.ndarray:
        """Unite the automatic segments lying mostly inside the subject region (face-grown box, else centre)."""
        from segment_anything import SamAutomaticMaskGenerator

        generator = SamAutomaticMaskGenerator(
            self.model, points_per_side=self.config.points_per_side,
            pred_iou_thresh=self.config.pred_iou_thresh, stability_score_thresh=self.config.stability_score_thresh,
        )
        h, w = image.shape[:2]
        faces = self.detector.detect(image)
        region = np.zeros((h, w), bool)
        if faces:
            for face in faces:
                x0, y0, x1, y1 = np.round(self._face_prompt(face.box, h, w)["box"]).astype(int)
                region[y0:y1 + 1, x0:x1 + 1] = True
        else:
            region[int(h * 0.2):int(h * 0.8) + 1, int(w * 0.2):int(w * 0.8) + 1] = True
        mask = np.zeros((h, w), np.float32)
        for segment in generator.generate(np.ascontiguousarray(image)):
            seg = segment["segmentation"]
            area = seg.sum()
            if 0 < area < 0.9 * h * w and (seg & region).sum() > 0.5 * area:
                mask[seg] = 1.0
        return mask


class SegmentStage(Stage):
    """Sets ``sample.mask`` (H×W uint8, 255 = person) and ``sample.meta["segment"]``."""

    name = "segment"

    def __init__(self, config: SegmentConfig, backend=None):
        self.config = config
        self.backend = backend if backend is not None else config.mask.build()

    def side(self, sample: Sample) -> str:
        if self.config.side != "auto":
            return self.config.side
        return "real" if sample.real is not None else "toon"

    def process(self, sample: Sample) -> Sample:
        side = self.side(sample)
        image = getattr(sample, side)
        if image is None:
            raise UserError(f"segment.side: the sample has no {side} image to segment")
        mask = to_uint8(soften(self.backend(image), self.config.feather))
        coverage = float(mask.mean() / 255.0)
        sample.meta["segment"] = {
            "mask": self.config.mask.kind, "side": side, "coverage": round(coverage, 4), "feather": self.config.feather,
        }
        if coverage < self.config.min_coverage:
            log.debug("%s: person mask covers %.4f < %.4f", sample.key, coverage, self.config.min_coverage)
            return sample.reject("segment_empty_mask")
        sample.mask = mask
        return sample
