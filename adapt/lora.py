"""DreamBooth-style LoRA for the Stable Diffusion teacher (diffusers + peft + accelerate).

Low-rank adapters on the UNet's attention projections (and optionally the text encoder's) learn a
style from a few images named by a rare token in the prompt; prior preservation keeps the class
("a webtoon portrait") from collapsing onto the examples with images the base model drew itself.
The output folder holds ``pytorch_lora_weights.safetensors`` in diffusers' format:
``teacher: {kind: diffusion, lora: [{path: OUT}]}`` loads it as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from adapt.training import AdaptSettings, Adaptation, FieldName, mixed_precision, read_examples
from factory.config import Strict
from factory.errors import UserError

log = logging.getLogger(__name__)

WEIGHTS = "pytorch_lora_weights.safetensors"
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


class PriorConfig(Strict):
    """Prior preservation: class images drawn by the base model, trained on beside the examples."""

    class_prompt: str = Field(min_length=1, description="the class without the token, e.g. 'a webtoon portrait'")
    images: int = Field(100, ge=1, le=2000)
    weight: float = Field(1.0, gt=0.0)
    sampling_steps: int = Field(25, ge=1, le=200)


class LoraAdaptConfig(AdaptSettings):
    """DreamBooth-LoRA of a Stable Diffusion model; the diffusers examples' defaults."""

    kind: Literal["lora"] = "lora"
    base: Path = Field(description="a local diffusers folder or a single .safetensors/.ckpt file")
    config: Path | None = Field(None, description="a local diffusers folder with the configs, for a single file")
    out: Path = Field(description="a folder: pytorch_lora_weights.safetensors, checkpoints/, validation/")
    token: str = Field("sks", min_length=1, description="the rare token that names the style")
    instance_prompt: str = "a portrait in sks webtoon style"
    prior: PriorConfig | None = None
    resolution: int = Field(512, ge=8, le=2048, description="a multiple of 64 for SD (its smallest feature map)")
    crop: Literal["center", "bucket"] = Field("center", description="square center crops, or aspect buckets")
    rank: int = Field(4, ge=1, le=256)
    train_text_encoder: bool = False
    steps: int = Field(500, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    gradient_accumulation: int = Field(1, ge=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field("auto", description="auto: fp16 on CUDA")
    gradient_checkpointing: bool = False
    adam_8bit: Literal["auto", "on", "off"] = Field("auto", description="auto: when bitsandbytes and CUDA are there")
    validation_prompt: str | None = Field(None, description="default: the instance prompt")
    validation_steps: int = Field(25, ge=1, le=200)

    @model_validator(mode="after")
    def _token_in_prompt(self):
        if self.token not in self.instance_prompt:
            raise ValueError(f"instance_prompt must contain the token {self.token!r}")
        return self

    def optional_paths(self) -> tuple[str, ...]:
        return ("config",)

    def build(self, field: FieldName) -> "LoraAdaptation":
        return LoraAdaptation(self, field)


def bucket(height: int, width: int, resolution: int, step: int = 64) -> tuple[int, int]:
    """The (height, width) of about ``resolution``² pixels nearest the image's aspect, in ``step``s."""
    aspect = width / height
    fit = lambda side: max(step, round(side / step) * step)  # noqa: E731
    return fit(resolution / aspect**0.5), fit(resolution * aspect**0.5)


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to cover ``size`` (height, width), then center-crop to it."""
    import cv2

    height, width = size
    scale = max(height / image.shape[0], width / image.shape[1])
    resized = cv2.resize(image, (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top:top + height, left:left + width]


def prompt_for(caption: str | None, config: LoraAdaptConfig) -> str:
    """The instance prompt, or the caption with the token in front when it does not name it."""
    if caption is None:
        return config.instance_prompt
    return caption if config.token in caption else f"{config.token} {caption}"


class LoraAdaptation(Adaptation):
    """The UNet's (and text encoder's) LoRA layers trained on noise prediction, prior kept by class images."""

    def __init__(self, config: LoraAdaptConfig, field: FieldName):
        import torch
        from diffusers import DDPMScheduler
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig as PeftLora

        from factory.models.stable_diffusion import load_pipeline
        from factory.models.tensors import pick_device

        device = pick_device(config.device)
        super().__init__(config, field, precision=mixed_precision(config.mixed_precision, device, field),
                         accumulation=config.gradient_accumulation)
        examples = read_examples(config.images, field("images"))
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.accelerator.mixed_precision,
                                                                                 torch.float32)
        self.pipe = load_pipeline(config.base, config.config, self.weight_dtype, field("base"), field("config"))
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(self.device)
        self.noise_scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self.unet, self.vae, self.text_encoder = self.pipe.unet, self.pipe.vae, self.pipe.text_encoder
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
        # the pixel multiple the VAE and the UNet's down blocks divide evenly (64 for SD 1.x/2.x)
        self.step_px = self.pipe.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if config.resolution % self.step_px:
            raise UserError(f"{field('resolution')}: {config.resolution} is not a multiple of {self.step_px}, "
                            "the smallest size this model divides evenly")
        self.classes = self.class_images() if config.prior else []

        lora = dict(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian")
        self.unet.add_adapter(PeftLora(target_modules=UNET_TARGETS, **lora))
        trained = [self.unet]
        if config.train_text_encoder:
            self.text_encoder.add_adapter(PeftLora(target_modules=TEXT_TARGETS, **lora))
            trained.append(self.text_encoder)
        cast_training_params(trained, dtype=torch.float32)
        if config.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if config.train_text_encoder:
                self.text_encoder.gradient_checkpointing_enable()
        self.unet.train()
        self.text_encoder.train(config.train_text_encoder)

        self.examples = [(fit(e.image, self.size_of(e.image)), prompt_for(e.caption, config)) for e in examples]
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for index, (image, _) in enumerate(self.examples):
            self.buckets.setdefault(image.shape[:2], []).append(index)
        parameters = [p for module in trained for p in module.parameters() if p.requires_grad]
        optimizer = self.optimizer_class()(parameters, lr=config.lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        prepared = self.accelerator.prepare(*trained, optimizer)
        self.trained, self.optimizer = list(prepared[:-1]), prepared[-1]
        log.info("LoRA adaptation: %d examples in %d bucket(s), %d class images, %d trained tensors",
                 len(self.examples), len(self.buckets), len(self.classes), len(parameters))

    def size_of(self, image: np.ndarray) -> tuple[int, int]:
        if self.config.crop == "center":
            return self.config.resolution, self.config.resolution
        return bucket(*image.shape[:2], self.config.resolution, self.step_px)

    def optimizer_class(self):
        import torch

        wanted = self.config.adam_8bit
        if wanted == "off" or (wanted == "auto" and self.device.type != "cuda"):
            return torch.optim.AdamW
        try:
            import bitsandbytes
        except ImportError:
            if wanted == "on":
                raise UserError(f"{self.field('adam_8bit')}: on needs the bitsandbytes package "
                                "(pip install bitsandbytes)") from None
            return torch.optim.AdamW
        return bitsandbytes.optim.AdamW8bit

    # -- prior preservation -----------------------------------------------------------------------

    def class_images(self) -> list[np.ndarray]:
        """The class images for this prompt and size, drawn by the base model once and kept on disk."""
        import torch

        from factory.files import subfolder, write_atomic
        from factory.images import encode_png, read_image

        prior, size = self.config.prior, self.config.resolution
        key = hashlib.sha256(json.dumps([prior.class_prompt, size, prior.sampling_steps]).encode()).hexdigest()[:12]
        folder = subfolder(self.work, Path("class_images") / key)
        write_atomic(folder / "prompt.txt", prior.class_prompt.encode())
        missing = [i for i in range(prior.images) if not (folder / f"{i:05d}.png").is_file()]
        batch = 4
        for start in range(0, len(missing), batch):
            chunk = missing[start:start + batch]
            with torch.no_grad():
                images = self.pipe(prompt=[prior.class_prompt] * len(chunk), num_inference_steps=prior.sampling_steps,
                                   height=size, width=size, output_type="np",
                                   generator=[torch.Generator("cpu").manual_seed(self.config.seed + i) for i in chunk]).images
            for i, image in zip(chunk, images):
                write_atomic(folder / f"{i:05d}.png", encode_png((image * 255).round().clip(0, 255).astype(np.uint8)))
        return [read_image(folder / f"{i:05d}.png") for i in range(prior.images)]

    # -- one step -----------------------------------------------------------------------------------

    def batch(self) -> tuple[list[np.ndarray], list[str]]:
        """Examples from one bucket (drawn with replacement), then as many class images fitted to it."""
        import torch

        first = int(torch.randint(len(self.examples), (1,), generator=self.rng))
        members = self.buckets[self.examples[first][0].shape[:2]]
        picks = [first] + [members[int(i)] for i in torch.randint(len(members), (self.config.batch_size - 1,),
                                                                   generator=self.rng)]
        images = [self.examples[i][0] for i in picks]
        prompts = [self.examples[i][1] for i in picks]
        if self.classes:
            size = images[0].shape[:2]
            for i in torch.randint(len(self.classes), (len(picks),), generator=self.rng):
                images.append(fit(self.classes[int(i)], size))
                prompts.append(self.config.prior.class_prompt)
        return images, prompts

    def encode_prompts(self, prompts: list[str]):
        tokenizer = self.pipe.tokenizer
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    def loss(self, images: list[np.ndarray], prompts: list[str]):
        """The DreamBooth loss of one batch: noise (or velocity) prediction error, class part weighted."""
        import torch
        import torch.nn.functional as F

        from factory.models.tensors import images_to_tensor

        pixels = images_to_tensor(images, self.device, self.weight_dtype)
        with torch.no_grad():
            dist = self.vae.encode(pixels).latent_dist
            noise_draw = torch.randn(dist.mean.shape, generator=self.rng).to(self.device, dist.mean.dtype)
            latents = (dist.mean + dist.std * noise_draw) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=self.rng).to(self.device, latents.dtype)
        timesteps = torch.randint(self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  generator=self.rng).to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        with self.accelerator.autocast():
            prediction = self.unet(noisy, timesteps, self.encode_prompts(prompts)).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        if not self.classes:
            return {"loss": F.mse_loss(prediction.float(), target.float())}
        prediction, prior_prediction = prediction.float().chunk(2)
        target, prior_target = target.float().chunk(2)
        instance, prior = F.mse_loss(prediction, target), F.mse_loss(prior_prediction, prior_target)
        return {"loss": instance + self.config.prior.weight * prior, "instance": instance, "prior": prior}

    def train_step(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for _ in range(self.config.gradient_accumulation):
            with self.accelerator.accumulate(*self.trained):
                losses = self.loss(*self.batch())
                self.accelerator.backward(losses["loss"])
                if self.accelerator.sync_gradients:
                    self.accelerator.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / self.config.gradient_accumulation
        return totals

    # -- validation, checkpoints, output ------------------------------------------------------------

    def samples(self) -> list[np.ndarray]:
        import torch

        config = self.config
        prompt = config.validation_prompt or config.instance_prompt
        generators = [torch.Generator("cpu").manual_seed(config.seed + i) for i in range(config.validation_images)]
        self.unet.eval()
        self.text_encoder.eval()
        with torch.no_grad(), self.accelerator.autocast():
            images = self.pipe(prompt=[prompt] * config.validation_images, num_inference_steps=config.validation_steps,
                               height=config.resolution, width=config.resolution, generator=generators,
                               output_type="np").images
        self.unet.train()
        self.text_encoder.train(config.train_text_encoder)
        return [(np.asarray(im) * 255).round().clip(0, 255).astype(np.uint8) for im in images]

    def modules(self) -> dict:
        named = {"unet": self.unet}
        if self.config.train_text_encoder:
            named["text_encoder"] = self.text_encoder
        return named

    def tensors(self) -> dict:
        return {f"{name}.{key}": p for name, module in self.modules().items()
                for key, p in module.named_parameters() if p.requires_grad}

    def optimizers(self) -> dict:
        return {"lora": self.optimizer}

    def export(self) -> None:
        """Write diffusers-format LoRA weights beside the checkpoints, replacing the file in one rename."""
        import tempfile

        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        from factory.files import refuse_link

        layers = {f"{name}_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(module))
                  for name, module in self.modules().items()}
        out = Path(self.config.out)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as staging:
            StableDiffusionPipeline.save_lora_weights(staging, safe_serialization=True, **layers)
            os.replace(Path(staging) / WEIGHTS, refuse_link(out / WEIGHTS))
