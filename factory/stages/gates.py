"""Quality gates: every sample that fails one leaves the stream with the gate's reason."""

from __future__ import annotations

from typing import Iterable, Iterator

import cv2
import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.sample import Sample
from factory.stage import Stage
from factory.stages.face_crop import FacesConfig


class GatesConfig(Strict):
    """Quality gates; a sample failing one is rejected with the gate's name as reason."""

    max_out_of_frame: float = Field(
        0.15, ge=0.0, le=1.0, description="largest share of the aligned crop that lies outside the photo (padding)")
    min_sharpness: float = Field(20.0, ge=0.0, description="variance of the Laplacian of the real side")
    face_on_toon: bool = Field(False, description="require a detectable face on the toon side too (scene pairs: "
                                                  "one for every face on the real side)")
    max_alignment_error: float = Field(0.08, gt=0.0, description="landmark distance between sides / face size")
    max_seam: float = Field(1.5, gt=0.0, description="scene pairs: largest seam energy of a pasted face (gradient "
                                                      "along the paste boundary over the band inside it), unless "
                                                      "the scene drawing alone has as much there")
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
        scores = {"sharpness": round(sharpness(sample.real), 2), "toon_face": None, "alignment_error": None, "seam": None,
                  "dhash": f"{dhash(sample.real):016x}"}
        sample.meta["gates"] = scores
        outside = (sample.meta.get("faces") or {}).get("out_of_frame", 0.0)
        if outside > cfg.max_out_of_frame:
            return sample.reject("out_of_frame")
        if scores["sharpness"] < cfg.min_sharpness:
            return sample.reject("blurry")
        if (sample.meta.get("faces") or {}).get("frame") == "scene":
            reason = self.judge_scene(sample, scores)
            if reason:
                return sample.reject(reason)
        elif self.detector is not None:
            faces = self.detector.detect(sample.toon)
            scores["toon_face"] = bool(faces)
            if not faces:
                return sample.reject("no_face_on_toon")
            expected = (sample.meta.get("faces") or {}).get("landmarks")
            if expected is not None and faces[0].landmarks is not None and len(expected) == len(faces[0].landmarks):
                scores["alignment_error"] = round(alignment_error(np.asarray(expected), faces[0].landmarks), 4)
                if scores["alignment_error"] > cfg.max_alignment_error:
                    return sample.reject("misaligned")
        return self.dedupe(sample, scores, seen)

    def judge_scene(self, sample: Sample, scores: dict) -> str | None:
        """A scene pair's own gates: every pasted face's seam, and a toon face for every real one that
        is whole in the crop and large enough to be found.

        A seam above ``max_seam`` is visible unless the scene drawing alone is as busy along the same
        boundary (it then runs along an edge of the picture, a jaw or a collar, not a paste's edge)."""
        faces = [face for face in sample.meta["teacher"]["faces"] if face["seam"] is not None]
        scores["seam"] = round(max(face["seam"] for face in faces), 4) if faces else None
        if any(face["seam"] > self.config.max_seam and face["seam"] > (face["seam_scene"] or 0.0) for face in faces):
            return "visible_seam"
        if self.detector is None:
            return None
        found = self.detector.detect(sample.toon)
        centres = [(f.box[:2] + f.box[2:]) / 2 for f in found]
        expected = [face for face in sample.meta["faces"]["faces"]
                    if face["inside"] >= 1 - self.config.max_out_of_frame and face_side(face) >= self.detector.min_size]
        missing = [face for face in expected
                   if not any(np.linalg.norm(c - box_centre(face)) < 0.5 * face_side(face) for c in centres)]
        scores["toon_face"] = f"{len(expected) - len(missing)}/{len(expected)}"
        return "no_face_on_toon" if missing else None

    def dedupe(self, sample: Sample, scores: dict, seen: list[int]) -> Sample:
        cfg = self.config
        if cfg.dedupe:
            code = int(scores["dhash"], 16)
            if any(bin(code ^ other).count("1") <= cfg.dedupe_distance for other in seen):
                return sample.reject("duplicate")
            seen.append(code)
        return sample


def box_centre(face: dict) -> np.ndarray:
    box = np.asarray(face["box"])
    return (box[:2] + box[2:]) / 2


def face_side(face: dict) -> float:
    """The side of a recorded face box (as ``Face.size``)."""
    x0, y0, x1, y1 = face["box"]
    return float(np.sqrt(max((x1 - x0) * (y1 - y0), 0.0)))
