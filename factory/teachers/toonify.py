"""Toonify: layer swapping between a base StyleGAN2 (e.g. FFHQ) and its toon fine-tune.

Layers below the swap resolution come from one model, those above from the other (by default:
coarse geometry from the base, fine textures from the toon model), with an optional smooth
transition. For one latent the pair is (base(w), blended(w)): aligned by construction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator, Literal

from pydantic import Field, field_validator

from factory.errors import ModelLoadError, UserError
from factory.sample import Sample
from factory.stage import batched
from factory.teachers.base import Teacher, TeacherConfig


class ToonifyConfig(TeacherConfig):
    """Needs `source: {kind: stylegan2}` with the same base checkpoint; writes the toon side."""

    kind: Literal["toonify"]
    direction: Literal["real2toon"] = Field("real2toon", description="the real side is base(w) from the source")
    base: Path = Field(description="the base generator (rosinality .pt or .safetensors), as in source.checkpoint")
    toon: Path = Field(description="the toon fine-tune of the base generator")
    swap_resolution: int = Field(32, description="layers at or below this resolution come from `low_from`")
    transition: float = Field(0.0, ge=0.0, le=4.0, description="0: hard swap; >0: sigmoid width in octaves")
    low_from: Literal["base", "toon"] = Field("base", description="which model gives the coarse layers")
    device: str = "auto"

    @field_validator("swap_resolution")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 4 or value > 1024 or value & (value - 1):
            raise ValueError(f"must be a power of two from 4 to 1024 (got {value})")
        return value

    def build(self) -> "ToonifyTeacher":
        return ToonifyTeacher(self)


def high_weight(resolution: int, swap_resolution: int, transition: float) -> float:
    """Share of the high-resolution model in a layer working at ``resolution``."""
    if transition == 0:
        return float(resolution > swap_resolution)
    offset = math.log2(resolution) - math.log2(swap_resolution) - 0.5
    return 1.0 / (1.0 + math.exp(-offset / transition))


def blend_states(base: dict, toon: dict, swap_resolution: int, transition: float, low_from: str) -> dict:
    """Layer-swapped state dict; the mapping network is the base's (w means the same in both)."""
    from factory.models.stylegan2 import layer_resolution

    low, high = (base, toon) if low_from == "base" else (toon, base)
    blended = {}
    for key, tensor in base.items():
        resolution = layer_resolution(key)
        if resolution is None:
            blended[key] = tensor
            continue
        alpha = high_weight(resolution, swap_resolution, transition)
        blended[key] = low[key] * (1 - alpha) + high[key] * alpha if key.split(".")[-1] != "kernel" else tensor
    return blended


class ToonifyTeacher(Teacher):
    """Synthesizes blended(w) for each sample's latent from the stylegan2 source."""

    def __init__(self, config: ToonifyConfig):
        from factory.models import stylegan2
        from factory.models.tensors import pick_device

        super().__init__(config)
        self.device = pick_device(config.device)
        self.key = (str(Path(config.base).resolve()), str(self.device))
        self.base, base_state = stylegan2.shared_generator(*self.key)  # the source's generator, loaded once
        toon_state = stylegan2.read_state(config.toon)
        if stylegan2.architecture(toon_state) != stylegan2.architecture(base_state) or set(toon_state) != set(base_state):
            raise ModelLoadError(config.toon, f"not the same architecture as the base generator {config.base}")
        blended = blend_states(base_state, toon_state, config.swap_resolution, config.transition, config.low_from)
        self.blended = stylegan2.load_generator(config.toon, blended).to(self.device)

    def check_source(self, sample: Sample) -> dict:
        source = sample.meta.get("source") or {}
        if source.get("kind") != "stylegan2":
            raise UserError("teacher.kind toonify: needs `source.kind: stylegan2` (it swaps layers for the "
                            "source's latents)")
        if Path(source["checkpoint"]).resolve() != Path(self.config.base).resolve():
            raise UserError(f"teacher.base: {self.config.base} is not the source's generator "
                            f"(source.checkpoint: {source['checkpoint']}); the pair would not share a face")
        return source

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        import torch

        from factory.models import stylegan2
        from factory.models.tensors import tensor_to_images

        for batch in batched(samples, self.config.batch_size):
            sources = [self.check_source(s) for s in batch]
            with torch.inference_mode():
                means = [stylegan2.shared_mean_w(*self.key, src["mean_latent_samples"]) for src in sources]
                ws = torch.cat([stylegan2.latent_w(self.base, src["latent_seed"], mean, src["truncation"])
                                for src, mean in zip(sources, means)])
                noises = [stylegan2.sample_noise(self.base, src["noise_seed"], src["noise"]) for src in sources]
                noise = [torch.cat(layer).to(self.device) for layer in zip(*noises)]
                images = tensor_to_images(self.blended.synthesis(ws, noise))
            for sample, image in zip(batch, images):
                sample.toon = image
                sample.meta["teacher"] = self.describe()
                yield sample
