"""Stable Diffusion teachers (diffusers): img2img and inpainting, optionally held by ControlNets.

Models load from local paths only: a diffusers folder or one ``.safetensors``/``.ckpt`` file (with a
local folder of configs). LoRA weights and textual-inversion embeddings are added at load time.
Prompts are templates filled from the sample (``{key}``, ``{direction}``, the source's tags, ...).
This module stays light until a runtime is built: torch and diffusers are imported inside.
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np
from pydantic import Field

from factory.errors import ModelLoadError
from factory.recipe import Strict
from factory.sample import Sample, sample_seed
from factory.stage import batched
from factory.teachers.base import Teacher, TeacherConfig

log = logging.getLogger(__name__)

Scheduler = Literal["default", "ddim", "pndm", "lms", "euler", "euler_a", "dpmpp_2m", "unipc"]
SCHEDULERS = {
    "ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler",
}
PIPELINE_EXPECTED = "a diffusers folder (model_index.json) or a single Stable Diffusion .safetensors/.ckpt file"


class LoraConfig(Strict):
    """LoRA (or DreamBooth-LoRA) weights: a .safetensors file or a folder holding one."""

    path: Path
    scale: float = Field(1.0, ge=-4.0, le=4.0)


class TextualInversionConfig(Strict):
    """A textual-inversion embedding (.safetensors/.bin); ``token`` names it in prompts."""

    path: Path
    token: str | None = None


class ControlNetConfig(Strict):
    """One ControlNet and the condition image it reads, computed from the source side."""

    model: Path = Field(description="a local diffusers ControlNet folder")
    condition: Literal["canny", "lineart", "landmarks"]
    scale: float = Field(1.0, ge=0.0, le=2.0)
    canny_low: int = Field(100, ge=0, le=255)
    canny_high: int = Field(200, ge=0, le=255)


class DiffusersModel(Strict):
    """Where a Stable Diffusion pipeline comes from and how it runs: the fields ``Runtime`` reads."""

    model: Path = Field(description="a local diffusers folder or a single .safetensors/.ckpt file")
    config: Path | None = Field(None, description="a local diffusers folder with the configs, for a single file")
    scheduler: Scheduler = "default"
    lora: list[LoraConfig] = []
    textual_inversion: list[TextualInversionConfig] = []
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="auto: fp16 on CUDA")
    attention_slicing: bool = False
    vae_tiling: bool = False


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


class _Fields(dict):
    def __missing__(self, key):
        log.debug("prompt template field %r not in the sample; left empty", key)
        return ""


def fill(template: str, fields: dict) -> str:
    """Fill ``{name}`` fields of a prompt template; unknown names become empty; spaces tidied."""
    text = string.Formatter().vformat(template, (), _Fields(fields))
    return re.sub(r"\s+", " ", re.sub(r"\s+([,.])", r"\1", text)).strip()


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


class Runtime:
    """A diffusers pipeline loaded once per process for one task: text2image, img2img or inpaint."""

    def __init__(self, config, task: Literal["text2image", "img2img", "inpaint"], field: str = "teacher"):
        import torch

        from factory.teachers.tensors import pick_device

        self.config, self.task, self.field = config, task, field
        self.device = pick_device(config.device)
        if config.dtype == "auto":
            self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        else:
            self.dtype = getattr(torch, config.dtype)
        self.controls = list(getattr(config, "controlnets", []))
        self.pipe = self._load()

    def _load(self):
        import diffusers
        import torch

        base = self._load_base()
        controlnets = [self._load_controlnet(i, c.model) for i, c in enumerate(self.controls)]
        names = {"text2image": "StableDiffusion", "img2img": "StableDiffusionImg2Img",
                 "inpaint": "StableDiffusionInpaint"}
        name = names[self.task]
        if controlnets:
            name = name.replace("StableDiffusion", "StableDiffusionControlNet")
            extra = {"controlnet": controlnets[0] if len(controlnets) == 1 else controlnets}
        else:
            extra = {}
        pipe = getattr(diffusers, f"{name}Pipeline").from_pipe(base, **extra)
        if self.config.scheduler != "default":
            scheduler_class = getattr(diffusers, SCHEDULERS[self.config.scheduler])
            pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
        self._add_adapters(pipe)
        pipe = pipe.to(self.device)
        if self.device.type == "cuda" and getattr(self.config, "channels_last", False):
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if getattr(self.config, "compile", False):
            pipe.unet = torch.compile(pipe.unet)
        if self.config.attention_slicing:
            pipe.enable_attention_slicing()
        if self.config.vae_tiling:
            pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_base(self):
        from diffusers import StableDiffusionPipeline

        path = Path(self.config.model)
        options = dict(torch_dtype=self.dtype, safety_checker=None, requires_safety_checker=False,
                       local_files_only=True)
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise ModelLoadError(path, f"{self.field}.model: no model_index.json in the folder; expected "
                                           f"{PIPELINE_EXPECTED}")
            loader, where = StableDiffusionPipeline.from_pretrained, path
        elif path.is_file() and path.suffix in (".safetensors", ".ckpt"):
            if self.config.config is not None:
                options["config"] = str(self.config.config)
            loader, where = StableDiffusionPipeline.from_single_file, path
        else:
            raise ModelLoadError(path, f"{self.field}.model: not found or not a folder/.safetensors/.ckpt; expected "
                                       f"{PIPELINE_EXPECTED}")
        try:
            return loader(str(where), **options)
        except Exception as exc:  # diffusers raises OSError, ValueError, KeyError, ... for bad checkpoints
            hint = "" if path.is_dir() or self.config.config else (
                f" (offline, a single file needs `{self.field}.config`: a local diffusers folder with its configs)")
            raise ModelLoadError(path, f"{self.field}.model: {type(exc).__name__}: {str(exc)[:300]}{hint}") from None

    def _load_controlnet(self, index: int, path: Path):
        from diffusers import ControlNetModel

        if not (Path(path) / "config.json").is_file():
            raise ModelLoadError(path, f"{self.field}.controlnets[{index}].model: expected a diffusers ControlNet "
                                       "folder (config.json + weights)")
        try:
            return ControlNetModel.from_pretrained(str(path), torch_dtype=self.dtype, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(path, f"{self.field}.controlnets[{index}].model: {type(exc).__name__}: "
                                       f"{str(exc)[:300]}") from None

    def _add_adapters(self, pipe) -> None:
        names, scales = [], []
        for i, lora in enumerate(self.config.lora):
            if not Path(lora.path).exists():
                raise ModelLoadError(lora.path, f"{self.field}.lora[{i}].path: file or folder not found")
            try:
                pipe.load_lora_weights(str(lora.path), adapter_name=f"lora{i}")
            except Exception as exc:
                raise ModelLoadError(lora.path, f"{self.field}.lora[{i}]: not LoRA weights for this model "
                                                f"({type(exc).__name__}: {str(exc)[:200]})") from None
            names.append(f"lora{i}")
            scales.append(lora.scale)
        if names:
            pipe.set_adapters(names, adapter_weights=scales)
        for i, embedding in enumerate(self.config.textual_inversion):
            if not Path(embedding.path).is_file():
                raise ModelLoadError(embedding.path, f"{self.field}.textual_inversion[{i}].path: file not found")
            try:
                pipe.load_textual_inversion(str(embedding.path), token=embedding.token)
            except Exception as exc:
                raise ModelLoadError(embedding.path, f"{self.field}.textual_inversion[{i}]: not an embedding for "
                                                     f"this text encoder ({type(exc).__name__}: {str(exc)[:200]})") from None

    def generate(self, prompts: list[str], negatives: list[str], seeds: list[int], *, size: int | None = None,
                 images: list[np.ndarray] | None = None, masks: list[np.ndarray] | None = None,
                 controls: list[list[np.ndarray]] | None = None, strength: float | None = None) -> list[np.ndarray]:
        """One batched pipeline call; per-sample CPU generators make each image independent of the batch."""
        import torch
        from PIL import Image

        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        kwargs = dict(prompt=prompts, negative_prompt=negatives, num_inference_steps=self.config.steps,
                      guidance_scale=self.config.guidance_scale, generator=generators, output_type="np")
        if self.task == "text2image":
            kwargs.update(height=size, width=size)
        else:
            kwargs.update(image=[Image.fromarray(im) for im in images], strength=strength)
            if self.task == "inpaint" or self.controls:  # these pipelines default to the UNet's size
                kwargs.update(height=images[0].shape[0], width=images[0].shape[1])
        if self.task == "inpaint":
            kwargs["mask_image"] = [Image.fromarray(m) for m in masks]
        if self.controls:
            # one NCHW batch in [0, 1] per ControlNet (the multi-ControlNet pipelines refuse nested lists)
            per_net = [torch.from_numpy(np.stack([c[i] for c in controls])).permute(0, 3, 1, 2).float() / 255.0
                       for i in range(len(self.controls))]
            kwargs["control_image"] = per_net[0] if len(per_net) == 1 else per_net
            scales = [c.scale for c in self.controls]
            kwargs["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
        with torch.inference_mode():
            result = self.pipe(**kwargs).images
        outputs = [(np.asarray(im) * 255.0).round().clip(0, 255).astype(np.uint8) for im in result]
        if images is not None:
            outputs = [_match_size(out, ref.shape[:2]) for out, ref in zip(outputs, images)]
        return outputs


def _match_size(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pipeline rounds sizes to its VAE's multiple; bring the output back to the input's size."""
    import cv2

    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


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
