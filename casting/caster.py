"""Casting assembled one way: the options (``CastConfig``, checked once) and the gallery with every model
they name, loaded once (``load_caster``), for `toonfactory cast rank` and the demo's casting tab alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from casting.calibration import CLEAR_MATCH_LIKENESS
from casting.gallery import Gallery, embedder_for
from casting.rank import CLEAR_MATCH_Z, CastResult, cast, parse_face_choice, parse_where
from casting.realify import InverseWebtoonWarp, Realifier, load_realifier, parse_unwarp, unwarp_spec
from factory.config import Strict, validate_options
from factory.faces import DetectorChain
from factory.models.embedding import Embedder

REAL_DETECTORS = "dlib,mediapipe"  # what finds the face again in a realified or unwarped image


class CastConfig(Strict):
    """How a character is cast: checked once (``CastConfig.of(...)`` names each mistaken option)."""

    top: int = Field(5, ge=1, description="actors ranked per face (Borda points top..1), and shown; at most actors - 1")
    face: str = Field("largest", description="which face of a picture with several: largest, all, or N (N-th from the left)")
    min_z: float = Field(CLEAR_MATCH_Z, allow_inf_nan=False,
                         description="confidence (z-score against the other actors) a clear match needs; "
                                     "chosen on 18 actors, choose again for much larger galleries")
    min_likeness: float = Field(CLEAR_MATCH_LIKENESS, allow_inf_nan=False,
                                description="likeness a clear match needs (0: drawings of other actors' level, 1: drawings "
                                            "of the actor's own photos'); galleries with drawings only")
    where: list[str] = Field([], description="attribute filter key=value (repeatable), e.g. gender=female")
    embedder: str = Field("dlib", description="the gallery's embedder: 'dlib' or its ONNX model (its settings, "
                                              "such as jitters and colour, come from the gallery)")
    detector: str = Field("dlib,mediapipe", description="face detectors tried in order, comma-separated")
    min_face: int = Field(40, ge=8, description="smallest face side in pixels")
    realify: Path | None = Field(None, description="toon2real model: .onnx, a student checkpoint, or a teacher .yaml")
    unwarp: str | None = Field(None, description="undo webtoon geometry first: 'auto' (strength fitted per face, none "
                                                 "for human proportions; 'auto:PROFILE.json'), 'default' or a profile .json")

    @field_validator("face")
    @classmethod
    def _face(cls, value: str) -> str:
        parse_face_choice(value)  # a UserError naming --face
        return value

    @field_validator("where")
    @classmethod
    def _where(cls, value: list[str]) -> list[str]:
        parse_where(value)  # a UserError naming --where
        return value

    @field_validator("unwarp")
    @classmethod
    def _unwarp(cls, value: str | None) -> str | None:
        if value is not None:
            unwarp_spec(value)  # a UserError naming --unwarp
        return value

    @classmethod
    def of(cls, **options) -> CastConfig:
        return validate_options(cls, options)


@dataclass
class Caster:
    """A gallery with the embedder set up as it was embedded, the detectors, and the realifier and inverse
    warp the config names: loaded once, then called on each character's images."""

    config: CastConfig
    gallery: Gallery
    embedder: Embedder
    detector: DetectorChain
    realifier: Realifier | None = None
    real_detector: DetectorChain | None = None
    inverse_warp: InverseWebtoonWarp | None = None

    def __call__(self, images: list[Path], top: int | None = None,
                 progress: Callable[[], None] | None = None) -> CastResult:
        """Rank the gallery's actors for the character ``images`` show (``top`` in place of the config's)."""
        config = self.config
        return cast(self.gallery, images, self.embedder, self.detector, top=top or config.top,
                    where=parse_where(config.where), realifier=self.realifier, real_detector=self.real_detector,
                    inverse_warp=self.inverse_warp, face=parse_face_choice(config.face), min_z=config.min_z,
                    min_likeness=config.min_likeness,
                    progress=progress)


def load_caster(gallery_dir: Path, config: CastConfig = CastConfig()) -> Caster:
    """The gallery at ``gallery_dir`` and every model ``config`` names, loaded once."""
    warp = parse_unwarp(config.unwarp)
    gallery = Gallery.load(gallery_dir)
    embedder = embedder_for(config.embedder, gallery)
    detector = DetectorChain(config.detector, min_size=config.min_face)
    realifier = load_realifier(config.realify) if config.realify else None
    real_detector = DetectorChain(REAL_DETECTORS, min_size=config.min_face) if realifier or warp else None
    return Caster(config, gallery, embedder, detector, realifier, real_detector, warp)
