"""The face stage: detect, choose, and crop every present side of a sample to the aligned square."""

from __future__ import annotations

from typing import Iterable, Iterator

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from factory.config import Strict, kind_names
from factory.faces import DETECTORS, alignment_matrix, crop, out_of_frame, shared_chain, transform_points
from factory.sample import Sample, sample_seed
from factory.stage import Stage


class FacesConfig(Strict):
    """Face detection and alignment of each source image."""

    detector: str = Field("mediapipe", description="mediapipe, dlib, haar or anime, or a chain tried in order "
                                                    "(e.g. dlib,mediapipe,anime)")
    cascade: Path | None = Field(None, description="LBP cascade XML for the anime detector")
    select: Literal["largest", "all"] = "largest"
    min_size: int = Field(48, ge=8, description="smallest face box side, in pixels")
    margin: float = Field(1.0, ge=0.5, le=3.0, description="crop scale around the canonical face")
    jitter: float = Field(0.0, ge=0.0, le=0.5, description="random shift/scale/rotation of the crop (pose jitter)")

    @model_validator(mode="after")
    def _known_detectors(self):
        names = [name.strip() for name in self.detector.split(",")]
        unknown = [name for name in names if name not in kind_names(DETECTORS)]
        if unknown or not names:
            raise ValueError(f"detector: unknown {unknown} in {self.detector!r} (choose from {sorted(kind_names(DETECTORS))}, "
                             "comma-separated to chain them; the anime cascade goes in `cascade`)")
        if "anime" in names and self.cascade is None:
            raise ValueError("the anime detector needs `cascade`: a path to an LBP cascade XML")
        return self

    def shared_detector(self):
        """The process-wide detector (chain) for these settings (the face stage and the toon-face gate share it)."""
        return shared_chain(self.detector, self.min_size, self.cascade)


def jitter_matrix(rng: np.random.Generator, amount: float, size: int) -> np.ndarray:
    """A small random similarity about the crop centre (pose/scale jitter): rotation, scale, shift."""
    angle = np.deg2rad(rng.uniform(-30, 30) * amount)
    scale = 1.0 + rng.uniform(-0.5, 0.5) * amount
    shift = rng.uniform(-0.2, 0.2, size=2) * amount * size
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    c = size / 2
    return np.array([[cos, -sin, c - cos * c + sin * c + shift[0]], [sin, cos, c - sin * c - cos * c + shift[1]], [0, 0, 1]])


class FaceStage(Stage):
    """Finds faces on the real side (or the toon side when there is no real one) and aligns them.

    Both sides, when present, are cropped with the same matrix, so an aligned pair stays aligned.
    With ``select: all`` each further face becomes its own sample, keyed ``<key>-<n>``.
    """

    name = "faces"

    def __init__(self, config: FacesConfig, size: int):
        self.config = config
        self.size = size
        self.detector = config.shared_detector()

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        for sample in samples:
            side = "real" if sample.real is not None else "toon"
            faces = self.detector.detect(getattr(sample, side))
            if not faces:
                yield sample.reject("no_face")
                continue
            chosen = faces if self.config.select == "all" else faces[:1]
            for n, face in enumerate(chosen):
                yield self._align(self._derive(sample, n), face, side, len(faces))

    @staticmethod
    def _derive(sample: Sample, n: int) -> Sample:
        if n == 0:
            return sample
        return Sample(key=f"{sample.key}-{n}", index=sample.index, seed=sample_seed(sample.seed, f"face{n}"),
                      real=sample.real, toon=sample.toon, mask=sample.mask, meta=dict(sample.meta))

    def _align(self, sample: Sample, face, side: str, found: int) -> Sample:
        matrix = alignment_matrix(face.keypoints5(), self.size, self.config.margin)
        if self.config.jitter > 0:
            matrix = (jitter_matrix(sample.rng("faces"), self.config.jitter, self.size) @ np.vstack([matrix, [0, 0, 1]]))[:2]
        shape = getattr(sample, side).shape
        for name in ("real", "toon"):
            if getattr(sample, name) is not None:
                setattr(sample, name, crop(getattr(sample, name), matrix, self.size))
        if sample.mask is not None:
            sample.mask = crop(sample.mask, matrix, self.size, fill=0)  # outside the photo is not the person
        landmarks = face.landmarks if face.landmarks is not None else face.keypoints5()
        sample.meta["faces"] = {
            "detector": self.config.detector,
            "side": side,
            "found": found,
            "score": round(float(face.score), 4),
            "box": [round(float(v), 1) for v in face.box],
            "out_of_frame": round(out_of_frame(shape, matrix, self.size), 4),
            "matrix": np.round(matrix, 6).tolist(),
            "scheme": face.scheme if face.landmarks is not None else "keypoints5",
            "landmarks": np.round(transform_points(landmarks, matrix), 1).tolist(),
        }
        return sample
