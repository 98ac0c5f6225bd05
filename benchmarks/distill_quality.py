"""Does the student reproduce its teacher on held-out pairs? PSNR/SSIM vs the teacher, and the identity baseline.

Makes pairs from the face photos in ``../shared/assets/faces`` (detect, align, crop; teacher:
the classical cartoonizer or the CartoonGAN "Hayao" generator; or other photos, video frames and
built-in portraits), writes them as a dataset folder in
the factory's format, trains the student on the training keys and scores its EMA generator on the
held-out keys (split by key hash, as in training). Prints a table; writes the validation grid.

    .venv/bin/python benchmarks/distill_quality.py --out /tmp/distill_quality [--teacher cartoongan]
    # a toon2real student for casting, on photos of people not in faces/deepface:
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/realify --teacher cartoongan --direction toon2real \
        --photos ../shared/assets/faces/face_recognition ../shared/assets/webtoon/characters/jisoo.jpg \
        ../shared/assets/webtoon/characters/yooa.jpg --builtin-portraits \
        --video ../shared/assets/video/short_hamilton_clip.mp4 --margin 1.3 --teacher-size 256 --export /tmp/realify/onnx
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


def source_images(photos: list[Path], video: Path | None, video_every: int) -> list[tuple[str, np.ndarray, bool]]:
    """(key, RGB image, take every face) for each photo under ``photos`` (folders or files) and every
    ``video_every``-th frame of ``video``; photos give their largest face, video frames all their faces."""
    from factory.images import IMAGE_SUFFIXES, BadImage, read_image

    images = []
    for source in photos:
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if source.is_dir() else [source]
        for path in files:
            try:
                image = read_image(path)
            except BadImage:
                continue
            name = path.relative_to(source.parent).with_suffix("") if source.is_dir() else Path(path.stem)
            images.append(("_".join(name.parts).replace(".", "_").replace("-", "_"), image, False))
    if video is not None:
        import cv2

        capture = cv2.VideoCapture(str(video))
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % video_every == 0:
                images.append((f"{video.stem}_{index:05d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), True))
            index += 1
    return images


def builtin_portraits() -> list[tuple[str, np.ndarray, bool]]:
    """Real portraits that ship with skimage and matplotlib (astronaut, Grace Hopper)."""
    import matplotlib.cbook
    from skimage import data

    from factory.images import read_image

    hopper = read_image(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return [("skimage_astronaut", data.astronaut(), False), ("matplotlib_grace_hopper", hopper, False)]


def face_crops(images, size: int, margin: float, min_face: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, aligned face crop, 5 keypoints in the crop) for the faces of ``images``."""
    from factory.faces import alignment_matrix, build_detector, crop, transform_points

    detector = build_detector("mediapipe", min_size=min_face)
    crops = []
    for key, image, every_face in images:
        faces = detector.detect(image)
        for index, face in enumerate(faces if every_face else faces[:1]):
            matrix = alignment_matrix(face.keypoints5(), size, margin=margin)
            name = f"{key}_f{index}" if every_face else key
            crops.append((name, crop(image, matrix, size), transform_points(face.keypoints5(), matrix)))
    return crops


def recrop(image: np.ndarray, keypoints: np.ndarray, size: int, margin: float) -> np.ndarray:
    from factory.faces import alignment_matrix, crop

    return crop(image, alignment_matrix(keypoints, size, margin=margin), size)


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
    parser.add_argument("--direction", choices=["real2toon", "toon2real"], default="real2toon")
    parser.add_argument("--photos", type=Path, nargs="+", help="photo folders or files (default: the shared face photos)")
    parser.add_argument("--builtin-portraits", action="store_true", help="add skimage's astronaut and matplotlib's Grace Hopper")
    parser.add_argument("--video", type=Path, help="add the faces of every --video-every-th frame of this video")
    parser.add_argument("--video-every", type=int, default=10)
    parser.add_argument("--margin", type=float, default=1.2, help="face crop margin of the training pairs")
    parser.add_argument("--teacher-size", type=int, help="stylize a larger crop (at --teacher-margin) and cut the pair "
                        "from it, as casting does with its 256 px, margin 1.6 toon queries")
    parser.add_argument("--teacher-margin", type=float, default=1.6)
    parser.add_argument("--export", type=Path, help="also export the trained student to ONNX in this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from distill.config import DistillConfig
    from distill.data import is_validation, to_image, to_tensor
    from distill.export import export, load_student
    from distill.train import train

    started = time.perf_counter()
    photos = args.photos or [args.assets / "faces" / "deepface", args.assets / "faces" / "face_recognition" / "train",
                             args.assets / "faces" / "face_recognition" / "test"]
    images = source_images([p for p in photos if p.exists()], args.video, args.video_every)
    if args.builtin_portraits:
        images += builtin_portraits()
    stylize_size, stylize_margin = (args.teacher_size, args.teacher_margin) if args.teacher_size else (args.size, args.margin)
    crops = face_crops(images, stylize_size, stylize_margin, min_face=32)
    teacher = make_teacher(args.teacher, args.assets / "models" / "cartoongan_hayao")
    toons = []
    for start in range(0, len(crops), 8):
        toons += teacher([c for _, c, _ in crops[start : start + 8]])
    pairs = [(key, real, toon) for (key, real, _), toon in zip(crops, toons)]
    if args.teacher_size:
        pairs = [(key, recrop(real, points, args.size, args.margin), recrop(toon, points, args.size, args.margin))
                 for (key, real, toon), (_, _, points) in zip(pairs, crops)]
    data = args.out / "data"
    write_pairs(data, pairs)
    held_out = [p for p in pairs if is_validation(p[0], args.val_fraction)]
    print(f"{len(pairs)} pairs from {args.teacher} ({len(held_out)} held out, {len(images)} images) "
          f"in {time.perf_counter() - started:.0f} s")

    config = DistillConfig(
        direction=args.direction, size=args.size, steps=args.steps, batch_size=args.batch_size, workers=1, lr=1e-3,
        ema_decay=0.99, val_fraction=args.val_fraction, val_every=max(args.steps // 4, 1), save_every=args.steps,
        log_every=10, scale_jitter=0.05, student={"ngf": args.ngf, "depth": 5},
        discriminator={"adversarial_weight": args.adversarial},
    )
    started = time.perf_counter()
    checkpoint = train(config, data, args.out / "train", resume="latest")
    train_seconds = time.perf_counter() - started
    if args.export:
        print(f"exported: {export(checkpoint, 'onnx', args.export)}")

    import torch

    model, _ = load_student(checkpoint)
    sources = [(real, toon) if args.direction == "real2toon" else (toon, real) for _, real, toon in held_out]
    with torch.no_grad():
        outputs = [to_image(model(to_tensor(source)[None])) for source, _ in sources]
    targets = [target for _, target in sources]
    student_psnr, student_ssim = scores(outputs, targets)
    identity_psnr, identity_ssim = scores([source for source, _ in sources], targets)
    params = sum(p.numel() for p in model.parameters())
    target_name = f"the {args.teacher} teacher" if args.direction == "real2toon" else f"the real photos ({args.teacher} toons in)"

    print(f"\n{args.direction} student ngf {args.ngf} ({params / 1e6:.2f} M parameters), {args.size} px, {args.steps} steps "
          f"(batch {args.batch_size}) in {train_seconds:.0f} s; {len(held_out)} held-out pairs vs {target_name}")
    print(f"{'output':<28}{'PSNR dB':>10}{'SSIM':>8}")
    print(f"{'student (EMA)':<28}{student_psnr:>10.2f}{student_ssim:>8.3f}")
    print(f"{'identity (input as output)':<28}{identity_psnr:>10.2f}{identity_ssim:>8.3f}")
    grids = sorted((args.out / "train" / "validation").glob("*.png"))
    if grids:
        print(f"validation grid (input / teacher / student): {grids[-1]}")


if __name__ == "__main__":
    main()
