"""Generative sources: faces that a model makes (StyleGAN2 latents, text prompts) instead of files.

Their config classes say ``generative = True``: the pipeline runs them before the face stage, which
then detects and crops both sides of the pair with the same matrix. Every random choice comes from
the sample's seed, so item ``index`` is the same image in any process.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from factory.config import Strict
from factory.models.stable_diffusion import DiffusersModel
from factory.sample import Side, Sample, sample_seed


class StyleGAN2SourceConfig(Strict):
    """Faces sampled from a StyleGAN2 generator (rosinality checkpoint), with truncation in W."""

    generative: ClassVar[bool] = True
    kind: Literal["stylegan2"]
    checkpoint: Path = Field(description="rosinality .pt (g_ema) or .safetensors")
    domain: Side = Field("real", description="which side the generated face fills")
    truncation: float = Field(0.7, ge=0.0, le=1.5, description="psi: 1 = no truncation, 0 = the mean face")
    mean_latent_samples: int = Field(4096, ge=1, description="z draws averaged for the mean W (once per process)")
    noise: Literal["sample", "checkpoint", "zero"] = Field(
        "sample", description="per-layer noise: drawn from the sample's seed, the checkpoint's fixed noise, or none")
    device: str = "auto"

    def build(self) -> "StyleGAN2Source":
        return StyleGAN2Source(self)


class StyleGAN2Source:
    """Loads the generator and its mean W once; ``load`` synthesizes the sample's face."""

    def __init__(self, config: StyleGAN2SourceConfig):
        from factory.models import stylegan2
        from factory.models.tensors import pick_device

        self.config = config
        self.device = pick_device(config.device)
        key = (str(Path(config.checkpoint).resolve()), str(self.device))
        self.generator = stylegan2.shared_generator(*key)[0]
        self.mean_w = stylegan2.shared_mean_w(*key, config.mean_latent_samples)

    def provenance(self, sample: Sample) -> dict:
        return {
            "kind": "stylegan2", "checkpoint": str(self.config.checkpoint),
            "latent_seed": sample_seed(sample.seed, "stylegan2.z"),
            "noise_seed": sample_seed(sample.seed, "stylegan2.noise"), "noise": self.config.noise,
            "truncation": self.config.truncation, "mean_latent_samples": self.config.mean_latent_samples,
        }

    def load(self, sample: Sample) -> Sample:
        import torch

        from factory.models import stylegan2
        from factory.models.tensors import tensor_to_images

        record = self.provenance(sample)
        with torch.inference_mode():
            w = stylegan2.latent_w(self.generator, record["latent_seed"], self.mean_w, self.config.truncation)
            noise = stylegan2.sample_noise(self.generator, record["noise_seed"], self.config.noise)
            image = self.generator.synthesis(w, [n.to(self.device) for n in noise])
        setattr(sample, self.config.domain, tensor_to_images(image)[0])
        sample.meta["source"] = record
        return sample


class PromptSourceConfig(DiffusersModel):
    """Faces drawn by a Stable Diffusion model from prompt templates and attribute tags.

    Each sample picks one value per tag (from its seed) and fills the template, e.g.
    ``"portrait photo of a {age} {gender} with {hair} hair"``.
    """

    generative: ClassVar[bool] = True
    kind: Literal["prompt"]
    prompt: str
    negative_prompt: str = ""
    tags: dict[str, list[str]] = Field(default_factory=dict, description="attribute name -> values to pick from")
    domain: Side = "real"
    size: int = Field(512, ge=64, le=2048, description="generated image side, a multiple of 8")
    steps: int = Field(25, ge=1, le=200)
    guidance_scale: float = Field(7.0, ge=0.0)

    @field_validator("size")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (got {value})")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_have_values(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [name for name, values in value.items() if not values]
        if empty:
            raise ValueError(f"tag(s) {empty} have no values")
        return value

    def build(self) -> "PromptSource":
        return PromptSource(self)


class PromptSource:
    """Loads a text-to-image pipeline once; ``load`` draws the sample's face from its prompt."""

    def __init__(self, config: PromptSourceConfig):
        from factory.models import stable_diffusion

        self.config = config
        self.runtime = stable_diffusion.Runtime(config, "text2image", field="source")

    def pick_tags(self, sample: Sample) -> dict[str, str]:
        rng = sample.rng("prompt.tags")
        return {name: values[int(rng.integers(len(values)))] for name, values in sorted(self.config.tags.items())}

    def load(self, sample: Sample) -> Sample:
        from factory.models import stable_diffusion

        tags = self.pick_tags(sample)
        fields = {"key": sample.key, "index": sample.index, **tags}
        prompt = stable_diffusion.fill(self.config.prompt, fields)
        negative = stable_diffusion.fill(self.config.negative_prompt, fields)
        seed = sample_seed(sample.seed, "prompt.image")
        (image,) = self.runtime.generate([prompt], [negative], [seed], size=self.config.size)
        setattr(sample, self.config.domain, image)
        sample.meta["source"] = {"kind": "prompt", "model": str(self.config.model), "prompt": prompt,
                                 "negative_prompt": negative, "tags": tags, "seed": seed,
                                 "steps": self.config.steps, "domain": self.config.domain}
        return sample
