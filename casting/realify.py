"""Realify: turn a webtoon face into a realistic one before it is embedded, and undo webtoon geometry.

A realifier is the toon2real student (a checkpoint or its ONNX export), any NCHW [-1, 1] ONNX image
model, or a factory teacher given as a YAML file with its ``teacher:`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from factory import faces as facelib
from factory.config import Strict, choose_kind
from factory.errors import UserError
from factory.files import sha256_file
from factory.images import from_unit, to_unit
from factory.models.onnx import open_session


class Realifier(Protocol):
    """A webtoon face crop (RGB uint8, side ``size``) in, a realistic face of the same size out."""

    name: str
    size: int

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class OnnxRealifier:
    """An image-to-image ONNX model: NCHW RGB in [-1, 1] in and out (the exported toon2real student)."""

    def __init__(self, path: Path, size: int = 256):
        path = Path(path)
        self._session = open_session(path, "an ONNX image-to-image model (NCHW RGB in [-1, 1])")
        shape = self._session.get_inputs()[0].shape
        self.size = shape[2] if len(shape) == 4 and isinstance(shape[2], int) and shape[2] > 0 else size
        self._input = self._session.get_inputs()[0].name
        self.name = f"onnx:{path.name}@{sha256_file(path, 12)}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return from_unit(self._session.run(None, {self._input: to_unit(image)[None]})[0][0])


class TeacherRealifier:
    """Any toon2real teacher of the factory, given as a YAML file holding its ``teacher:`` section."""

    def __init__(self, path: Path, size: int = 256):
        from factory.config import read_yaml, validate_section
        from factory.kinds import TeacherConfig

        data = read_yaml(path)
        config = validate_section(TeacherConfig, data.get("teacher", data), str(path))
        if config.direction != "toon2real":
            raise UserError(f"{path}: field 'teacher.direction' must be toon2real to realify, not {config.direction!r}")
        self._teacher = config.build()
        self.size = size
        self.name = f"teacher:{config.kind}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from factory.sample import Sample

        sample = Sample.create("cast", 0, 0)
        sample.toon = image
        return next(iter(self._teacher([sample]))).real


def load_realifier(path: Path | str) -> Realifier:
    """``.onnx`` (the exported student, or any NCHW [-1, 1] image model), ``.yaml`` (a toon2real teacher
    section) or a student checkpoint."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--realify: {path} does not exist")
    suffix = path.suffix.lower()
    kind = "onnx" if suffix == ".onnx" else "teacher" if suffix in (".yaml", ".yml") else "student"
    return choose_kind(REALIFIERS, kind, {"path": path}, "--realify", "realifier").build()


# -- the realifier kinds (declared as every pluggable kind is: see factory.config.one_of) -----------


class OnnxRealifierConfig(Strict):
    """An exported toon2real student (.onnx), or any NCHW [-1, 1] image-to-image ONNX model."""

    kind: Literal["onnx"] = "onnx"
    path: Path

    def build(self) -> Realifier:
        return OnnxRealifier(self.path)


class TeacherRealifierConfig(Strict):
    """A toon2real teacher: a recipe-style `teacher:` section in a .yaml file."""

    kind: Literal["teacher"] = "teacher"
    path: Path

    def build(self) -> Realifier:
        return TeacherRealifier(self.path)


class StudentRealifierConfig(Strict):
    """The distilled toon2real student from its PyTorch checkpoint (folder or .safetensors)."""

    kind: Literal["student"] = "student"
    path: Path

    def build(self) -> Realifier:
        return StudentRealifier(self.path)


REALIFIERS = (OnnxRealifierConfig, TeacherRealifierConfig, StudentRealifierConfig)


class StudentRealifier:
    """The distilled toon2real student from its PyTorch checkpoint, through ``distill.infer.Student``."""

    def __init__(self, path: Path):
        from distill.infer import Student

        self._student = Student(path)
        self.size = self._student.size
        self.name = f"student:{Path(path).name}@{self._student.backend}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from distill.infer import to_input, to_uint8

        batch = to_input(image, self._student.multiple)[None]
        return to_uint8(self._student(batch)[0], *image.shape[:2])


# Auto unwarp: strengths fitted to real photos' landmarks reach this (deepface, 61 photos: largest 0.58 with
# dlib's 68 points, 0.64 with mediapipe's mesh; 90th percentiles 0.31 and 0.45); only what lies beyond is undone.
HUMAN_SPREAD = 0.6
MOST_UNWARP = 1.5


class InverseWebtoonWarp:
    """Undo webtoon geometry (big eyes, small chin) with the warping profile's inverse target.

    ``strength`` None is auto: each face's strength is fitted to its landmarks (``Profile.strength_of``)
    and only the part beyond the spread of real faces is undone, so a face with human proportions is
    never stretched.
    """

    def __init__(self, profile: Path | None = None, strength: float | None = 1.0):
        from factory.stages.warp import load_profile

        self.profile = load_profile(profile, field="--unwarp")
        self.strength = strength

    @property
    def label(self) -> str:
        return "auto" if self.strength is None else f"{self.strength:g}"

    def strength_for(self, face: facelib.Face) -> tuple[float | None, float]:
        """(fitted strength or None without landmarks, strength to undo)."""
        from warping import landmarks as lm

        if face.landmarks is None or face.scheme not in lm.SCHEMES:
            return None, 0.0 if self.strength is None else self.strength
        fitted = self.profile.strength_of(lm.to_canonical(face.landmarks, face.scheme))
        if self.strength is not None:
            return fitted, self.strength
        return fitted, float(np.clip(fitted - HUMAN_SPREAD, 0.0, MOST_UNWARP))

    def __call__(self, image: np.ndarray, face: facelib.Face, strength: float) -> np.ndarray:
        from warping import landmarks as lm
        from warping.warp import build_warp

        if face.landmarks is None or face.scheme not in lm.SCHEMES or strength == 0:
            return image
        points = lm.to_canonical(face.landmarks, face.scheme)
        target = self.profile.target(points, "inverse", strength)
        return build_warp(points, target, image.shape[:2]).apply(image)


def unwarp_spec(spec: str) -> tuple[Path | None, float | None]:
    """(profile or None for the default one, strength or None for auto) of an ``--unwarp`` value."""
    name, _, rest = spec.partition(":")
    if name == "auto":
        return (Path(rest) if rest else None), None
    if spec == "default":
        return None, 1.0
    if not spec.lower().endswith(".json"):
        raise UserError(f"--unwarp: {spec!r} is not auto, auto:PROFILE.json, default or a profile .json")
    return Path(spec), 1.0


def parse_unwarp(spec: str | None) -> InverseWebtoonWarp | None:
    """``auto[:PROFILE.json]`` (fitted per face), ``default`` or ``PROFILE.json`` (full strength)."""
    if spec is None:
        return None
    profile, strength = unwarp_spec(spec)
    return InverseWebtoonWarp(profile, strength=strength)
