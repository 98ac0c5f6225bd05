"""Background inpainting: remove the person (the mask, grown a little) and fill the hole.

An inpainter is a callable ``inpainter(image, mask) -> image``: RGB uint8 in and out, the mask
H×W (uint8 0..255 or float 0..1, 1 = person). Pixels outside the grown hole are returned unchanged.
Backends: OpenCV (no weights; the default), a LaMa TorchScript checkpoint (``model(image, mask)``),
and a Stable Diffusion inpainting pipeline from a local path (the diffusion teacher's loader).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from factory.config import Strict, one_of
from factory.errors import ModelLoadError
from factory.models.stable_diffusion import DiffusersModel

log = logging.getLogger(__name__)


class InpaintBase(Strict):
    grow: float = Field(0.03, ge=0.0, le=0.2, description="dilate the hole by this fraction of the short side (takes halos)")
    threshold: float = Field(0.1, gt=0.0, lt=1.0, description="mask values above this are part of the hole")


class OpenCVInpaintConfig(InpaintBase):
    """OpenCV's Telea or Navier-Stokes inpainting, run at a working size and pasted back into the hole."""

    kind: Literal["opencv"] = "opencv"
    method: Literal["telea", "ns"] = "telea"
    radius: int = Field(5, ge=1, le=32, description="neighbourhood radius at the working size, in pixels")
    work_size: int = Field(256, ge=32, le=2048, description="long side the fill is computed at (speed; fills are smooth)")

    def build(self) -> "OpenCVInpainter":
        return OpenCVInpainter(self)


class LamaInpaintConfig(InpaintBase):
    """A LaMa TorchScript checkpoint (``big-lama.pt`` style: ``model(image, mask)``, [0, 1] NCHW)."""

    kind: Literal["lama"]
    checkpoint: Path = Field(description="TorchScript file")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def build(self) -> "LamaInpainter":
        return LamaInpainter(self)


class DiffusionInpaintConfig(InpaintBase, DiffusersModel):
    """Stable Diffusion inpainting from a local diffusers folder or single file; repaints the hole only."""

    kind: Literal["diffusion"]
    prompt: str = "empty background, scenery, no people"
    negative_prompt: str = "person, people, face, body, hands, text, watermark"
    steps: int = Field(30, ge=1, le=200)
    guidance_scale: float = Field(7.5, ge=0.0)
    seed: int = Field(0, description="noise seed: the same image and mask give the same fill")

    def build(self) -> "DiffusionInpainter":
        return DiffusionInpainter(self)


INPAINTERS = (OpenCVInpaintConfig, LamaInpaintConfig, DiffusionInpaintConfig)
InpaintConfig = one_of(INPAINTERS)


def hole_mask(mask: np.ndarray, threshold: float, grow: float) -> np.ndarray:
    """Binary uint8 hole (1 = fill): the mask above ``threshold``, dilated by ``grow`` × short side."""
    values = mask.astype(np.float32) / 255.0 if mask.dtype == np.uint8 else mask.astype(np.float32)
    hole = (values > threshold).astype(np.uint8)
    radius = int(round(grow * min(hole.shape[:2])))
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        hole = cv2.dilate(hole, kernel)
    return hole


class OpenCVInpainter:
    """Fill at ``work_size`` (inpainting cost grows with hole area × radius²), upscale, paste into the hole."""

    def __init__(self, config: OpenCVInpaintConfig = OpenCVInpaintConfig()):
        self.config = config
        self.flag = cv2.INPAINT_TELEA if config.method == "telea" else cv2.INPAINT_NS

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hole = hole_mask(mask, self.config.threshold, self.config.grow)
        if not hole.any():
            return image.copy()
        h, w = image.shape[:2]
        scale = min(1.0, self.config.work_size / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            small_hole = (cv2.resize(hole, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
            fill = cv2.resize(cv2.inpaint(small, small_hole, self.config.radius, self.flag), (w, h),
                              interpolation=cv2.INTER_CUBIC)
        else:
            fill = cv2.inpaint(image, hole, self.config.radius, self.flag)
        return np.where(hole[..., None].astype(bool), fill, image)


class LamaInpainter:
    """LaMa as TorchScript: inputs image (1,3,H,W) and mask (1,1,H,W) in [0, 1], sides padded to ×8."""

    def __init__(self, config: LamaInpaintConfig, model=None):
        from factory.models.tensors import pick_device

        self.config = config
        self.device = pick_device(config.device)
        self.model = model if model is not None else self._load(config.checkpoint)

    def _load(self, path: Path):
        import torch

        expected = "segment.inpaint.checkpoint: a LaMa TorchScript file (big-lama.pt style, model(image, mask))"
        if not Path(path).is_file():
            raise ModelLoadError(path, f"{expected}; file not found")
        try:
            with warnings.catch_warnings():  # LaMa ships as TorchScript, which torch now marks deprecated
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(str(path), map_location=self.device)
        except Exception as exc:  # not TorchScript, truncated, or a plain state dict
            raise ModelLoadError(path, f"{expected}; {type(exc).__name__}") from None
        log.info("LaMa loaded from %s on %s", path, self.device)
        return model.eval()

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        hole = hole_mask(mask, self.config.threshold, self.config.grow)
        if not hole.any():
            return image.copy()
        h, w = image.shape[:2]
        pad_h, pad_w = -h % 8, -w % 8
        padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(h, w) > 8 else "edge")
        padded_hole = np.pad(hole, ((0, pad_h), (0, pad_w)), mode="edge")
        x = torch.from_numpy(padded).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        m = torch.from_numpy(padded_hole).to(self.device)[None, None].float()
        with torch.inference_mode():
            out = self.model(x, m)
        fill = (out[0, :, :h, :w].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
        return np.where(hole[..., None].astype(bool), fill, image)


class DiffusionInpainter:
    """The diffusion teacher's runtime in inpaint mode, with a fixed prompt and seed; known pixels kept exactly."""

    def __init__(self, config: DiffusionInpaintConfig):
        from factory.models.stable_diffusion import Runtime

        self.config = config
        self.runtime = Runtime(config, "inpaint", field="segment.inpaint")

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hole = hole_mask(mask, self.config.threshold, self.config.grow)
        if not hole.any():
            return image.copy()
        (fill,) = self.runtime.generate([self.config.prompt], [self.config.negative_prompt], [self.config.seed],
                                        images=[image], masks=[hole * 255], strength=1.0)
        return np.where(hole[..., None].astype(bool), fill, image)
