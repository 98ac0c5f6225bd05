"""Super-resolution of small crops: Real-ESRGAN compact (SRVGGNetCompact) through spandrel.

The weights come from a path the user gives (e.g. realesr-animevideov3.pth, ``{"params": ...}``);
they are read with ``torch.load(weights_only=True)`` (never unpickled) and spandrel builds the
architecture from the state dict. Large inputs run in overlapping tiles so memory stays flat.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from factory.errors import ModelLoadError

log = logging.getLogger(__name__)


class SuperResolver:
    """An image-to-image upscaler (RGB uint8 in, RGB uint8 ``scale``× larger out)."""

    def __init__(self, path: str | Path, *, tile: int = 256, pad: int = 16, device: str = "cpu"):
        import spandrel

        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            descriptor = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(state))
        except Exception as exc:  # missing file, pickle with code, unknown architecture
            raise ModelLoadError(path, f"a super-resolution state dict spandrel knows ({type(exc).__name__}: {exc})") from None
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise ModelLoadError(path, "an image super-resolution model (not an inpainting one)")
        self.model = descriptor.model.eval().to(device)
        self.scale = int(descriptor.scale)
        self.architecture = descriptor.architecture.name
        self.tile, self.pad, self.device = tile, pad, device

    @torch.inference_mode()
    def _run(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return self.model(x)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """``image`` ``scale``× larger; tiles of ``tile`` px with ``pad`` px of context each side."""
        h, w = image.shape[:2]
        s, t, p = self.scale, self.tile, self.pad
        if max(h, w) <= t + 2 * p:
            return _to_uint8(self._run(image))
        out = np.zeros((h * s, w * s, 3), np.float32)
        for y in range(0, h, t):
            for x in range(0, w, t):
                y0, x0, y1, x1 = max(y - p, 0), max(x - p, 0), min(y + t + p, h), min(x + t + p, w)
                result = self._run(image[y0:y1, x0:x1])
                ty, tx = (y - y0) * s, (x - x0) * s
                th, tw = (min(y + t, h) - y) * s, (min(x + t, w) - x) * s
                out[y * s:y * s + th, x * s:x * s + tw] = result[ty:ty + th, tx:tx + tw]
        return _to_uint8(out)

    def to_side(self, crop: np.ndarray, side: int) -> np.ndarray:
        """A square crop brought to ``side`` px: upscaled (as often as needed) then resized down."""
        while crop.shape[0] < side:
            crop = self.upscale(crop)
        return resize(crop, side)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (image * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def resize(crop: np.ndarray, side: int) -> np.ndarray:
    """A square crop at ``side`` px (area filter down, cubic up)."""
    if crop.shape[0] == side:
        return crop
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if crop.shape[0] > side else cv2.INTER_CUBIC)
