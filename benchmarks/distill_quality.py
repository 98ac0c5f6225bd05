"""Does the student reproduce its teacher on held-out pairs? PSNR/SSIM vs the teacher, and the identity baseline.

Makes pairs from the face photos in ``../shared/assets/faces`` (detect, align, crop; teacher:
the classical cartoonizer or the CartoonGAN "Hayao" generator), writes them as a dataset folder in
the factory's format, trains the student on the training keys and scores its EMA generator on the
held-out keys (split by key hash, as in training). Prints a table; writes the validation grid.

    .venv/bin/python benchmarks/distill_quality.py --out /tmp/distill_quality [--teacher cartoongan]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


def face_crops(folders: list[Path], size: int) -> list[tuple[str, np.ndarray]]:
    """(key, aligned face crop) for every face photo in ``folders``; the largest face of each."""
    from factory.faces import alignment_matrix, build_detector, crop
    from factory.images import IMAGE_SUFFIXES, BadImage, read_image

    detector = build_detector("mediapipe", min_size=32)
    crops = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image = read_image(path)
            except BadImage:
                continue
            faces = detector.detect(image)
            if faces:
                key = "_".join(path.relative_to(folder.parent).with_suffix("").parts).replace(".", "_")
                crops.append((key, crop(image, alignment_matrix(faces[0].keypoints5(), size, margin=1.2), size)))
    return crops


def make_teacher(name: str, weights: Path):
    if name == "cartoonize":
        from factory.teachers.cartoonize import CartoonizeConfig, cartoonize

        config = CartoonizeConfig(kind="cartoonize")
        return lambda images: [cartoonize(image, config) for image in images]
    from factory.teachers.cartoongan import CartoonGANConfig

    teacher = CartoonGANConfig(kind="cartoongan", weights=weights).build()
    return teacher.stylize


def write_pairs(folder: Path, pairs: list[tuple[str, np.ndarray, np.ndarray]], shard_size: int = 16) -> None:
    import webdataset as wds

    from factory.images import encode_png

    (folder / "shards").mkdir(parents=True, exist_ok=True)
    for shard, start in enumerate(range(0, len(pairs), shard_size)):
        with wds.TarWriter(str(folder / "shards" / f"{shard:06d}.tar")) as sink:
            for key, real, toon in pairs[start : start + shard_size]:
                sink.write({"__key__": key, "real.png": encode_png(real), "toon.png": encode_png(toon),
                            "json": json.dumps({"key": key}).encode()})
    (folder / "manifest.json").write_text(json.dumps({"name": "distill_quality", "counts": {"pairs": len(pairs)}}))


def scores(outputs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = np.mean([peak_signal_noise_ratio(t, o, data_range=255) for o, t in zip(outputs, targets)])
    ssim = np.mean([structural_similarity(t, o, channel_axis=2, data_range=255) for o, t in zip(outputs, targets)])
    return float(psnr), float(ssim)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--teacher", choices=["cartoonize", "cartoongan"], default="cartoonize")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--adversarial", type=float, default=0.0, help="adversarial loss weight (0: L1 only)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from distill.config import DistillConfig
    from distill.data import is_validation, to_image, to_tensor
    from distill.export import load_student
    from distill.train import train

    started = time.perf_counter()
    folders = [args.assets / "faces" / "deepface", args.assets / "faces" / "face_recognition" / "train",
               args.assets / "faces" / "face_recognition" / "test"]
    crops = face_crops([f for f in folders if f.is_dir()], args.size)
    teacher = make_teacher(args.teacher, args.assets / "models" / "cartoongan_hayao")
    pairs = [(key, real, toon) for (key, real), toon in zip(crops, teacher([c for _, c in crops]))]
    data = args.out / "data"
    write_pairs(data, pairs)
    held_out = [p for p in pairs if is_validation(p[0], args.val_fraction)]
    print(f"{len(pairs)} pairs from {args.teacher} ({len(held_out)} held out) in {time.perf_counter() - started:.0f} s")

    config = DistillConfig(
        size=args.size, steps=args.steps, batch_size=args.batch_size, workers=1, lr=1e-3, ema_decay=0.99,
        val_fraction=args.val_fraction, val_every=max(args.steps // 4, 1), save_every=args.steps, log_every=10,
        scale_jitter=0.05, student={"ngf": args.ngf, "depth": 5},
        discriminator={"adversarial_weight": args.adversarial},
    )
    started = time.perf_counter()
    checkpoint = train(config, data, args.out / "train", resume="latest")
    train_seconds = time.perf_counter() - started

    import torch

    model, _ = load_student(checkpoint)
    with torch.no_grad():
        outputs = [to_image(model(to_tensor(real)[None])) for _, real, _ in held_out]
    teacher_images = [toon for _, _, toon in held_out]
    student_psnr, student_ssim = scores(outputs, teacher_images)
    identity_psnr, identity_ssim = scores([real for _, real, _ in held_out], teacher_images)
    params = sum(p.numel() for p in model.parameters())

    print(f"\nstudent ngf {args.ngf} ({params / 1e6:.2f} M parameters), {args.size} px, {args.steps} steps "
          f"(batch {args.batch_size}) in {train_seconds:.0f} s; {len(held_out)} held-out pairs vs the {args.teacher} teacher")
    print(f"{'output':<28}{'PSNR dB':>10}{'SSIM':>8}")
    print(f"{'student (EMA)':<28}{student_psnr:>10.2f}{student_ssim:>8.3f}")
    print(f"{'identity (input as output)':<28}{identity_psnr:>10.2f}{identity_ssim:>8.3f}")
    grids = sorted((args.out / "train" / "validation").glob("*.png"))
    if grids:
        print(f"validation grid (input / teacher / student): {grids[-1]}")


if __name__ == "__main__":
    main()
