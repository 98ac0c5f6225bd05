"""The webtoon geometry profile: mean face68 shapes of human and webtoon faces, plus parametric knobs.

Shapes live in a normalised frame: the eye midpoint at the origin, the eyes on the x-axis, the eye
distance 1, y pointing down. ``mean_real`` is the generalised-Procrustes mean of the human faces;
webtoon faces are aligned to it by a least-squares similarity over all points, so
``mean_toon - mean_real`` is the mean normalised displacement from human to webtoon geometry.
Both means are made left-right symmetric.

A face's target is computed in that frame: forward (human -> webtoon) ``F(x) = K(x + d)``, inverse
``F⁻¹(y) = K⁻¹(y) - d``, where ``d`` is the displacement and ``K`` the knobs (exactly invertible);
a strength ``s`` moves each point ``s`` of the way to its target.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from warping import landmarks as lm

DEFAULT_PROFILE = Path(__file__).with_name("default_profile.json")
Direction = Literal["forward", "inverse"]


class ProfileError(ValueError):
    """A profile file that is missing or malformed."""


@dataclass(frozen=True)
class Knobs:
    """Parametric adjustments on top of the profile (1.0 / 0.0 = none), in the normalised frame."""

    eye_scale: float = 1.0
    eye_height: float = 0.0  # eye-distance units, positive = lower
    jaw_width: float = 1.0
    chin_width: float = 1.0
    face_length: float = 1.0  # vertical scale of everything below the eye line
    nose_scale: float = 1.0
    mouth_scale: float = 1.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name != "eye_height" and not value > 0:
                raise ValueError(f"knob {name} must be > 0, got {value}")

    def apply(self, shape: np.ndarray, inverse: bool = False) -> np.ndarray:
        """The knobs applied to a normalised face68 shape (or undone, with ``inverse``)."""
        out = shape.copy()
        steps = self._steps()
        for step in reversed(steps) if inverse else steps:
            step(out, inverse)
        return out

    def _steps(self):
        def face_length(p, inv):
            below = p[:, 1] > 0
            p[below, 1] *= 1 / self.face_length if inv else self.face_length

        def widen(group, factor):
            idx = list(lm.GROUPS[group])

            def step(p, inv):
                p[idx, 0] *= 1 / factor if inv else factor
            return step

        def eye_height(p, inv):
            idx = list(lm.GROUPS["left_eye"] + lm.GROUPS["right_eye"] + lm.GROUPS["left_brow"] + lm.GROUPS["right_brow"])
            p[idx, 1] += -self.eye_height if inv else self.eye_height

        def scale(groups, factor):
            def step(p, inv):
                f = 1 / factor if inv else factor
                for group in groups:
                    idx = list(lm.GROUPS[group])
                    centre = p[idx].mean(0)
                    p[idx] = centre + (p[idx] - centre) * f
            return step

        return [face_length, widen("jaw", self.jaw_width), widen("chin", self.chin_width), eye_height,
                scale(("left_eye", "right_eye"), self.eye_scale), scale(("nose",), self.nose_scale),
                scale(("mouth",), self.mouth_scale)]


@dataclass(frozen=True)
class Profile:
    """Mean normalised face68 shapes of human and webtoon faces, knobs, and where they came from."""

    mean_real: np.ndarray
    mean_toon: np.ndarray
    knobs: Knobs = Knobs()
    info: dict = field(default_factory=dict)

    @property
    def displacement(self) -> np.ndarray:
        return self.mean_toon - self.mean_real

    def with_knobs(self, **changes) -> "Profile":
        return replace(self, knobs=replace(self.knobs, **changes))

    def target(self, points: np.ndarray, direction: Direction = "forward", strength: float = 1.0) -> np.ndarray:
        """Where a face's face68 ``points`` (image pixels) move to in webtoon (forward) or human geometry."""
        if direction not in ("forward", "inverse"):
            raise ValueError(f"direction must be forward or inverse, got {direction!r}")
        # the frame is fitted to the geometry the face is in: human, or the profile's webtoon with knobs
        reference = self.mean_real if direction == "forward" else self.knobs.apply(self.mean_toon)
        to_frame = lm.similarity(points, reference)
        shape = lm.apply_affine(points, to_frame)
        if direction == "forward":
            goal = self.knobs.apply(shape + self.displacement)
        else:
            goal = self.knobs.apply(shape, inverse=True) - self.displacement
        moved = shape + strength * (goal - shape)
        return lm.apply_affine(moved, lm.invert_affine(to_frame))

    def strength_of(self, points: np.ndarray, iterations: int = 20) -> float:
        """The forward strength that best explains a face's face68 ``points`` (image pixels).

        Least squares over a similarity and ``s`` of ``points ~ mean_real + s (webtoon mean - mean_real)``:
        0 is the human mean, 1 the profile's webtoon mean (with its knobs). Alternates the similarity
        fit and the closed-form ``s``; converges in a few steps.
        """
        delta = self.knobs.apply(self.mean_toon) - self.mean_real
        strength = 0.0
        for _ in range(iterations):
            shape = lm.apply_affine(points, lm.similarity(points, self.mean_real + strength * delta))
            strength = float(((shape - self.mean_real) * delta).sum() / (delta * delta).sum())
        return strength

    def to_json(self) -> dict:
        return {
            "version": 1,
            "scheme": lm.CANONICAL,
            "frame": "eye midpoint at origin, eyes on the x-axis, eye distance 1, y down",
            "mean_real": np.round(self.mean_real, 5).tolist(),
            "mean_toon": np.round(self.mean_toon, 5).tolist(),
            "knobs": asdict(self.knobs),
            "info": self.info,
        }

    def to_text(self) -> str:
        """The profile as the JSON file's text (written by the caller, the factory's one safe way)."""
        text = json.dumps(self.to_json(), indent=1)
        return re.sub(r"\[\s+(-?[\d.e-]+),\s+(-?[\d.e-]+)\s+\]", r"[\1, \2]", text) + "\n"  # one point per line


def load_profile(path: str | Path | None = None) -> Profile:
    """A profile from a JSON file; ``None`` gives the default profile shipped with the package."""
    path = Path(path) if path is not None else DEFAULT_PROFILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a readable JSON profile ({exc})") from None
    try:
        if data.get("scheme") != lm.CANONICAL:
            raise ProfileError(f"{path}: scheme: expected {lm.CANONICAL!r}, got {data.get('scheme')!r}")
        shapes = {}
        for name in ("mean_real", "mean_toon"):
            shape = np.asarray(data[name], dtype=np.float64)
            if shape.shape != (68, 2) or not np.isfinite(shape).all():
                raise ProfileError(f"{path}: {name}: expected 68 finite (x, y) points, got shape {shape.shape}")
            shapes[name] = shape
        knobs = Knobs(**data.get("knobs", {}))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"{path}: malformed profile: {exc}") from None
    return Profile(shapes["mean_real"], shapes["mean_toon"], knobs, data.get("info", {}))


def _symmetric(shape: np.ndarray) -> np.ndarray:
    """A normalised shape averaged with its mirror image (the frame's x = 0 is the midline)."""
    return (shape + lm.mirror(shape)) / 2


def procrustes_mean(shapes: list[np.ndarray], iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean of face68 shapes, returned in the normalised eye frame."""
    reference = lm.apply_affine(shapes[0], lm.eye_frame(shapes[0]))
    for _ in range(iterations):
        aligned = [lm.apply_affine(s, lm.similarity(s, reference)) for s in shapes]
        mean = np.mean(aligned, axis=0)
        reference = _symmetric(lm.apply_affine(mean, lm.eye_frame(mean)))
    return reference


def fit_profile(real_shapes: list[np.ndarray], toon_shapes: list[np.ndarray], info: dict | None = None) -> Profile:
    """A profile from face68 landmarks (image pixels) of human faces and of webtoon faces."""
    if len(real_shapes) < 2 or len(toon_shapes) < 2:
        raise ProfileError(f"need at least 2 faces on each side, got {len(real_shapes)} real and {len(toon_shapes)} toon")
    mean_real = procrustes_mean(real_shapes)
    aligned = [lm.apply_affine(s, lm.similarity(s, mean_real)) for s in toon_shapes]
    mean_toon = _symmetric(np.mean(aligned, axis=0))
    return Profile(mean_real, mean_toon, Knobs(), dict(info or {}, real_faces=len(real_shapes), toon_faces=len(toon_shapes)))
