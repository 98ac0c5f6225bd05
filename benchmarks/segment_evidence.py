"""Mask quality on real portraits, and a contact sheet of image / mask / inpainted background / composites.

For every photo with a detected face: the share of the face box inside the mediapipe person mask
(should be near 1) and of the top and bottom corner patches (1/8 of each side; the top ones should
be near 0, the bottom ones often hold shoulders). Prints a table and a summary; writes the sheet.

    .venv/bin/python benchmarks/segment_evidence.py --faces ../shared/assets/faces --sheet segment_sheet.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def coverage(mask: np.ndarray, box: np.ndarray) -> tuple[float, float, float]:
    """(face box, top corners, bottom corners) mean mask values."""
    h, w = mask.shape
    x0, y0, x1, y1 = np.clip(np.round(box).astype(int), 0, [w, h, w, h])
    ch, cw = max(1, h // 8), max(1, w // 8)
    top = (mask[:ch, :cw].mean() + mask[:ch, -cw:].mean()) / 2
    bottom = (mask[-ch:, :cw].mean() + mask[-ch:, -cw:].mean()) / 2
    return float(mask[y0:y1, x0:x1].mean()), float(top), float(bottom)


def photos(folder: Path | None) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    from factory.images import BadImage, list_images, read_image

    found = [("skimage/astronaut", data.astronaut())]
    if folder is not None:
        for path in list_images(folder):
            try:
                found.append((str(path.relative_to(folder)), read_image(path)))
            except BadImage:
                continue
    return found


def tile(image: np.ndarray, size: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    h, w = image.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((size, size, 3), 255, np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=None, help="folder of photos (e.g. ../shared/assets/faces)")
    parser.add_argument("--sheet", type=Path, default=Path("segment_sheet.png"))
    parser.add_argument("--rows", type=int, default=6, help="photos on the contact sheet")
    parser.add_argument("--tile", type=int, default=192)
    args = parser.parse_args()

    from factory.faces import shared_detector
    from factory.images import encode_png
    from factory.masks import soften, to_uint8
    from factory.sample import Sample
    from factory.stages.backgrounds import BackgroundsConfig, BackgroundSwap
    from factory.stages.inpaint import OpenCVInpainter
    from factory.stages.person_only import person_only
    from factory.stages.segment import MediapipeMasker
    from factory.teachers.cartoonize import CartoonizeConfig, cartoonize

    masker, detector, inpainter = MediapipeMasker(), shared_detector("mediapipe", 16), OpenCVInpainter()
    style = CartoonizeConfig(kind="cartoonize")
    rows, table = [], []
    for name, image in photos(args.faces):
        faces = detector.detect(image)
        if not faces:
            print(f"{name:48s} no face detected")
            continue
        mask = soften(masker(image), 0.01)
        face, top, bottom = coverage(mask, faces[0].box)
        table.append((face, top, bottom))
        print(f"{name:48s} face {face:.3f}  top corners {top:.3f}  bottom corners {bottom:.3f}")
        if len(rows) < args.rows:
            work = cv2.resize(image, (512, round(512 * image.shape[0] / image.shape[1])), interpolation=cv2.INTER_AREA)
            work_mask = soften(masker(work), 0.01)
            plate = inpainter(work, work_mask)
            styled = person_only(work, lambda im: cartoonize(im, style), masker)
            sample = Sample.create(name.replace(".", "_"), 0, 0)
            sample.real, sample.toon, sample.mask = work, styled, to_uint8(work_mask)
            swapped = BackgroundSwap(BackgroundsConfig(probability=1.0)).process(sample)
            styled_bg = person_only(work, lambda im: cartoonize(im, style), masker, background="stylize")
            row = [work, to_uint8(work_mask), plate, styled, styled_bg, swapped.real, swapped.toon]
            rows.append(np.concatenate([tile(im, args.tile) for im in row], axis=1))
    faces, tops, bottoms = np.array(table).T
    print(f"\n{len(table)} photos: face coverage median {np.median(faces):.3f} mean {faces.mean():.3f} "
          f"min {faces.min():.3f}; top corners median {np.median(tops):.3f} mean {tops.mean():.3f} "
          f"max {tops.max():.3f}; bottom corners median {np.median(bottoms):.3f}")
    print("columns: image | mask | inpainted background | person-only (bg kept) | person-only (inpainted "
          "background stylized) | cutface real | cutface toon")
    args.sheet.write_bytes(encode_png(np.concatenate(rows, axis=0)))
    print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
