"""Milliseconds per 512 px image for each mask backend and inpainter; prints a table.

SAM runs at its real ViT-B size with random weights (speed does not depend on the weights).

    .venv/bin/python benchmarks/segment_speed.py [--image PATH] [--repeat 5] [--sam-repeat 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np


def portrait(path: Path | None, size: int) -> np.ndarray:
    if path is None:
        from skimage import data

        image = data.astronaut()
    else:
        from factory.images import read_image

        image = read_image(path)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def timed(fn, image, repeat: int) -> tuple[float, float]:
    """(first call, median of the following calls) in milliseconds; the first includes warm-up."""
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        fn(image)
        times.append((time.perf_counter() - start) * 1000.0)
    return times[0], float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=None, help="a portrait (default: skimage astronaut)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sam-repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()

    import torch
    from segment_anything import sam_model_registry

    from factory.faces import shared_detector
    from factory.stages.inpaint import OpenCVInpaintConfig, OpenCVInpainter
    from factory.stages.segment import FaceHullMasker, MediapipeMasker, SamMaskConfig, SamMasker, soften

    if args.threads:
        torch.set_num_threads(args.threads)
    image = portrait(args.image, args.size)
    mask = soften(MediapipeMasker()(image), 0.01)
    detector = shared_detector("mediapipe", 16)

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().to(args.device).eval()
    sam_face = SamMasker(sam, SamMaskConfig(kind="sam", checkpoint=Path("random"), prompt="face"), detector=detector)
    sam_points = SamMasker(sam, SamMaskConfig(kind="sam", checkpoint=Path("random"), prompt="points",
                                              points=[(0.5, 0.4)]))

    rows = [
        ("mask: mediapipe selfie (general)", MediapipeMasker("general"), args.repeat),
        ("mask: mediapipe selfie (landscape)", MediapipeMasker("landscape"), args.repeat),
        ("mask: face_hull (face mesh)", FaceHullMasker(0.05, detector=detector), args.repeat),
        (f"mask: SAM vit_b, face prompt ({args.device})", sam_face, args.sam_repeat),
        (f"mask: SAM vit_b, one point ({args.device})", sam_points, args.sam_repeat),
        ("soften (smoothstep + feather)", lambda im: soften(mask, 0.01), args.repeat),
        ("inpaint: opencv telea, work 256", lambda im: OpenCVInpainter()(im, mask), args.repeat),
        ("inpaint: opencv telea, full 512", lambda im: OpenCVInpainter(OpenCVInpaintConfig(work_size=512))(im, mask),
         args.repeat),
        ("inpaint: opencv ns, work 256", lambda im: OpenCVInpainter(OpenCVInpaintConfig(method="ns"))(im, mask),
         args.repeat),
    ]
    print(f"{args.size}×{args.size} image, torch threads {torch.get_num_threads()}, person mask covers "
          f"{mask.mean():.2f} of it")
    print(f"{'step':44s} {'first ms':>10s} {'median ms':>10s}")
    for name, fn, repeat in rows:
        with torch.inference_mode():
            first, median = timed(fn, image, repeat)
        print(f"{name:44s} {first:10.1f} {median:10.1f}")


if __name__ == "__main__":
    main()
