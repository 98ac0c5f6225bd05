"""A classical cartoonizer that needs no weights, in the spirit of white-box cartoon representations.

Three representations, combined: a *surface* (edge-preserving smoothing), a *structure* (flat
colour regions from k-means colour quantization) and *lines* (difference-of-Gaussians edges).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from factory.sample import Sample
from factory.teachers.base import Teacher, TeacherConfig


class CartoonizeConfig(TeacherConfig):
    """A classical cartoonizer that needs no weights: smoothed surface, quantized colours, DoG lines."""

    kind: Literal["cartoonize"]
    direction: Literal["real2toon"] = "real2toon"
    colors: int = Field(10, ge=2, le=64, description="colours after quantization")
    smoothing: int = Field(2, ge=0, le=8, description="bilateral filter passes")
    line_strength: float = Field(0.8, ge=0.0, le=1.0)
    line_width: float = Field(1.0, ge=0.3, le=4.0, description="scale of the line detector, in pixels")
    saturation: float = Field(1.15, ge=0.0, le=3.0, description="colour saturation factor")

    def build(self) -> "CartoonizeTeacher":
        return CartoonizeTeacher(self)


def quantize(image: np.ndarray, colors: int, iterations: int = 6) -> np.ndarray:
    """Deterministic k-means colour quantization in Lab space (initial centres from luminance quantiles)."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    order = np.argsort(lab[:, 0], kind="stable")
    picks = order[((np.arange(colors) + 0.5) / colors * (len(order) - 1)).astype(int)]
    centres = lab[picks].copy()
    sub = lab[:: max(1, len(lab) // 16384)]  # fit on a subsample, assign all pixels
    for _ in range(iterations):
        labels = ((sub[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        for k in range(colors):
            members = sub[labels == k]
            if len(members):
                centres[k] = members.mean(0)
    labels = ((lab[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    out = centres[labels].reshape(image.shape).round().clip(0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2RGB)


def lines(image: np.ndarray, width: float) -> np.ndarray:
    """Soft dark lines in [0, 1] (1 = line) from a thresholded difference of Gaussians."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    fine = cv2.GaussianBlur(gray, (0, 0), width)
    coarse = cv2.GaussianBlur(gray, (0, 0), width * 1.6)
    dog = coarse - fine
    return np.clip((dog - 0.008) * 40.0, 0.0, 1.0)


def cartoonize(image: np.ndarray, config: CartoonizeConfig) -> np.ndarray:
    """Cartoonize one RGB uint8 image; the same input always gives the same output."""
    scale = image.shape[0] / 256.0
    surface = image
    for _ in range(config.smoothing):
        surface = cv2.bilateralFilter(surface, d=max(5, int(7 * scale) | 1), sigmaColor=40, sigmaSpace=5 * scale)
    flat = quantize(surface, config.colors)
    flat = cv2.addWeighted(flat, 0.75, surface, 0.25, 0)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * config.saturation, 0, 255)
    flat = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    ink = lines(image, config.line_width * scale) * config.line_strength
    out = flat * (1.0 - ink[..., None] * 0.85)
    return out.round().clip(0, 255).astype(np.uint8)


class CartoonizeTeacher(Teacher):
    """real → toon with classical image processing; no weights, runs anywhere."""

    def translate(self, images: list[np.ndarray], samples: list[Sample]) -> list[np.ndarray]:
        return [cartoonize(image, self.config) for image in images]
