"""Fine-tuning a StyleGAN2 generator on a few webtoon faces, Toonify's way, for the Toonify teacher.

Generator and discriminator start from the base checkpoint (its ``d`` when it has one) and train a
few hundred to a few thousand steps with the non-saturating loss and lazy R1. Few-shot safeguards:
differentiable augmentation (color, translation, cutout) of every image the discriminator sees,
its layers nearest the image frozen (FreezeD), and the mapping network frozen so that w means the
same in both models (what layer swapping needs). The output holds the EMA generator (``g_ema``)
and the discriminator as tensors only: ``.safetensors``, or a weights-only ``.pt``.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from adapt.training import AdaptSettings, Adaptation, FieldName, read_examples
from factory.errors import ModelLoadError, UserError

log = logging.getLogger(__name__)

Augment = Literal["color", "translation", "cutout"]
OUTPUT_SUFFIXES = (".safetensors", ".pt", ".pth")


class StyleGAN2AdaptConfig(AdaptSettings):
    """Fine-tune a rosinality-format StyleGAN2 on aligned, square webtoon faces."""

    kind: Literal["stylegan2"] = "stylegan2"
    base: Path = Field(description="the base generator (rosinality .pt or .safetensors), e.g. FFHQ")
    out: Path = Field(description="the toon generator: .safetensors or a weights-only .pt")
    discriminator: Path | None = Field(None, description="a checkpoint with `d`; default: the base's, else random")
    steps: int = Field(1000, ge=1)
    lr: float = Field(0.002, gt=0.0)
    batch_size: int = Field(4, ge=1, le=64)
    r1: float = Field(10.0, ge=0.0, description="R1 penalty weight (lazy: every d_reg_every steps)")
    d_reg_every: int = Field(16, ge=1)
    mixing: float = Field(0.9, ge=0.0, le=1.0, description="style-mixing probability")
    augment: list[Augment] = Field(["color", "translation", "cutout"], description="DiffAugment policy")
    freeze_discriminator: int = Field(2, ge=0, description="discriminator blocks kept frozen, from the image side")
    freeze_mapping: bool = Field(True, description="keep the mapping network (w means the same as in the base)")
    ema_kimg: float = Field(10.0, gt=0.0, description="half-life of the EMA generator in thousands of images")
    validation_images: int = Field(8, ge=1, le=16)

    @field_validator("out")
    @classmethod
    def _format(cls, value: Path) -> Path:
        if value.suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"must end in {', '.join(OUTPUT_SUFFIXES)} (got {value.name})")
        return value

    def work_dir(self) -> Path:
        """Checkpoints and grids: a folder beside the output, named after it, never a link followed."""
        from factory.files import refuse_link

        return refuse_link(self.out.parent / f"{self.out.stem}-adapt")

    def optional_paths(self) -> tuple[str, ...]:
        return ("discriminator",)

    def build(self, field: FieldName) -> "StyleGAN2Adaptation":
        return StyleGAN2Adaptation(self, field)


def check_export(staging: Path, out: Path, parts: dict) -> None:
    """The written file reads back (weights only) with every tensor of every part at its shape; else a
    UserError names ``out`` (and the temporary file is removed, ``out`` left as it was)."""
    from factory.errors import ModelLoadError, UserError
    from factory.models.stylegan2 import _part, read_checkpoint

    try:
        checkpoint = read_checkpoint(staging)
    except ModelLoadError as exc:
        raise UserError(f"{out}: the adapted weights did not read back ({exc}); not kept") from None
    for name, state in parts.items():
        found = _part(checkpoint, name) or {}
        if {k: tuple(v.shape) for k, v in found.items()} != {k: tuple(v.shape) for k, v in state.items()}:
            raise UserError(f"{out}: the adapted weights did not read back whole (`{name}` differs); not kept")


def diff_augment(images, policy: list[str], rng):
    """DiffAugment (Zhao et al. 2020) on a [-1, 1] NCHW batch: every op differentiable, draws from ``rng``."""
    import torch
    import torch.nn.functional as F

    n, device = images.shape[0], images.device

    def draw(*shape):
        return torch.rand(*shape, generator=rng).to(device, images.dtype)

    if "color" in policy:
        images = images + (draw(n, 1, 1, 1) - 0.5) * 2  # brightness (the [0, 1] recipe scaled to [-1, 1])
        mean = images.mean(1, keepdim=True)
        images = (images - mean) * (draw(n, 1, 1, 1) * 2) + mean  # saturation
        mean = images.mean([1, 2, 3], keepdim=True)
        images = (images - mean) * (draw(n, 1, 1, 1) + 0.5) + mean  # contrast
    if "translation" in policy:  # shift by up to 1/8 of the side, zeros coming in
        shift = (draw(n, 2) * 2 - 1) * 0.25
        theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if "cutout" in policy:  # a square of half the side zeroed
        size = images.shape[-1]
        ys = torch.arange(size, device=device).view(1, size, 1)
        xs = torch.arange(size, device=device).view(1, 1, size)
        centre = (draw(n, 2) * size).view(n, 2, 1, 1)
        inside = ((ys - centre[:, 0]).abs() < size / 4) & ((xs - centre[:, 1]).abs() < size / 4)
        images = images * (~inside).unsqueeze(1).to(images.dtype)
    return images


def square_faces(config: StyleGAN2AdaptConfig, field: FieldName, size: int) -> list[np.ndarray]:
    """The examples resized to the generator's size; they must be square (aligned face crops)."""
    import cv2

    examples = read_examples(config.images, field("images"))
    odd = [f"{e.path.name} ({e.image.shape[1]}x{e.image.shape[0]})" for e in examples
           if e.image.shape[0] != e.image.shape[1]]
    if odd:
        raise UserError(f"{field('images')}: {config.images}: not square: {', '.join(odd[:5])}"
                        f"{' ...' if len(odd) > 5 else ''}; StyleGAN2 learns aligned square face crops of one framing")
    return [cv2.resize(e.image, (size, size), interpolation=cv2.INTER_AREA if e.image.shape[0] > size
                       else cv2.INTER_CUBIC) for e in examples]


class StyleGAN2Adaptation(Adaptation):
    """The GAN loop of stylegan2-pytorch's train.py, cut down for few-shot fine-tuning."""

    def __init__(self, config: StyleGAN2AdaptConfig, field: FieldName):
        import torch

        from factory.models import stylegan2
        from factory.models.tensors import images_to_tensor, load_matching

        super().__init__(config, field)
        base = stylegan2.load_generator(config.base)
        self.generator = base.train().requires_grad_(True)
        self.g_ema = copy.deepcopy(base).eval().requires_grad_(False)
        self.discriminator = self.load_discriminator(base, stylegan2, load_matching)
        faces = square_faces(config, field, base.size)
        self.reals = images_to_tensor(faces, torch.device("cpu"))
        frozen = self.discriminator.convs[:config.freeze_discriminator]
        frozen.requires_grad_(False)
        if config.freeze_mapping:
            self.generator.style.requires_grad_(False)
        ratio = config.d_reg_every / (config.d_reg_every + 1)  # lazy regularization, as stylegan2-pytorch
        opt_g = torch.optim.Adam([p for p in self.generator.parameters() if p.requires_grad], lr=config.lr,
                                 betas=(0.0, 0.99))
        opt_d = torch.optim.Adam([p for p in self.discriminator.parameters() if p.requires_grad],
                                 lr=config.lr * ratio, betas=(0.0, 0.99**ratio))
        self.generator, self.discriminator, self.opt_g, self.opt_d = self.accelerator.prepare(
            self.generator, self.discriminator, opt_g, opt_d)
        self.g_ema.to(self.device)
        self.ema_decay = 0.5 ** (config.batch_size / (config.ema_kimg * 1000))
        self.fixed = torch.randn(config.validation_images, base.style_dim,
                                 generator=torch.Generator().manual_seed(config.seed))
        log.info("StyleGAN2 adaptation: %d faces at %d px, discriminator blocks frozen: %d", len(faces), base.size,
                 len(frozen))

    def load_discriminator(self, base, stylegan2, load_matching):
        """The discriminator of ``config.discriminator`` or the base checkpoint, else a fresh one."""
        config = self.config
        source = config.discriminator or config.base
        state = stylegan2.read_discriminator_state(source)
        if state is None:
            if config.discriminator is not None:
                raise ModelLoadError(source, f"{self.field('discriminator')}: holds no discriminator (`d`)")
            log.warning("%s holds no discriminator; starting from a random one (expect a longer fine-tune)", source)
            return stylegan2.Discriminator(base.size, base.channels).train()
        try:
            discriminator = stylegan2.Discriminator(**stylegan2.discriminator_architecture(state))
        except (KeyError, IndexError, ValueError) as exc:
            raise ModelLoadError(source, f"cannot read the discriminator's architecture ({exc})") from None
        if discriminator.size != base.size:
            raise ModelLoadError(source, f"its discriminator sees {discriminator.size} px, the generator makes "
                                         f"{base.size} px")
        load_matching(discriminator, state, Path(source), "a stylegan2-pytorch discriminator (`d`)")
        return discriminator.train()

    # -- one step -------------------------------------------------------------------------------

    def latents(self, n: int):
        """w+ for ``n`` images, two styles mixed at a random layer with probability ``mixing``."""
        import torch

        g = self.accelerator.unwrap_model(self.generator)
        z = torch.randn(2, n, g.style_dim, generator=self.rng).to(self.device)
        w = g.mapping(z.view(2 * n, -1)).view(2, n, 1, -1).expand(-1, -1, g.n_latent, -1)
        if float(torch.rand(1, generator=self.rng)) >= self.config.mixing:
            return w[0]
        cut = int(torch.randint(1, g.n_latent, (1,), generator=self.rng))
        return torch.cat([w[0, :, :cut], w[1, :, cut:]], 1)

    def fakes(self, n: int):
        import torch

        g = self.accelerator.unwrap_model(self.generator)
        noise = [torch.randn(n, *shape[1:], generator=self.rng).to(self.device) for shape in g.noise_shapes()]
        return g.synthesis(self.latents(n), noise)

    def real_batch(self):
        import torch

        picks = torch.randint(len(self.reals), (self.config.batch_size,), generator=self.rng)
        return self.reals[picks].to(self.device)

    def judge(self, images):
        return self.discriminator(diff_augment(images, self.config.augment, self.rng))

    def train_step(self) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        config, n = self.config, self.config.batch_size
        reals = self.real_batch()
        with torch.no_grad():
            fakes = self.fakes(n)
        loss_d = F.softplus(-self.judge(reals)).mean() + F.softplus(self.judge(fakes)).mean()
        self.update(loss_d, self.opt_d)
        losses = {"d": float(loss_d.detach())}
        if config.r1 > 0 and self.step % config.d_reg_every == 0:
            reals = reals.detach().requires_grad_(True)
            scores = self.judge(reals)
            (grad,) = torch.autograd.grad(scores.sum(), reals, create_graph=True)
            penalty = grad.pow(2).flatten(1).sum(1).mean()
            self.update(config.r1 / 2 * penalty * config.d_reg_every, self.opt_d)
            losses["r1"] = float(penalty.detach())

        plain_d = self.accelerator.unwrap_model(self.discriminator)
        plain_d.requires_grad_(False)
        loss_g = F.softplus(-plain_d(diff_augment(self.fakes(n), config.augment, self.rng))).mean()
        self.update(loss_g, self.opt_g)
        plain_d.requires_grad_(True)
        plain_d.convs[:config.freeze_discriminator].requires_grad_(False)
        losses["g"] = float(loss_g.detach())

        with torch.no_grad():
            trained = self.accelerator.unwrap_model(self.generator).state_dict()
            for name, tensor in self.g_ema.state_dict().items():
                if tensor.is_floating_point() and not name.startswith("noises."):
                    tensor.lerp_(trained[name], 1 - self.ema_decay)
        return losses

    def update(self, loss, optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        optimizer.step()

    # -- validation, checkpoints, output ----------------------------------------------------------

    def samples(self) -> list[np.ndarray]:
        import torch

        from factory.models.tensors import tensor_to_images

        with torch.no_grad():
            mean = self.g_ema.mean_latent(1024, seed=self.config.seed)
            w = mean + 0.7 * (self.g_ema.mapping(self.fixed.to(self.device)) - mean)
            return tensor_to_images(self.g_ema.synthesis(w))

    def tensors(self) -> dict:
        unwrap = self.accelerator.unwrap_model
        parts = {"g": unwrap(self.generator), "g_ema": self.g_ema, "d": unwrap(self.discriminator)}
        return {f"{name}.{key}": t for name, module in parts.items() for key, t in module.state_dict(keep_vars=True).items()}

    def optimizers(self) -> dict:
        return {"g": self.opt_g, "d": self.opt_d}

    def export(self) -> None:
        """``g_ema`` and ``d`` as tensors only, replacing the output in one rename."""
        import torch

        from factory.files import save_tensors, staged

        out = Path(self.config.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        parts = {"g_ema": self.g_ema.state_dict(),
                 "d": self.accelerator.unwrap_model(self.discriminator).state_dict()}
        with staged(out) as staging:
            if out.suffix == ".safetensors":
                save_tensors({f"{name}.{k}": v.detach().cpu().contiguous() for name, state in parts.items()
                              for k, v in state.items()}, staging)
            else:  # a plain dict of tensors: torch.load(weights_only=True) reads it, stylegan2-pytorch too
                buffer = io.BytesIO()  # torch's own writer reports a full disk as a RuntimeError; a write names it
                torch.save({name: {k: v.detach().cpu() for k, v in state.items()} for name, state in parts.items()},
                           buffer)
                with open(staging, "r+b") as handle:
                    handle.write(buffer.getbuffer())
            check_export(staging, out, parts)  # it takes its name only once it reads back whole
