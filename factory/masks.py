"""Soft person masks: cleaning a probability map, storing it, and compositing with it."""

from __future__ import annotations

import cv2
import numpy as np


def soften(probability: np.ndarray, feather: float) -> np.ndarray:
    """Clean up a person probability map: smoothstep around 0.5, then feather by ``feather`` × short side."""
    p = np.clip((probability.astype(np.float32) - 0.3) / 0.4, 0.0, 1.0)
    p = p * p * (3.0 - 2.0 * p)
    sigma = feather * min(p.shape[:2])
    if sigma > 0.3:
        p = cv2.GaussianBlur(p, (0, 0), sigma)
    return p


def to_uint8(mask: np.ndarray) -> np.ndarray:
    return np.round(np.clip(mask, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_float(mask: np.ndarray) -> np.ndarray:
    """A stored mask (uint8 0..255) or a probability map as float32 in [0, 1]."""
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def composite(person: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask × person + (1 − mask) × background``; the mask is uint8 0..255 or float 0..1."""
    if person.shape != background.shape or person.shape[:2] != mask.shape[:2]:
        raise ValueError(f"composite: person {person.shape}, background {background.shape}, mask {mask.shape} differ")
    alpha = to_float(mask)[..., None]
    out = alpha * person.astype(np.float32) + (1.0 - alpha) * background.astype(np.float32)
    return np.round(out).clip(0, 255).astype(np.uint8)
