"""Virtual-casting accuracy on real photos, printed as tables.

1. face_recognition: ``train/`` is the gallery, every face of every ``test/`` photo a query.
2. deepface leave-one-out: each photo queried against a gallery of the other 60 (rank-1, rank-5).
3. cross-style: the deepface queries toonified with the CartoonGAN teacher (a 256 px aligned crop
   around the face), cast against the real gallery without and with realify / inverse warp.

    python benchmarks/cast_accuracy.py --assets ../shared/assets [--realify MODEL] [--unwarp default]
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from casting.gallery import collect_inputs, update_gallery
from casting.rank import actor_scores, query_faces
from casting.realify import InverseWebtoonWarp, load_realifier
from factory.faces import DetectorChain
from factory import faces as facelib
from factory.models.embedding import DlibEmbedder, embed
from factory.images import read_image

console = Console(width=150)

# Who is where in the two-person test photos: (x of a point inside the face box, name); any other
# face found there (obama_and_biden.jpg shows a girl at the bottom right) is not in the gallery.
TEST_TRUTH = {
    "alex_lacamoire1.jpg": [(790, "alex_lacamoire")],
    "johnsnow_test1.jpg": [(355, "kit_harington")],
    "obama1.jpg": [(740, "obama")],
    "kit_with_rose.jpg": [(300, "kit_harington"), (115, "rose_leslie")],
    "obama_and_biden.jpg": [(1240, "obama"), (830, "biden")],
}


def truth_of(name: str, face: facelib.Face) -> str | None:
    for x, who in TEST_TRUTH.get(name, []):
        if face.box[0] <= x <= face.box[2] and face.box[3] < 900:
            return who
    return None


def face_recognition_table(root: Path, embedder, detector) -> tuple[int, int]:
    inputs, attrs = collect_inputs(root / "train")
    gallery_dir = Path("/tmp") / f"cast_bench_fr_{int(time.time())}"
    gallery, update = update_gallery(gallery_dir, inputs, attrs, embedder, detector)
    table = Table("query", "face box", "truth", "rank-1", "score", "2nd", "ok", title="face_recognition: train gallery, test queries")
    right = total = 0
    actors = gallery.actor_names()
    for path in sorted((root / "test").glob("*")):
        image = read_image(path)
        found = detector.detect(image)
        vectors, _ = embed(embedder, image, found)
        for face, vector in zip(found, vectors):
            scores = actor_scores(gallery, vector[None], actors)[0]
            order = np.argsort(-scores)
            who = truth_of(path.name, face)
            ok = "" if who is None else ("yes" if actors[order[0]] == who else "NO")
            if who is not None:
                total += 1
                right += actors[order[0]] == who
            table.add_row(path.name, str(face.box.astype(int).tolist()), who or "(not in gallery)", actors[order[0]],
                          f"{scores[order[0]]:.3f}", f"{actors[order[1]]} {scores[order[1]]:.3f}", ok)
    console.print(table)
    console.print(f"gallery: {len(gallery.entries)} photos of {len(actors)} actors, {len(update.rejected)} rejected; "
                  f"rank-1 {right}/{total} faces")
    return right, total


def rank_of(scores: np.ndarray, actors: list[str], who: str) -> int:
    order = [actors[i] for i in np.argsort(-scores, kind="stable")]
    return order.index(who) + 1


def deepface_photos(root: Path, embedder, detector):
    """(file, identity, image, face, vector) for every deepface photo with exactly one face."""
    with open(root / "identities.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    photos, rejected = [], []
    for row in rows:
        image = read_image(root / row["file"])
        found = detector.detect(image)
        if len(found) != 1:
            rejected.append((row["file"], f"{len(found)} faces"))
            continue
        vectors, _ = embed(embedder, image, found)
        photos.append((row["file"], row["identity"], image, found[0], vectors[0]))
    return photos, rejected


def loo_ranks(queries: np.ndarray, photos, skip_self: bool = True) -> list[int | None]:
    """Rank of the true identity for each query, against all other photos (None: nobody else of theirs)."""
    gallery = np.stack([p[4] for p in photos])
    owners = np.array([p[1] for p in photos])
    actors = sorted(set(owners))
    ranks = []
    for i, vector in enumerate(queries):
        sims = gallery @ vector
        if skip_self:
            sims[i] = -np.inf
        keep = np.ones(len(photos), bool)
        keep[i] = False
        if photos[i][1] not in set(owners[keep]):
            ranks.append(None)
            continue
        scores = np.array([sims[keep & (owners == a)].max() if (keep & (owners == a)).any() else -np.inf for a in actors])
        ranks.append(rank_of(scores, actors, photos[i][1]))
    return ranks


def summary(ranks: list[int | None]) -> tuple[int, int, int]:
    usable = [r for r in ranks if r is not None]
    return sum(r == 1 for r in usable), sum(r <= 5 for r in usable), len(usable)


def toonify_queries(photos, weights: Path, size: int = 256, margin: float = 1.6):
    """CartoonGAN on an aligned crop around each face: (toon crop, face moved into the crop)."""
    from factory.teachers.cartoongan import CartoonGANConfig

    teacher = CartoonGANConfig(kind="cartoongan", weights=weights, device="cpu").build()
    crops = []
    for _, _, image, face, _ in photos:
        matrix = facelib.alignment_matrix(face.keypoints5(), size, margin)
        crops.append(facelib.crop(image, matrix, size))
    toons = []
    for start in range(0, len(crops), 8):
        toons += teacher.stylize(crops[start:start + 8])
    return crops, toons


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "assets")
    parser.add_argument("--realify", type=Path, help="toon2real model for the cross-style table (.onnx, checkpoint, teacher .yaml)")
    parser.add_argument("--unwarp", help="'default' or a warping profile .json: inverse webtoon warp in the cross-style table")
    parser.add_argument("--sheet", type=Path, help="write the toonified queries here as a PNG contact sheet")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    faces_root = args.assets / "faces"
    embedder = DlibEmbedder()
    detector = DetectorChain("dlib,mediapipe", min_size=40)

    started = time.perf_counter()
    fr_right, fr_total = face_recognition_table(faces_root / "face_recognition", embedder, detector)

    photos, rejected = deepface_photos(faces_root / "deepface", embedder, detector)
    real_ranks = loo_ranks(np.stack([p[4] for p in photos]), photos)
    r1, r5, n = summary(real_ranks)
    misses = Table("photo", "identity", "rank of truth", title="deepface leave-one-out: misses at rank 1")
    for photo, rank in zip(photos, real_ranks):
        if rank is not None and rank > 1:
            misses.add_row(photo[0], photo[1], str(rank))
    console.print(misses)
    console.print(f"deepface: {len(photos)} photos embedded, not used: {rejected or 'none'}")

    weights = args.assets / "models" / "cartoongan_hayao"
    crops, toons = toonify_queries(photos, weights)
    variants = {"toon, as is": dict()}
    if args.unwarp:
        variants["toon + inverse warp"] = dict(inverse_warp=InverseWebtoonWarp(None if args.unwarp == "default" else Path(args.unwarp)))
    if args.realify:
        realifier = load_realifier(args.realify)
        variants[f"toon + realify ({realifier.name})"] = dict(realifier=realifier)
    rows = [("real photo (crop, as the toon sees it)", crops, {})] + [(name, toons, opts) for name, opts in variants.items()]
    cross = Table("queries", "faces found", "rank-1", "rank-5", "usable", title="cross-style: deepface leave-one-out, CartoonGAN (Hayao) toon queries vs real gallery")
    cross.add_row("real photo (whole image)", str(len(photos)), f"{r1 / n:.1%}", f"{r5 / n:.1%}", str(n))
    for name, images, opts in rows:
        vectors, found = [], 0
        for image in images:
            faces = query_faces(image, detector, embedder, real_detector=detector, **opts)
            found += bool(faces)
            vectors.append(faces[0].vector if faces else np.zeros(embedder.dim, np.float32))
        ranks = loo_ranks(np.stack(vectors), photos)
        ranks = [r if v.any() else (None if r is None else 10**6) for r, v in zip(ranks, vectors)]  # no face = a miss
        t1, t5, tn = summary(ranks)
        cross.add_row(name, f"{found}/{len(images)}", f"{t1 / tn:.1%}", f"{t5 / tn:.1%}", str(tn))
    console.print(cross)
    if args.sheet:
        from PIL import Image

        tiles = [np.concatenate([c, t], axis=0) for c, t in zip(crops[:12], toons[:12])]
        Image.fromarray(np.concatenate(tiles, axis=1)).resize((128 * len(tiles), 256)).save(args.sheet)

    final = Table("benchmark", "result", title="virtual casting accuracy (dlib ResNet 128-d, cosine, best photo per actor)")
    final.add_row("face_recognition test faces, rank-1", f"{fr_right}/{fr_total}")
    final.add_row("deepface leave-one-out rank-1", f"{r1}/{n} = {r1 / n:.1%}")
    final.add_row("deepface leave-one-out rank-5", f"{r5}/{n} = {r5 / n:.1%}")
    final.add_row("seconds", f"{time.perf_counter() - started:.0f}")
    console.print(final)


if __name__ == "__main__":
    main()
