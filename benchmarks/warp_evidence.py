"""Warp evidence on a folder of faces: re-detected landmarks vs the profile's target, forward∘inverse
error, and folds over strengths 0..1. Prints a table.

    python benchmarks/warp_evidence.py ../shared/assets/faces/deepface --direction forward
    python benchmarks/warp_evidence.py ../shared/assets/webtoon/characters --direction inverse
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from factory.faces import build_detector
from factory.images import IMAGE_SUFFIXES, read_image
from factory.stages.warp import face68
from warping import landmarks as lm
from warping.profile import load_profile
from warping.warp import build_warp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--direction", choices=["forward", "inverse"], default="forward")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--method", choices=["tps", "pa"], default="tps")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--exclude", nargs="*", default=["jisoo.jpg", "yooa.jpg", "paint_boy.jpg"])
    args = parser.parse_args()
    profile = load_profile(args.profile)
    detector = build_detector("mediapipe", min_size=16)
    before, after, lost, round_trip, folds, shrunk, faces = [], [], 0, [], 0, 0, 0
    for path in sorted(args.folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name in args.exclude:
            continue
        image = read_image(path)
        scale = args.size / max(image.shape[:2])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        points = face68(image, detector)
        if points is None:
            continue
        faces += 1
        for strength in np.linspace(0.1, 1.0, 10):
            for method in ("tps", "pa"):
                warp = build_warp(points, profile.target(points, args.direction, strength), image.shape[:2], method)
                folds += int(warp.jacobian_determinant().min() <= 0)
                shrunk += int(warp.scale < 1)
        target = profile.target(points, args.direction, 1.0)
        warp = build_warp(points, target, image.shape[:2], args.method)
        warped = warp.apply(image)
        again = face68(warped, detector)
        unit = lm.eye_distance(target)
        if again is None:
            lost += 1
        else:
            before.append(np.linalg.norm(points - target, axis=1).mean() / unit)
            after.append(np.linalg.norm(again - target, axis=1).mean() / unit)
        back = build_warp(warp.dst, warp.src, image.shape[:2], args.method).apply(warped)
        moved = np.abs(warp.displacement).max(-1) > 0.5
        round_trip.append(np.abs(back.astype(int) - image)[moved].mean())
    print(f"folder {args.folder} ({args.direction}, {args.method}, {args.size} px): {faces} faces with landmarks")
    print(f"{'mean normalised landmark error to target, before':55s} {np.mean(before):.4f}")
    print(f"{'  after the warp (landmarks re-detected)':55s} {np.mean(after):.4f}  ({lost} faces lost)")
    print(f"{'forward then inverse, mean abs error (grey levels)':55s} {np.mean(round_trip):.2f}")
    print(f"{'warps with a fold (strengths 0.1..1, tps+pa)':55s} {folds} of {faces * 20}")
    print(f"{'warps the fold guard shrank':55s} {shrunk} of {faces * 20}")


if __name__ == "__main__":
    main()
