"""Images per second of the student: PyTorch vs ONNX Runtime on the CPU, and the GPU when present.

Also the student's achieved FLOP/s as a share of the machine's fp32 matrix-multiply rate, measured
in the same run with a large ``torch.matmul``. Random weights: speed does not depend on them.

    .venv/bin/python benchmarks/distill_speed.py [--ngf 32 64] [--sizes 256 512] [--batches 1 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.config import StudentConfig
from distill.models import UNetGenerator


def conv_flops(model: nn.Module, size: int) -> float:
    """Multiply-adds × 2 of the convolutions for one image of side ``size``."""
    total = 0.0

    def count(module, inputs, output):
        nonlocal total
        weight = module.weight
        if isinstance(module, nn.ConvTranspose2d):
            spatial = inputs[0].shape[-2] * inputs[0].shape[-1]
        else:
            spatial = output.shape[-2] * output.shape[-1]
        total += 2.0 * weight.numel() * spatial

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total


def timed(run, warmup: int, seconds: float, sync=lambda: None) -> float:
    """Seconds per call: a few warm-up calls, then as many as fit in ``seconds`` (at least 3)."""
    for _ in range(warmup):
        run()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    sync()
    return (time.perf_counter() - start) / calls


def matmul_rate(device: str, dtype=torch.float32, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return 2 * n**3 / timed(lambda: a @ b, 2, 1.0, sync)


def onnx_session(model: nn.Module, size: int, threads: int):
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp()) / "student.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"], dynamic_axes={"input": axes, "output": axes})
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = ["CUDAExecutionProvider"] if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers() else []
    return ort.InferenceSession(str(path), options, providers=providers + ["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ngf", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--depth", type=int, default=5, help="U-Net levels (distill default 5; pix2pix unet_256 uses 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per row")
    args = parser.parse_args()
    threads = torch.get_num_threads()

    rows = []
    rates = {"cpu": matmul_rate("cpu")}
    if torch.cuda.is_available():
        rates["cuda"] = matmul_rate("cuda")
    for ngf in args.ngf:
        model = UNetGenerator(StudentConfig(ngf=ngf, depth=args.depth)).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for size in args.sizes:
            flops = conv_flops(model, size)
            session = onnx_session(model, size, threads)
            for batch in args.batches:
                x = torch.rand(batch, 3, size, size) * 2 - 1
                x_np = x.numpy()
                with torch.inference_mode():
                    cpu = timed(lambda: model(x), 1, args.seconds)
                rows.append(("pytorch cpu fp32", ngf, params, size, batch, cpu, flops, "cpu"))
                ort_s = timed(lambda: session.run(None, {"input": x_np}), 1, args.seconds)
                rows.append((f"onnxruntime {session.get_providers()[0].removesuffix('ExecutionProvider').lower()}",
                             ngf, params, size, batch, ort_s, flops, "cuda" if "CUDA" in session.get_providers()[0] else "cpu"))
                if torch.cuda.is_available():
                    gpu_model = UNetGenerator(StudentConfig(ngf=ngf, depth=args.depth)).eval().cuda()
                    for label, dtype, channels_last in [("fp32", torch.float32, False), ("fp16 channels_last", torch.float16, True)]:
                        m = gpu_model.to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                        xg = x.cuda().to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                        with torch.inference_mode():
                            t = timed(lambda: m(xg), 3, args.seconds, torch.cuda.synchronize)
                        rows.append((f"pytorch cuda {label}", ngf, params, size, batch, t, flops, "cuda"))

    print(f"fp32 matmul: cpu {rates['cpu'] / 1e9:.1f} GFLOP/s" + (f", cuda {rates['cuda'] / 1e12:.1f} TFLOP/s" if "cuda" in rates else "")
          + f"; {threads} CPU threads")
    print(f"{'backend':<28}{'ngf':>4}{'M params':>9}{'px':>5}{'batch':>6}{'img/s':>9}{'ms/img':>9}{'GFLOP/img':>10}{'% matmul':>9}")
    for backend, ngf, params, size, batch, seconds, flops, device in rows:
        per_image = seconds / batch
        share = 100 * flops / per_image / rates[device]
        print(f"{backend:<28}{ngf:>4}{params:>9.2f}{size:>5}{batch:>6}{1 / per_image:>9.2f}{1000 * per_image:>9.1f}"
              f"{flops / 1e9:>10.1f}{share:>8.0f}%")


if __name__ == "__main__":
    main()
