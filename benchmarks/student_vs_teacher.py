"""The student next to the Stable Diffusion img2img teacher, in one run: images per second, speed-up, and the
student's achieved FLOP/s as a share of the machine's fp32 matrix-multiply rate (a large ``torch.matmul``).

Random weights everywhere (the cost does not depend on them). The teacher is a diffusers
``StableDiffusionImg2ImgPipeline`` with SD 1.5-sized UNet (860 M), VAE and CLIP text encoder built from
configs, DDIM, classifier-free guidance, ``--sd-steps`` × ``--sd-strength`` denoising steps. On a CPU the
whole run would take many minutes per image, so the pipeline runs with ``--sd-measured-steps`` real
denoising steps; the UNet's time per step is measured inside that call and the cost of the full schedule is
EXTRAPOLATED as (everything but the UNet) + steps × (UNet per step). The table says so on that row.

Student backends: PyTorch fp32 as trained, PyTorch with BatchNorm folded and channels_last, ONNX Runtime (the
export path: BatchNorm folded). With CUDA: fp32, fp16 channels_last, fp16 + torch.compile, ONNX Runtime
CUDA and TensorRT (through onnxruntime's TensorRT provider) when installed.

    .venv/bin/python benchmarks/student_vs_teacher.py [--ngf 32 64] [--sizes 256 512] [--batches 1 16]
"""

from __future__ import annotations

import argparse
import copy
import json
import string
import tempfile
import time
from pathlib import Path

import torch

from distill.config import StudentConfig
from distill.export import export_onnx
from distill.models import UNetGenerator, for_inference
from distill_speed import conv_flops, matmul_rate, timed  # benchmarks/ is on sys.path when run as a script


def letter_tokenizer(folder: Path):
    """A CLIP tokenizer over single letters; the text encoder keeps SD's real vocabulary size and cost."""
    from transformers import CLIPTokenizer

    letters = string.ascii_lowercase + string.digits
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *[c + "</w>" for c in letters]]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def sd15_img2img(device: torch.device, dtype: torch.dtype):
    """StableDiffusionImg2ImgPipeline with SD 1.5-sized components and random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextConfig, CLIPTextModel

    diffusers_logging.set_verbosity_error()  # random-weight components: skip the dtype/config advice

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, vocab_size=49408,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text, tokenizer=letter_tokenizer(Path(tempfile.mkdtemp())),
                                          unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def teacher_seconds(pipe, size: int, steps: int, strength: float, measured_steps: int) -> tuple[float, str]:
    """Seconds per image of the full img2img schedule, and how that figure was obtained."""
    from PIL import Image

    device = pipe.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    unet_time, unet_calls = [0.0], [0]

    def before(module, args, kwargs):
        sync()
        module._started = time.perf_counter()

    def after(module, args, kwargs, output):
        sync()
        unet_time[0] += time.perf_counter() - module._started
        unet_calls[0] += 1

    full_steps = int(steps * strength)
    run_steps = min(measured_steps, full_steps)
    image = Image.new("RGB", (size, size), (128, 100, 90))
    hooks = [pipe.unet.register_forward_pre_hook(before, with_kwargs=True),
             pipe.unet.register_forward_hook(after, with_kwargs=True)]
    try:
        # strength chosen so that int(steps * strength) == run_steps on the same 20-step DDIM schedule
        call = dict(prompt="webtoon portrait", negative_prompt="blurry", image=image, num_inference_steps=steps,
                    strength=(run_steps + 0.5) / steps, guidance_scale=7.5, output_type="np")
        with torch.inference_mode():
            if device.type == "cuda":
                pipe(**{**call, "strength": 1.5 / steps})  # warm-up (kernel selection), one step
            unet_time[0], unet_calls[0] = 0.0, 0
            sync()
            start = time.perf_counter()
            pipe(**call)
            sync()
        total = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    per_step = unet_time[0] / unet_calls[0]
    fixed = total - unet_time[0]
    if run_steps == full_steps:
        return total, f"measured: {full_steps} steps, CFG batch 2"
    return fixed + full_steps * per_step, (f"EXTRAPOLATED: {fixed:.1f} s text+VAE+scheduler + {full_steps} x {per_step:.2f} s "
                                           f"UNet/step (measured {run_steps} of {full_steps} steps)")


def student_backends(model: UNetGenerator, size: int, device: torch.device, threads: int):
    """(label, device kind, callable taking an NCHW float32 CPU tensor) for each way to run the student."""
    import onnxruntime as ort

    folder = Path(tempfile.mkdtemp())
    record = {"architecture": "pix2pix-unet", "student": model.config.model_dump(), "size": size}
    export_onnx(model, record, folder / "student.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    available = ort.get_available_providers()

    def session(provider: str):
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        return ort.InferenceSession(str(folder / "student.onnx"), options, providers=providers)

    fused_cl = for_inference(model).to(memory_format=torch.channels_last)
    cpu_session = session("CPUExecutionProvider")
    backends = [
        ("pytorch fp32", "cpu", lambda x: model(x)),
        ("pytorch fp32 for_inference channels_last", "cpu", lambda x: fused_cl(x.contiguous(memory_format=torch.channels_last))),
        ("onnxruntime cpu (for_inference)", "cpu", lambda x: cpu_session.run(None, {"input": x.numpy()})),
    ]
    if device.type != "cuda":
        return backends
    gpu = copy.deepcopy(model).to(device)
    half = for_inference(model).to(device, torch.float16, memory_format=torch.channels_last)
    compiled = torch.compile(half)
    backends += [
        ("pytorch cuda fp32", "cuda", lambda x: gpu(x)),
        ("pytorch cuda fp16 channels_last", "cuda", lambda x: half(x.to(torch.float16, memory_format=torch.channels_last))),
        ("pytorch cuda fp16 cl torch.compile", "cuda", lambda x: compiled(x.to(torch.float16, memory_format=torch.channels_last))),
    ]
    for provider, label in [("CUDAExecutionProvider", "onnxruntime cuda"), ("TensorrtExecutionProvider", "onnxruntime tensorrt")]:
        if provider in available:
            gpu_session = session(provider)
            backends.append((label, "cuda", lambda x, s=gpu_session: s.run(None, {"input": x.cpu().numpy()})))
    return backends


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngf", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--large-batch-max", type=int, default=32 * 512,
                        help="on a CPU, skip batches > 1 where ngf × px exceeds this (default: batch 16 at 512 px only for ngf 32)")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per student row (at least 3 calls)")
    parser.add_argument("--sd-steps", type=int, default=20)
    parser.add_argument("--sd-strength", type=float, default=0.6)
    parser.add_argument("--sd-measured-steps", type=int, default=None,
                        help="real denoising steps per teacher call (default: 1 on a CPU, all on a GPU)")
    parser.add_argument("--skip-teacher", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: PyTorch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    threads = torch.get_num_threads()
    rates = {"cpu": [matmul_rate("cpu")]}
    if cuda:
        rates["cuda"] = [matmul_rate("cuda", n=8192)]

    teacher = {}
    if not args.skip_teacher:
        measured = args.sd_measured_steps or (int(args.sd_steps * args.sd_strength) if cuda else 1)
        started = time.perf_counter()
        pipe = sd15_img2img(device, torch.float16 if cuda else torch.float32)
        print(f"SD 1.5-sized img2img pipeline built in {time.perf_counter() - started:.0f} s "
              f"(UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.0f} M parameters)", flush=True)
        for size in args.sizes:
            teacher[size] = teacher_seconds(pipe, size, args.sd_steps, args.sd_strength, measured)
            print(f"teacher {size} px: {teacher[size][0]:.1f} s/image ({teacher[size][1]})", flush=True)
        del pipe

    rows = []
    for ngf in args.ngf:
        model = UNetGenerator(StudentConfig(ngf=ngf, depth=args.depth)).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for size in args.sizes:
            flops = conv_flops(model, size)
            backends = student_backends(model.cpu(), size, device, threads)
            for batch in args.batches:
                if batch > 1 and not cuda and ngf * size > args.large_batch_max:
                    continue
                x = torch.rand(batch, 3, size, size) * 2 - 1
                for label, kind, run in backends:
                    xin = x.to(kind)
                    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
                    with torch.inference_mode():
                        seconds = timed(lambda: run(xin), 2 if kind == "cuda" else 1, args.seconds, sync)
                    rows.append((label, kind, ngf, params, size, batch, seconds / batch, flops))
                print(f"student ngf {ngf} {size} px batch {batch} done", flush=True)
    rates["cpu"].append(matmul_rate("cpu"))

    best = {kind: max(values) for kind, values in rates.items()}
    print(f"\nfp32 matmul (2048², before/after the students): cpu "
          f"{' / '.join(f'{r / 1e9:.1f}' for r in rates['cpu'])} GFLOP/s on {threads} threads"
          + (f"; cuda {best['cuda'] / 1e12:.1f} TFLOP/s (8192²)" if cuda else "")
          + "; shares below use the higher (conservative)")
    where = torch.cuda.get_device_name() if cuda else f"cpu, {threads} threads"
    if teacher:
        print(f"\nteacher: Stable Diffusion 1.5-sized img2img, {args.sd_steps} steps x strength {args.sd_strength}, "
              f"guidance 7.5 (CFG), batch 1, {'fp16' if cuda else 'fp32'} on {where}")
        for size, (seconds, how) in teacher.items():
            print(f"  {size} px: {seconds:8.2f} s/image = {1 / seconds:.4f} img/s   [{how}]")
    print(f"\n{'student backend':<38}{'ngf':>4}{'M par':>7}{'px':>5}{'batch':>6}{'img/s':>9}{'ms/img':>9}"
          f"{'GFLOP/img':>10}{'% matmul':>9}{'x teacher':>11}")
    for label, kind, ngf, params, size, batch, per_image, flops in rows:
        share = 100 * flops / per_image / best[kind]
        speedup = f"{teacher[size][0] / per_image:>11.0f}" if size in teacher else f"{'-':>11}"
        print(f"{label:<38}{ngf:>4}{params:>7.2f}{size:>5}{batch:>6}{1 / per_image:>9.2f}{1000 * per_image:>9.1f}"
              f"{flops / 1e9:>10.2f}{share:>8.0f}%{speedup}")


if __name__ == "__main__":
    main()
