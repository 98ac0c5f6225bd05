"""Warp speed: ms per 512×512 remap with a precomputed map on one CPU core, map build cost,
and batched grid_sample throughput on a GPU when one is present. Prints a table.

    python benchmarks/warp_speed.py [--size 512] [--repeats 200]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from warping.profile import load_profile
from warping.warp import build_warp


def timed(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    size = args.size
    profile = load_profile().with_knobs(eye_scale=1.2, chin_width=0.9)
    points = profile.mean_real * size / 5 + [size / 2, size * 0.42]
    target = profile.target(points, "forward", 1.0)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rows = []
    for method in ("tps", "pa"):
        build_ms = timed(lambda: build_warp(points, target, (size, size), method), max(3, args.repeats // 20))
        warp = build_warp(points, target, (size, size), method)
        warp.fixed_maps()
        map_x, map_y = warp.maps()
        rows.append((f"{method} build map", build_ms))
        rows.append((f"{method} remap fixed-point map", timed(lambda: warp.apply(image), args.repeats)))
        rows.append((f"{method} remap float map", timed(
            lambda: cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101), args.repeats)))
    print(f"{'step (' + str(size) + 'x' + str(size) + ', 1 CPU thread)':40s} {'ms':>8s}")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.2f}")
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        print("no GPU: batched grid_sample skipped")
        return
    import torch.nn.functional as F

    def remap(images, grids):
        return F.grid_sample(images, grids, padding_mode="border", align_corners=True)

    for batch in (16, 64):
        grids = torch.from_numpy(np.stack([warp.grid()] * batch).astype(np.float32)).cuda()
        images = torch.rand(batch, 3, size, size, device="cuda")
        for _ in range(3):
            remap(images, grids)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(50):
            remap(images, grids)
        torch.cuda.synchronize()
        per = (time.perf_counter() - start) / 50
        print(f"{'gpu grid_sample batch ' + str(batch):40s} {per * 1000:8.2f}  ({batch / per:,.0f} images/s, {torch.cuda.get_device_name()})")


if __name__ == "__main__":
    main()
