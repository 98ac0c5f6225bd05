"""Does each teacher's toon side look like webtoon art, and does the face survive?

Usage: python benchmarks/toon_likeness.py [--assets ../shared/assets] [--sheets /tmp/webtoon_sheets]

Every image is cropped as the pipeline crops it (mediapipe mesh, FFHQ-style alignment, 256 px).
A logistic classifier on ``style_features`` learns webtoon art (the shared webtoon characters,
without the two photos and the painting) against real photos (deepface + face_recognition); it
never sees a teacher's output or a posterised photo. Its weights (per standard deviation of each
feature) are printed so the verdict can be explained.

Leave-out protocol: the photos are split in two (alternate files); the classifier trains on one
half (its 5-fold CV accuracy is printed) and every teacher translates the *other* half. The
"fitted" style is fitted on the characters of four series (FIT_SERIES), and those images are kept
out of the classifier's training, so the fitted style and the judge never share an image (they
appear as a held-out row: real webtoon art the classifier never saw). The packaged default style
was fitted on all 30 characters. The features were chosen by looking at the judge's half only
(its photos, those photos posterised by ``cartoonize``, and the webtoon teacher's drawings of them);
the translated half below was not looked at while choosing them.

Columns: share of outputs called webtoon, mean P(webtoon), share of toon sides where mediapipe
finds a face, and identity kept: dlib cosine similarity of photo and toon side (both embedded at
the photo's landmarks; same person by dlib's rule when the distance < 0.6, i.e. cosine > 0.82).
Then milliseconds per 256 px pair for the webtoon teacher on one core.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from factory.models.embedding import DlibEmbedder
from factory.faces import Face, shared_detector
from factory.images import read_image
from factory.sample import Sample
from factory.teachers.cartoonize import CartoonizeConfig, cartoonize
from factory.teachers.style_features import LogisticModel, cross_validated_accuracy, feature_matrix
from factory.teachers.webtoon import WebtoonConfig, draw_webtoon
from factory.teachers.webtoon_fit import align_face, fit_style

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
NOT_ART = {"jisoo.jpg", "yooa.jpg", "paint_boy.jpg"}
FIT_SERIES = ("office", "rel", "ssam", "weak")
SHEET_FACES = 12


def aligned_folder(files: list[Path]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, 256 px crop, mesh points) for every file with a face."""
    out = []
    for path in files:
        aligned = align_face(read_image(path))
        if aligned is not None:
            out.append((path.name, *aligned))
    return out


def webtoon_characters(assets: Path) -> list[Path]:
    """The shared webtoon characters that are webtoon art (without the two photos and the painting)."""
    return sorted(p for p in (assets / "webtoon" / "characters").iterdir() if p.name not in NOT_ART)


def fit_judge(art: list[np.ndarray], photos: list[np.ndarray]) -> tuple[LogisticModel, float]:
    """The webtoon judge: a logistic model on ``style_features`` of webtoon art (1) vs photos (0), and its
    5-fold CV accuracy."""
    features = np.vstack([feature_matrix(art), feature_matrix(photos)])
    labels = np.array([1] * len(art) + [0] * len(photos), np.float64)
    return LogisticModel().fit(features, labels), cross_validated_accuracy(features, labels)


def face_sample(name: str, crop: np.ndarray, points: np.ndarray, index: int) -> Sample:
    sample = Sample(key=name.replace(".", "_"), index=index, seed=1000 + index, real=crop)
    sample.meta["faces"] = {"side": "real", "scheme": "mediapipe478", "landmarks": points.tolist()}
    return sample


def webtoon_outputs(config: WebtoonConfig, faces) -> list[np.ndarray]:
    teacher = config.build()
    return [teacher.draw(crop, face_sample(name, crop, points, i))[0] for i, (name, crop, points) in enumerate(faces)]


def identity_similarity(embedder: DlibEmbedder, photo: np.ndarray, toon: np.ndarray, points: np.ndarray,
                        scheme: str = "mediapipe478") -> float:
    """dlib cosine similarity of photo and toon side, both embedded at the photo's landmarks."""
    face = Face(box=np.array([*points.min(0), *points.max(0)]), score=1.0, landmarks=points, scheme=scheme)
    vectors = embedder.embed_aligned([embedder.align(photo, face), embedder.align(toon, face)])
    return float(vectors[0] @ vectors[1])


def draw_timing(faces, repeats: int = 3) -> dict[str, float]:
    """Median ms per 256 px pair on one core, wall clock and CPU time (the machine may be shared): drawing
    only (mask given), and the teacher with its own selfie mask."""
    from threadpoolctl import threadpool_limits

    from factory.stages.segment import MediapipeMasker

    cv2.setNumThreads(1)
    threadpool_limits(1)  # numpy's BLAS too: one core means one thread
    teacher = WebtoonConfig(kind="webtoon").build()
    masker = MediapipeMasker()
    times = {"draw wall": [], "draw cpu": [], "teacher wall": [], "teacher cpu": []}

    def timed(kind: str, work) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        times[f"{kind} wall"].append((time.perf_counter() - wall) * 1000)
        times[f"{kind} cpu"].append((time.process_time() - cpu) * 1000)

    for i, (name, crop, points) in enumerate(faces):
        person = masker(crop)
        params = teacher.draw_parameters(np.random.default_rng(i))
        for _ in range(repeats):
            timed("draw", lambda: draw_webtoon(crop, points, person, params, teacher.style))
            timed("teacher", lambda: teacher.draw(crop, face_sample(name, crop, points, i)))
    return {kind: float(np.median(values)) for kind, values in times.items()}


def header(image: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((22, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([strip, image])


def write_sheets(folder: Path, faces, columns: dict[str, list[np.ndarray]]) -> list[Path]:
    """Contact sheets of ``SHEET_FACES`` faces, four rows per sheet: one column per entry of ``columns``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [np.hstack([header(images[i], f"{label} {faces[i][0]}" if label == "photo" else label)
                       for label, images in columns.items()]) for i in range(min(SHEET_FACES, len(faces)))]
    paths = []
    for n in range(0, len(rows), 4):
        path = folder / f"sheet_{n // 4 + 1}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows[n:n + 4]), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--sheets", type=Path, default=None, help="write photo | default | fitted contact sheets here")
    args = parser.parse_args()
    characters = webtoon_characters(args.assets)
    fit_files = [p for p in characters if p.name.startswith(FIT_SERIES)]
    judge_art = aligned_folder([p for p in characters if p not in fit_files])
    held_out_art = aligned_folder(fit_files)
    face_root = args.assets / "faces"
    photo_files = sorted(face_root.glob("deepface/*.jpg")) + sorted(
        p for p in (face_root / "face_recognition").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
        and "edge_cases" not in p.parts)
    photos = aligned_folder(photo_files)
    judge_photos, test_photos = photos[0::2], photos[1::2]

    judge, accuracy = fit_judge([c for _, c, _ in judge_art], [c for _, c, _ in judge_photos])

    fitted, _ = fit_style([read_image(p) for p in fit_files], name="fitted")
    style_path = Path(tempfile.mkdtemp()) / "fitted.json"
    fitted.save(style_path)
    crops = [crop for _, crop, _ in test_photos]
    cv2.setNumThreads(2)
    outputs = {
        "photo (no teacher)": crops,
        "cartoonize": [cartoonize(c, CartoonizeConfig(kind="cartoonize")) for c in crops],
    }
    weights = args.assets / "models" / "cartoongan_hayao"
    if weights.is_dir():
        import torch

        from factory.teachers.cartoongan import CartoonGANConfig

        torch.set_num_threads(2)
        cartoongan = CartoonGANConfig(kind="cartoongan", weights=weights, device="cpu").build()
        outputs["cartoongan"] = [cartoongan.translate([c], [face_sample(n, c, p, 0)])[0] for n, c, p in test_photos]
    outputs["webtoon default"] = webtoon_outputs(WebtoonConfig(kind="webtoon"), test_photos)
    outputs["webtoon fitted"] = webtoon_outputs(WebtoonConfig(kind="webtoon", style=style_path), test_photos)

    detector = shared_detector("mediapipe", min_size=16)
    embedder = DlibEmbedder()
    print(f"judge: {len(judge_art)} webtoon faces vs {len(judge_photos)} photos, 5-fold CV accuracy {accuracy:.1%}")
    print("judge weights: " + ", ".join(f"{name} {weight:+.2f}" for name, weight in judge.feature_weights().items()))
    print(f"teachers translate {len(test_photos)} other photos; fitted style: {len(fit_files)} images of {FIT_SERIES}\n")
    print(f"{'row':<26}{'called webtoon':>15}{'P(webtoon)':>12}{'face found':>12}{'identity cos':>14}{'same person':>13}")
    art_p = judge.probability(feature_matrix([c for _, c, _ in held_out_art]))
    print(f"{'webtoon art (held out)':<26}{np.mean(art_p > 0.5):>15.0%}{art_p.mean():>12.2f}{'':>12}{'':>14}{'':>13}")
    for label, images in outputs.items():
        p = judge.probability(feature_matrix(images))
        found = np.mean([bool(detector.detect(image)) for image in images])
        similarity = np.array([identity_similarity(embedder, crop, image, points)
                               for (_, crop, points), image in zip(test_photos, images)])
        print(f"{label:<26}{np.mean(p > 0.5):>15.0%}{p.mean():>12.2f}{found:>12.0%}{similarity.mean():>14.3f}"
              f"{np.mean(similarity > 0.82):>13.0%}")
    ms = draw_timing(test_photos[:10])
    print(f"\nwebtoon teacher, 256 px, one core, ms per pair (wall / CPU): drawing (mask given) "
          f"{ms['draw wall']:.0f} / {ms['draw cpu']:.0f}, with its own selfie mask "
          f"{ms['teacher wall']:.0f} / {ms['teacher cpu']:.0f}")
    if args.sheets:
        sheet_faces = [f for f in photos if f[0].startswith("img")][:SHEET_FACES]
        columns = {"photo": [c for _, c, _ in sheet_faces],
                   "webtoon default": webtoon_outputs(WebtoonConfig(kind="webtoon"), sheet_faces),
                   "webtoon fitted": webtoon_outputs(WebtoonConfig(kind="webtoon", style=style_path), sheet_faces)}
        for path in write_sheets(args.sheets, sheet_faces, columns):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
