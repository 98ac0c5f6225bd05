"""Seconds per pair for each neural teacher, with models at their real sizes (random weights cost the
same as trained ones), at 256 and 512 px, on the CPU (and on CUDA when available); and milliseconds per
pair for the ``webtoon`` teacher on one thread.

Usage: python benchmarks/teacher_cost.py [--device cpu|cuda] [--sizes 256 512] [--skip sd stylegan2 ...]
       python benchmarks/teacher_cost.py --skip cartoongan stylegan2 sd [--webtoon-baseline main]

Stable Diffusion is too slow on a CPU to run whole: its components are timed once each (text
encoder, VAE encode, one UNet step with classifier-free guidance, one ControlNet step, VAE decode)
and the per-pair cost is *extrapolated* to the steps an img2img recipe runs (steps × strength).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch

CARTOONGAN_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "models" / "cartoongan_hayao"
REPO = Path(__file__).resolve().parents[1]


def timed(fn, device: torch.device, repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls (after synchronizing CUDA)."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def bench_cartoongan(sizes, device, dtype, repeats):
    from factory.teachers.cartoongan import build_generator, load_generator

    real = CARTOONGAN_WEIGHTS.is_dir()
    generator = (load_generator(CARTOONGAN_WEIGHTS) if real else build_generator().eval()).to(device, dtype)
    rows = []
    for size in sizes:
        x = torch.rand(1, 3, size, size, device=device, dtype=dtype) * 2 - 1
        timed(lambda: generator(x), device)  # warm-up
        rows.append(("cartoongan (11.1 M)", size, timed(lambda: generator(x), device, repeats),
                     "one forward" + ("" if real else ", random weights")))
    return rows


def bench_stylegan2(resolutions, device, dtype, repeats):
    from factory.models.stylegan2 import Generator, rosinality_channels

    rows = []
    for res in resolutions:
        generator = Generator(res, 512, 8, rosinality_channels(res, 2)).eval().to(device, dtype)
        params = sum(p.numel() for p in generator.parameters()) / 1e6
        w = generator.mapping(torch.randn(1, 512, device=device, dtype=dtype))
        timed(lambda: generator.synthesis(w), device)  # warm-up
        seconds = timed(lambda: generator.synthesis(w), device, repeats)
        rows.append((f"stylegan2+toonify {res} ({params:.0f} M)", res, 2 * seconds,
                     f"2 syntheses (base + blended) at {res} px, {seconds:.2f} s each; crop to 256/512 is free"))
        del generator
    return rows


def sd15_models(device, dtype):
    """Stable Diffusion 1.5-sized UNet, ControlNet, VAE and CLIP text encoder with random weights."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    controlnet = ControlNetModel.from_unet(unet)
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, vocab_size=49408))
    models = [m.eval().to(device) for m in (unet, controlnet, vae, text)]
    return [m.to(dtype) for m in models] if dtype != torch.float32 else models


def bench_sd(sizes, device, dtype, steps: int, strength: float):
    unet, controlnet, vae, text = sd15_models(device, dtype)
    millions = sum(p.numel() for p in unet.parameters()) / 1e6
    rows = []
    ids = torch.randint(0, 49408, (2, 77), device=device)  # prompt + negative prompt
    text_s = timed(lambda: text(ids), device)
    context = text(ids)[0]
    for size in sizes:
        image = torch.rand(1, 3, size, size, device=device, dtype=dtype) * 2 - 1
        latents = torch.randn(2, 4, size // 8, size // 8, device=device, dtype=dtype)  # CFG doubles the batch
        cond = torch.rand(2, 3, size, size, device=device, dtype=dtype)
        t = torch.tensor([500], device=device)
        encode_s = timed(lambda: vae.encode(image).latent_dist.mode(), device)
        unet_s = timed(lambda: unet(latents, t, context), device)

        def control_step():
            down, mid = controlnet(latents, t, context, controlnet_cond=cond, return_dict=False)
            unet(latents, t, context, down_block_additional_residuals=down, mid_block_additional_residual=mid)

        control_s = timed(control_step, device)
        decode_s = timed(lambda: vae.decode(latents[:1]).sample, device)
        run_steps = max(1, int(steps * strength))
        fixed = text_s + encode_s + decode_s
        rows.append((f"sd1.5 img2img ({millions:.0f} M UNet)", size, fixed + run_steps * unet_s,
                     f"EXTRAPOLATED: {run_steps} steps x {unet_s:.2f} s/step (measured 1) + text/VAE {fixed:.2f} s"))
        rows.append(("sd1.5 img2img + 1 ControlNet", size, fixed + run_steps * control_s,
                     f"EXTRAPOLATED: {run_steps} steps x {control_s:.2f} s/step (measured 1) + text/VAE {fixed:.2f} s"))
    return rows


def module_at(revision: str, path: str, name: str, replace: tuple[str, str] | None = None):
    """The module ``path`` as it was at git ``revision``, imported as ``name`` (``replace``: one edit of its source)."""
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout
    if replace:
        source = source.replace(*replace)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module
    exec(compile(source, f"{revision}:{path}", "exec"), module.__dict__)
    return module


def bench_webtoon(sizes, repeats: int, baseline: str | None, faces: int = 10):
    """ms per pair of the ``webtoon`` teacher's drawing (mask and mesh given) on one thread, on ``faces`` of
    ``toon_likeness.py``'s held-out photos scaled to each size: per face the best of ``repeats``, the mean
    over faces, wall and CPU time; ``baseline`` (a git revision) is timed interleaved, in the same run."""
    import cv2
    import numpy as np
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toon_likeness import ASSETS, aligned_folder

    from factory.stages.segment import MediapipeMasker
    from factory.teachers import webtoon

    cv2.setNumThreads(1)
    threadpool_limits(1)
    torch.set_num_threads(1)
    root = ASSETS / "faces"
    files = sorted(root.glob("deepface/*.jpg")) + sorted(
        p for p in (root / "face_recognition").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
        and "edge_cases" not in p.parts)
    photos = aligned_folder(files)[1::2][:faces]
    masker = MediapipeMasker()
    teachers = {"webtoon": webtoon}
    if baseline:
        module_at(baseline, "factory/teachers/glasses.py", "baseline_glasses")
        teachers[f"webtoon at {baseline}"] = module_at(
            baseline, "factory/teachers/webtoon.py", "baseline_webtoon",
            ("from factory.teachers.glasses import", "from baseline_glasses import"))
    config = webtoon.WebtoonConfig(kind="webtoon").build()
    rows = []
    for size in sizes:
        times = {name: ([], []) for name in teachers}
        for i, (_, crop, points) in enumerate(photos):
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if size < 256 else cv2.INTER_CUBIC)
            points = points * size / 256
            person = masker(crop)
            params = config.draw_parameters(np.random.default_rng(i))
            best = {name: [np.inf, np.inf] for name in teachers}
            for _ in range(repeats + 1):  # the first call of each warms up
                for name, module in teachers.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    module.draw_webtoon(crop, points, person, params, config.style)
                    best[name][0] = min(best[name][0], time.perf_counter() - wall)
                    best[name][1] = min(best[name][1], time.process_time() - cpu)
            for name in teachers:
                times[name][0].append(best[name][0])
                times[name][1].append(best[name][1])
        for name, (wall, cpu) in times.items():
            rows.append((name, size, 1000 * float(np.mean(wall)), 1000 * float(np.mean(cpu))))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--stylegan-resolutions", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--sd-steps", type=int, default=30)
    parser.add_argument("--sd-strength", type=float, default=0.6)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per cheap measurement (best kept)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cartoongan", "stylegan2", "sd", "webtoon"])
    parser.add_argument("--webtoon-baseline", default=None,
                        help="git revision whose webtoon teacher is timed beside this one (interleaved)")
    parser.add_argument("--webtoon-repeats", type=int, default=5, help="timed drawings per face (best kept)")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    rows = []
    if "cartoongan" not in args.skip:
        rows += bench_cartoongan(args.sizes, device, dtype, args.repeats)
    if "stylegan2" not in args.skip:
        rows += bench_stylegan2(args.stylegan_resolutions, device, dtype, args.repeats)
    if "sd" not in args.skip:
        rows += bench_sd(args.sizes, device, dtype, args.sd_steps, args.sd_strength)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"teacher cost per pair on {name}, {dtype}, batch 1")
    print(f"{'teacher':44} {'px':>5} {'s/pair':>9}  how")
    for teacher, size, seconds, how in rows:
        print(f"{teacher:44} {size:>5} {seconds:>9.2f}  {how}")
    if "webtoon" not in args.skip:
        webtoon_rows = bench_webtoon(args.sizes, args.webtoon_repeats, args.webtoon_baseline)
        print(f"\nwebtoon teacher, one thread, ms per pair (10 held-out faces, best of {args.webtoon_repeats} each, "
              "mean); CPU time is what a busy machine measures best")
        print(f"{'teacher':44} {'px':>5} {'wall ms':>9} {'CPU ms':>9} {'vs first':>9}")
        first = {}
        for teacher, size, wall, cpu in webtoon_rows:
            first.setdefault(size, cpu)
            print(f"{teacher:44} {size:>5} {wall:>9.0f} {cpu:>9.0f} {cpu / first[size]:>9.2f}")


if __name__ == "__main__":
    main()
