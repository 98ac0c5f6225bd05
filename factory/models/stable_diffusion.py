"""Stable Diffusion pipelines (diffusers) loaded from local paths, shared by the diffusion teacher,
the prompt source and the inpainter.

Models load from local paths only: a diffusers folder or one ``.safetensors``/``.ckpt`` file (with a
local folder of configs). LoRA weights and textual-inversion embeddings are added at load time.
This module stays light until a runtime is built: torch and diffusers are imported inside.
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.errors import ModelLoadError

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


class _Fields(dict):
    def __missing__(self, key):
        log.debug("prompt template field %r not in the sample; left empty", key)
        return ""


def fill(template: str, fields: dict) -> str:
    """Fill ``{name}`` fields of a prompt template; unknown names become empty; spaces tidied."""
    text = string.Formatter().vformat(template, (), _Fields(fields))
    return re.sub(r"\s+", " ", re.sub(r"\s+([,.])", r"\1", text)).strip()


class Runtime:
    """A diffusers pipeline loaded once per process for one task: text2image, img2img or inpaint."""

    def __init__(self, config, task: Literal["text2image", "img2img", "inpaint"], field: str = "teacher"):
        import torch

        from factory.models.tensors import pick_device

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
        return load_pipeline(self.config.model, self.config.config, self.dtype, f"{self.field}.model",
                             f"{self.field}.config")

    def _load_controlnet(self, index: int, path: Path):
        from diffusers import ControlNetModel

        if not (Path(path) / "config.json").is_file():
            raise ModelLoadError(path, f"{self.field}.controlnets[{index}].model: expected a diffusers ControlNet "
                                       "folder (config.json + weights)")
        try:
            return ControlNetModel.from_pretrained(str(path), dtype=self.dtype, local_files_only=True)
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


def load_pipeline(model: Path, config: Path | None, dtype, field: str, config_field: str):
    """A text-to-image pipeline from a local diffusers folder or single file; ``field`` and
    ``config_field`` name the settings in error messages."""
    from diffusers import StableDiffusionPipeline

    path = Path(model)
    options = dict(safety_checker=None, requires_safety_checker=False, local_files_only=True)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(path, f"{field}: no model_index.json in the folder; expected {PIPELINE_EXPECTED}")
        loader, options["dtype"] = StableDiffusionPipeline.from_pretrained, dtype  # torch_dtype is deprecated here
    elif path.is_file() and path.suffix in (".safetensors", ".ckpt"):
        if config is not None:
            options["config"] = str(config)
        loader, options["torch_dtype"] = StableDiffusionPipeline.from_single_file, dtype  # which knows no `dtype` yet
    else:
        raise ModelLoadError(path, f"{field}: not found or not a folder/.safetensors/.ckpt; expected "
                                   f"{PIPELINE_EXPECTED}")
    try:
        return loader(str(path), **options)
    except Exception as exc:  # diffusers raises OSError, ValueError, KeyError, ... for bad checkpoints
        hint = "" if path.is_dir() or config else (
            f" (offline, a single file needs `{config_field}`: a local diffusers folder with its configs)")
        raise ModelLoadError(path, f"{field}: {type(exc).__name__}: {str(exc)[:300]}{hint}") from None


def _match_size(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pipeline rounds sizes to its VAE's multiple; bring the output back to the input's size."""
    import cv2

    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
