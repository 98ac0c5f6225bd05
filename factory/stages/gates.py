"""Quality gates: every sample that fails one leaves the stream with the gate's reason."""

from __future__ import annotations

from typing import Iterable, Iterator

import cv2
import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.sample import Sample
from factory.stage import Stage
from factory.stages.faces import FacesConfig


class GatesConfig(Strict):
    """Quality gates; a sample failing one is rejected with the gate's name as reason."""

    max_out_of_frame: float = Field(
        0.15, ge=0.0, le=1.0, description="largest share of the aligned crop that lies outside the photo (padding)")
    min_sharpness: float = Field(20.0, ge=0.0, description="variance of the Laplacian of the real side")
    face_on_toon: bool = Field(False, description="require a detectable face on the toon side too")
    max_alignment_error: float = Field(0.08, gt=0.0, description="landmark distance between sides / face size")
    dedupe: bool = Field(True, description="reject near-duplicates (perceptual hash) within a shard")
    dedupe_distance: int = Field(4, ge=0, le=64)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: low means blurry."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def dhash(image: np.ndarray, bits: int = 8) -> int:
    """A 64-bit difference hash: near-identical images differ in few bits."""
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (bits + 1, bits), interpolation=cv2.INTER_AREA)
    diff = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if d else "0" for d in diff), 2)


def alignment_error(expected: np.ndarray, found: np.ndarray) -> float:
    """Mean landmark distance divided by the face's size (the spread of the expected points)."""
    scale = float(np.sqrt(np.prod(expected.max(0) - expected.min(0)))) or 1.0
    return float(np.linalg.norm(expected - found, axis=1).mean() / scale)


class GateStage(Stage):
    """Crop inside the photo, sharpness, face on the toon side, alignment error between sides, and near-duplicates.

    Duplicates are judged within a shard (a shard is the unit of work; the hash is kept in the
    sample's json so a whole dataset can be de-duplicated later).
    """

    name = "gates"

    def __init__(self, config: GatesConfig, faces: FacesConfig):
        self.config = config
        self.detector = None
        if config.face_on_toon:
            self.detector = faces.shared_detector()  # the face stage's

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        seen: list[int] = []
        for sample in samples:
            yield self.judge(sample, seen)

    def judge(self, sample: Sample, seen: list[int]) -> Sample:
        cfg = self.config
        scores = {"sharpness": round(sharpness(sample.real), 2), "toon_face": None, "alignment_error": None,
                  "dhash": f"{dhash(sample.real):016x}"}
        sample.meta["gates"] = scores
        outside = (sample.meta.get("faces") or {}).get("out_of_frame", 0.0)
        if outside > cfg.max_out_of_frame:
            return sample.reject("out_of_frame")
        if scores["sharpness"] < cfg.min_sharpness:
            return sample.reject("blurry")
        if self.detector is not None:
            faces = self.detector.detect(sample.toon)
            scores["toon_face"] = bool(faces)
            if not faces:
                return sample.reject("no_face_on_toon")
            expected = (sample.meta.get("faces") or {}).get("landmarks")
            if expected is not None and faces[0].landmarks is not None and len(expected) == len(faces[0].landmarks):
                scores["alignment_error"] = round(alignment_error(np.asarray(expected), faces[0].landmarks), 4)
                if scores["alignment_error"] > cfg.max_alignment_error:
                    return sample.reject("misaligned")
        if cfg.dedupe:
            code = int(scores["dhash"], 16)
            if any(bin(code ^ other).count("1") <= cfg.dedupe_distance for other in seen):
                return sample.reject("duplicate")
            seen.append(code)
        return sample
