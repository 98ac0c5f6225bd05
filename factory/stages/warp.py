"""The warp stage: moves a face into webtoon geometry (forward) or human geometry (inverse).

Placement ``before_teacher`` warps the source side (and the person mask) so that the teacher's
output already has the target proportions; ``real`` or ``toon`` warps that side of a finished
pair. ``direction: auto`` moves a real source or the toon side to webtoon geometry and a toon
source or the real side to human geometry. Parameters land in ``sample.meta["warp"]``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.errors import UserError
from factory.sample import Sample
from factory.stage import Stage


class WarpKnobsConfig(Strict):
    """Adjustments on top of the profile; unset keeps the profile's own value."""

    eye_scale: Optional[float] = Field(None, ge=0.5, le=2.0)
    eye_height: Optional[float] = Field(None, ge=-0.5, le=0.5, description="eye-distance units, positive = lower")
    jaw_width: Optional[float] = Field(None, ge=0.5, le=1.5)
    chin_width: Optional[float] = Field(None, ge=0.5, le=1.5)
    face_length: Optional[float] = Field(None, ge=0.5, le=1.5)
    nose_scale: Optional[float] = Field(None, ge=0.3, le=2.0)
    mouth_scale: Optional[float] = Field(None, ge=0.3, le=2.0)


class WarpConfig(Strict):
    """Landmark-driven warp between human and webtoon face geometry."""

    profile: Optional[Path] = Field(None, description="geometry profile JSON (default: the one shipped in warping/)")
    strength: float = Field(1.0, ge=0.0, le=1.0)
    strength_jitter: float = Field(0.0, ge=0.0, le=1.0, description="per-sample strength drawn from [strength - jitter, strength]")
    method: Literal["tps", "pa"] = "tps"
    placement: Literal["before_teacher", "real", "toon"] = "before_teacher"
    direction: Literal["auto", "forward", "inverse"] = "auto"
    detector: Literal["mediapipe", "dlib"] = "mediapipe"
    fade: float = Field(1.6, gt=1.0, le=4.0, description="where motion reaches zero, relative to the face's landmark ellipse")
    knobs: WarpKnobsConfig = WarpKnobsConfig()

    def build(self) -> "WarpStage":
        return WarpStage(self)


def load_profile(path: Path | None, field: str = "warp.profile"):
    """The geometry profile, a bad file becoming a UserError that names the field."""
    from warping.profile import ProfileError, load_profile as load

    try:
        return load(path)
    except ProfileError as exc:
        raise UserError(f"{field}: {exc}") from None


def face68(image: np.ndarray, detector) -> np.ndarray | None:
    """face68 landmarks of the largest face in ``image`` (None when no face has landmarks)."""
    from warping.landmarks import SCHEMES, to_canonical

    for face in detector.detect(image):
        if face.landmarks is not None and face.scheme in SCHEMES:
            return to_canonical(face.landmarks, face.scheme)
    return None


class WarpStage(Stage):
    """Warps one side of each sample (and the mask when the source is warped) by the profile."""

    name = "warp"

    def __init__(self, config: WarpConfig, detector=None):
        from factory.faces import shared_detector

        self.config = config
        knobs = {k: v for k, v in config.knobs.model_dump().items() if v is not None}
        self.profile = load_profile(config.profile).with_knobs(**knobs)
        self.detector = detector or shared_detector(config.detector)

    def _side_and_direction(self, sample: Sample) -> tuple[str, str]:
        if self.config.placement == "before_teacher":
            side = "real" if sample.real is not None else "toon"
            auto = "forward" if side == "real" else "inverse"
        else:
            side = self.config.placement
            auto = "forward" if side == "toon" else "inverse"
        return side, auto if self.config.direction == "auto" else self.config.direction

    @staticmethod
    def known_landmarks(sample: Sample, side: str) -> np.ndarray | None:
        """The face stage's landmarks (crop pixels) when they were found on this side: no second detection."""
        from warping.landmarks import SCHEMES, to_canonical

        faces = sample.meta.get("faces") or {}
        if faces.get("side") != side or faces.get("scheme") not in SCHEMES:
            return None
        return to_canonical(np.asarray(faces["landmarks"], dtype=np.float64), faces["scheme"])

    def process(self, sample: Sample) -> Sample:
        from warping.warp import build_warp

        side, direction = self._side_and_direction(sample)
        image = getattr(sample, side)
        if image is None:
            return sample.reject(f"warp_no_{side}_image")
        points = self.known_landmarks(sample, side)
        if points is None:
            points = face68(image, self.detector)
        if points is None:
            return sample.reject("warp_no_landmarks")
        strength = self.config.strength
        if self.config.strength_jitter:
            strength = max(0.0, strength - sample.rng("warp").uniform(0.0, self.config.strength_jitter))
        target = self.profile.target(points, direction, strength)
        warp = build_warp(points, target, image.shape[:2], self.config.method, fade=self.config.fade)
        setattr(sample, side, warp.apply(image))
        mask_warped = (self.config.placement == "before_teacher" and sample.mask is not None
                       and sample.mask.shape[:2] == image.shape[:2])
        if mask_warped:
            sample.mask = warp.apply_mask(sample.mask)
        faces = sample.meta.get("faces")
        if faces and faces.get("side") == side:  # keep the recorded landmarks on the warped face
            moved = warp.transform_points(np.asarray(faces["landmarks"], dtype=np.float64))
            faces["landmarks"] = np.round(moved, 1).tolist()
        sample.meta["warp"] = {
            "side": side,
            "direction": direction,
            "placement": self.config.placement,
            "method": self.config.method,
            "strength": round(strength, 4),
            "applied": round(strength * warp.scale, 4),
            "profile": str(self.config.profile) if self.config.profile else "default",
            "knobs": asdict(self.profile.knobs),
            "detector": self.config.detector,
            "mask_warped": mask_warped,
            "src": np.round(warp.src, 1).tolist(),
            "dst": np.round(warp.dst, 1).tolist(),
        }
        return sample
