"""Stable Diffusion teachers (diffusers): img2img and inpainting, optionally held by ControlNets.

Prompts are templates filled from the sample (``{key}``, ``{direction}``, the source's tags, ...);
loading and running the pipeline is :mod:`factory.models.stable_diffusion`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.models.stable_diffusion import DiffusersModel, Runtime, fill
from factory.sample import Sample, sample_seed
from factory.stage import batched
from factory.teachers.base import Teacher, TeacherConfig


class ControlNetConfig(Strict):
    """One ControlNet and the condition image it reads, computed from the source side."""

    model: Path = Field(description="a local diffusers ControlNet folder")
    condition: Literal["canny", "lineart", "landmarks"]
    scale: float = Field(1.0, ge=0.0, le=2.0)
    canny_low: int = Field(100, ge=0, le=255)
    canny_high: int = Field(200, ge=0, le=255)


class DiffusionConfig(TeacherConfig, DiffusersModel):
    """Stable Diffusion img2img or inpainting in either direction."""

    kind: Literal["diffusion"]
    mode: Literal["img2img", "inpaint"] = "img2img"
    prompt: str
    negative_prompt: str = ""
    strength: float = Field(0.6, gt=0.0, le=1.0, description="how much of the source is repainted")
    steps: int = Field(30, ge=1, le=200)
    guidance_scale: float = Field(7.5, ge=0.0)
    controlnets: list[ControlNetConfig] = []
    inpaint_region: Literal["background", "person"] = Field(
        "background", description="inpaint mode: which part of sample.mask is repainted")
    channels_last: bool = Field(True, description="channels_last UNet/VAE on CUDA")
    compile: bool = Field(False, description="torch.compile the UNet")

    def build(self) -> "DiffusionTeacher":
        return DiffusionTeacher(self)


def prompt_fields(sample: Sample, direction: str) -> dict:
    """What a template may name: key, index, direction, the source's scalar fields and its tags."""
    source = sample.meta.get("source") or {}
    fields = {k: v for k, v in source.items() if isinstance(v, (str, int, float))}
    fields.update(source.get("tags") or {})
    fields.update(key=sample.key, index=sample.index, direction=direction)
    return fields


def condition_image(image: np.ndarray, control: ControlNetConfig) -> np.ndarray | None:
    """The ControlNet condition (RGB uint8, white on black) for ``image``; None when it has no face."""
    import cv2

    if control.condition == "canny":
        edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), control.canny_low, control.canny_high)
        return np.repeat(edges[..., None], 3, axis=2)
    if control.condition == "lineart":
        from factory.teachers.cartoonize import lines

        ink = (lines(image, max(1.0, image.shape[0] / 256.0)) * 255).round().astype(np.uint8)
        return np.repeat(ink[..., None], 3, axis=2)
    from factory.faces import shared_detector

    faces = shared_detector("mediapipe", min_size=16).detect(image)
    if not faces or faces[0].landmarks is None:
        return None
    canvas = np.zeros_like(image)
    radius = max(1, round(image.shape[0] / 256))
    for face in faces:
        for x, y in face.landmarks:
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, (255, 255, 255), -1, lineType=cv2.LINE_AA)
    return canvas


class DiffusionTeacher(Teacher):
    """Repaints the source side in the other domain; each sample's noise comes from its seed."""

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        self.runtime = Runtime(config, config.mode)

    def prepare(self, sample: Sample, image: np.ndarray | None) -> dict | None:
        """Prompt, seed, mask and conditions for one sample, or None after rejecting it."""
        config = self.config
        if image is None:
            sample.reject("no_source_image")
            return None
        job = {"image": image, "seed": sample_seed(sample.seed, "diffusion")}
        fields = prompt_fields(sample, config.direction)
        job["prompt"], job["negative"] = fill(config.prompt, fields), fill(config.negative_prompt, fields)
        if config.mode == "inpaint":
            if sample.mask is None:
                sample.reject("no_mask_to_inpaint")
                return None
            job["mask"] = sample.mask if config.inpaint_region == "person" else 255 - sample.mask
        job["controls"] = []
        for control in config.controlnets:
            cond = condition_image(image, control)
            if cond is None:
                sample.reject(f"no_face_for_{control.condition}")
                return None
            job["controls"].append(cond)
        return job

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        src, dst = ("real", "toon") if self.config.direction == "real2toon" else ("toon", "real")
        for batch in batched(samples, self.config.batch_size):
            jobs = [(s, self.prepare(s, getattr(s, src))) for s in batch]
            ready = [(s, job) for s, job in jobs if job is not None]
            for shape in sorted({job["image"].shape for _, job in ready}):  # one call per image size
                group = [(s, job) for s, job in ready if job["image"].shape == shape]
                outputs = self.runtime.generate(
                    [j["prompt"] for _, j in group], [j["negative"] for _, j in group], [j["seed"] for _, j in group],
                    images=[j["image"] for _, j in group],
                    masks=[j["mask"] for _, j in group] if self.config.mode == "inpaint" else None,
                    controls=[j["controls"] for _, j in group], strength=self.config.strength)
                for (sample, job), out in zip(group, outputs):
                    setattr(sample, dst, out)
                    sample.meta["teacher"] = {**self.describe(), "prompt": job["prompt"],
                                              "negative_prompt": job["negative"], "seed": job["seed"]}
            yield from batch
