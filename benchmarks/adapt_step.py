"""Seconds per adaptation step (and peak CUDA memory) for the LoRA and StyleGAN2 fine-tunes.

Random weights, built here: ``--scale tiny`` (the test models, a CPU smoke figure only) or
``--scale full`` (an SD-1.5-sized pipeline at 512 px with fp16 and gradient checkpointing off/on,
and a 256 px config-f StyleGAN2; meant for a GPU). The first steps are warm-up and not timed.

    python benchmarks/adapt_step.py --scale tiny --steps 5
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapt.lora import LoraAdaptConfig, LoraAdaptation  # noqa: E402
from adapt.stylegan2 import StyleGAN2AdaptConfig, StyleGAN2Adaptation  # noqa: E402
from adapt.training import recipe_field  # noqa: E402
from factory.models import stylegan2  # noqa: E402


def tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    letters = string.ascii_lowercase + string.digits
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *[c + "</w>" for c in letters]]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def sd_pipeline(root: Path, full: bool) -> Path:
    """A random Stable Diffusion pipeline: SD-1.5's shapes, or the tests' tiny one."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tokenizer(root / "tok")
    if full:
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2,
                            sample_size=512)
        text = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, max_position_embeddings=77)
    else:
        unet = UNet2DConditionModel(sample_size=32, block_out_channels=(16, 32), layers_per_block=1,
                                    cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        vae = AutoencoderKL(block_out_channels=[16, 32], down_block_types=["DownEncoderBlock2D"] * 2,
                            up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=8)
        text = CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=77)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(text), tokenizer=tok, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(root / "sd")
    return root / "sd"


def faces(folder: Path, count: int, size: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def timed(trainer, warmup: int, steps: int) -> tuple[float, float | None]:
    for _ in range(warmup):
        trainer.train_step()
        trainer.step += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
        trainer.step += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return (time.perf_counter() - began) / steps, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    full = args.scale == "full"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        resolution = 512 if full else 32
        images = faces(root / "faces", 8, resolution)
        base = sd_pipeline(root, full)
        for checkpointing in ([False, True] if full else [False]):
            config = LoraAdaptConfig(images=images, base=base, out=root / f"lora{checkpointing}", resolution=resolution,
                                     gradient_checkpointing=checkpointing, validate_every=0, device=device)
            seconds, peak = timed(LoraAdaptation(config, recipe_field), args.warmup, args.steps)
            rows.append((f"LoRA r4 {'SD-1.5 shapes' if full else 'tiny'}", resolution, config.mixed_precision
                         if device == "cuda" else "no", "on" if checkpointing else "off", seconds, peak, seconds * 500))
            if device == "cuda":
                torch.cuda.empty_cache()
        size = 256 if full else 32
        channels = stylegan2.rosinality_channels(size) if full else stylegan2.rosinality_channels(32, 1, 16)
        generator = stylegan2.Generator(size, style_dim=512 if full else 16, n_mlp=8 if full else 2, channels=channels)
        torch.save({"g_ema": generator.state_dict()}, root / "g.pt")
        config = StyleGAN2AdaptConfig(images=faces(root / "toons", 8, size), base=root / "g.pt",
                                      out=root / "toon.safetensors", validate_every=0, device=device)
        seconds, peak = timed(StyleGAN2Adaptation(config, recipe_field), args.warmup, args.steps)
        rows.append((f"StyleGAN2 {'config-f' if full else 'tiny'} batch {config.batch_size}", size, "no", "-",
                     seconds, peak, seconds * 500))
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, torch threads "
          f"{torch.get_num_threads()}, {args.steps} timed steps after {args.warmup} warm-up")
    print("| model | px | precision | grad ckpt | s / step | peak GiB | 500 steps (min) |")
    print("|---|---|---|---|---|---|---|")
    for name, px, precision, ckpt, seconds, peak, total in rows:
        shown = f"{peak:.2f}" if peak is not None else "-"
        print(f"| {name} | {px} | {precision} | {ckpt} | {seconds:.3f} | {shown} | {total / 60:.1f} |")


if __name__ == "__main__":
    main()
