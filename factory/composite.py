"""Person-only stylization and background replacement, composited with the soft person mask.

- ``person_only``: stylize the person with any callable, keep the background (or stylize the
  inpainted background) and blend with the feathered mask; the inference path calls it directly.
- ``PersonOnlyTeacher``: the same for pairs, wrapping any teacher stage; both sides of a pair get
  the same background treatment, so a student learns the person's style, not background noise.
- ``BackgroundSwap``: the cutface augmentation: paste the aligned pair onto one background (from a
  folder, or generated) identically on both sides.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import cv2
import numpy as np
from pydantic import Field

from factory.errors import UserError
from factory.recipe import Strict
from factory.sample import Sample
from factory.stage import Stage, batched

log = logging.getLogger(__name__)

Background = Literal["keep", "stylize"]


class PersonOnlyConfig(Strict):
    """Stylize only the person; the background is kept as it is, or inpainted and stylized."""

    background: Background = "keep"


class BackgroundsConfig(Strict):
    """Cutface: paste pairs onto varied backgrounds, the same one on both sides."""

    folder: Path | None = Field(None, description="background images; generated backgrounds when absent")
    probability: float = Field(0.5, ge=0.0, le=1.0, description="share of samples that get a new background")
    choke: float = Field(0.01, ge=0.0, le=0.1, description="erode the mask by this fraction of the short side (no old-background fringe)")


def composite(person: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask × person + (1 − mask) × background``; the mask is uint8 0..255 or float 0..1."""
    if person.shape != background.shape or person.shape[:2] != mask.shape[:2]:
        raise ValueError(f"composite: person {person.shape}, background {background.shape}, mask {mask.shape} differ")
    from factory.segment import to_float

    alpha = to_float(mask)[..., None]
    out = alpha * person.astype(np.float32) + (1.0 - alpha) * background.astype(np.float32)
    return np.round(out).clip(0, 255).astype(np.uint8)


def person_only(image: np.ndarray, stylize: Callable[[np.ndarray], np.ndarray], mask_backend: Callable,
                background: Background = "keep", inpainter: Callable | None = None,
                feather: float = 0.01) -> np.ndarray:
    """Stylize only the people in ``image`` (RGB uint8); the background is kept, or inpainted and stylized.

    ``mask_backend(image)`` gives a person probability map (any backend in :mod:`factory.segment`);
    ``stylize(image)`` returns an image of the same shape (a teacher, the distilled student, ...).
    """
    from factory.inpaint import OpenCVInpainter
    from factory.segment import soften

    mask = soften(mask_backend(image), feather)
    styled = stylize(image)
    if styled.shape != image.shape:
        raise ValueError(f"person_only: stylize returned {styled.shape} for an input of {image.shape}")
    if background == "keep":
        return composite(styled, image, mask)
    plate = (inpainter or OpenCVInpainter())(image, mask)
    return composite(styled, stylize(plate), mask)


class PersonOnlyTeacher(Stage):
    """Wraps a teacher stage: its output is kept inside the sample's mask only.

    ``keep``: outside the mask the new side equals the source side, pixel for pixel.
    ``stylize``: outside the mask it is the teacher's translation of the inpainted source (no
    ghost of the person in the background).
    """

    name = "teacher"

    def __init__(self, teacher, config: PersonOnlyConfig, inpainter: Callable | None = None):
        self.teacher = teacher
        self.config = config
        self.inpainter = inpainter

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        src, dst = ("real", "toon") if self.teacher.config.direction == "real2toon" else ("toon", "real")
        for batch in batched(self.teacher(samples), max(1, self.teacher.config.batch_size)):
            live = [s for s in batch if s.reject_reason is None]
            for sample in live:
                if sample.mask is None:
                    raise RuntimeError(f"{sample.key}: person-only stylization needs the segment stage's mask")
            backgrounds = [getattr(s, src) for s in live]
            if self.config.background == "stylize" and live:
                if self.inpainter is None:
                    raise RuntimeError("person-only background `stylize` needs an inpainter")
                plates = [self.inpainter(getattr(s, src), s.mask) for s in live]
                backgrounds = self.teacher.translate(plates, live)
            for sample, background in zip(live, backgrounds):
                setattr(sample, dst, composite(getattr(sample, dst), background, sample.mask))
                sample.meta["segment"] = {
                    **(sample.meta.get("segment") or {}), "person_only": {"background": self.config.background},
                }
            yield from batch


def generated_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random background: a two-colour gradient at a random angle over low-frequency colour noise."""
    colours = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    gradient = colours[0] * (1 - t[..., None]) + colours[1] * t[..., None]
    cells = int(rng.integers(2, 7))
    noise = rng.normal(0.0, 40.0, size=(cells, cells, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(gradient + noise, 0, 255).astype(np.uint8)


def cover_crop(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Resize ``image`` to cover (height, width) and cut a random window; a random horizontal flip."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y = int(rng.integers(0, size[1] - height + 1))
    x = int(rng.integers(0, size[0] - width + 1))
    window = resized[y:y + height, x:x + width]
    return np.ascontiguousarray(window[:, ::-1] if rng.random() < 0.5 else window)


class BackgroundSwap(Stage):
    """Cutface augmentation: one new background per chosen sample, composited identically on both sides."""

    name = "backgrounds"

    def __init__(self, config: BackgroundsConfig):
        self.config = config

    @cached_property
    def files(self) -> list[Path]:
        from factory.images import IMAGE_SUFFIXES, list_images

        if self.config.folder is None:
            return []
        if not self.config.folder.is_dir():
            raise UserError(f"{self.config.folder}: segment.backgrounds.folder is not a folder")
        files = [p for p in list_images(self.config.folder) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise UserError(f"{self.config.folder}: segment.backgrounds.folder holds no images")
        return files

    def background(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, dict]:
        from factory.images import BadImage, read_image

        if self.files:
            path = self.files[int(rng.integers(len(self.files)))]
            try:
                return cover_crop(read_image(path), height, width, rng), {"source": "folder", "file": path.name}
            except BadImage as exc:
                log.warning("background %s unusable (%s); using a generated one", path, exc.reason)
        return generated_background(rng, height, width), {"source": "generated"}

    def process(self, sample: Sample) -> Sample:
        if sample.reject_reason is not None or sample.mask is None:
            return sample
        rng = sample.rng("backgrounds")
        if rng.random() >= self.config.probability:
            return sample
        height, width = sample.mask.shape[:2]
        background, record = self.background(rng, height, width)
        mask = sample.mask
        radius = int(round(self.config.choke * min(height, width)))
        if radius:
            mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
        for side in ("real", "toon"):
            image = getattr(sample, side)
            if image is not None:
                setattr(sample, side, composite(image, background, mask))
        sample.meta["segment"] = {**(sample.meta.get("segment") or {}), "background": record}
        return sample
