"""Cutface backgrounds: paste the aligned pair onto one new background (from a folder, or
generated), identically on both sides."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.errors import UserError
from factory.images import IMAGE_SUFFIXES, BadImage, list_images, read_image
from factory.masks import composite
from factory.sample import Sample
from factory.stage import Stage

log = logging.getLogger(__name__)


class BackgroundsConfig(Strict):
    """Cutface: paste pairs onto varied backgrounds, the same one on both sides."""

    folder: Path | None = Field(None, description="background images; generated backgrounds when absent")
    probability: float = Field(0.5, ge=0.0, le=1.0, description="share of samples that get a new background")
    choke: float = Field(0.01, ge=0.0, le=0.1, description="erode the mask by this fraction of the short side (no old-background fringe)")


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


def background_files(folder: Path | None) -> list[Path]:
    """The images of ``segment.backgrounds.folder`` (none: generated backgrounds)."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise UserError(f"{folder}: segment.backgrounds.folder is not a folder")
    files = [p for p in list_images(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"{folder}: segment.backgrounds.folder holds no images")
    return files


class BackgroundSwap(Stage):
    """Cutface augmentation: one new background per chosen sample, composited identically on both sides."""

    name = "backgrounds"

    def __init__(self, config: BackgroundsConfig):
        self.config = config
        self.files = background_files(config.folder)

    def background(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, dict]:
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
