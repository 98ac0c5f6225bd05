"""Curation evidence on the shared assets, printed as tables.

1. Detection: recall and precision of the chain (anime LBP cascade, mediapipe, dlib; merged) and of
   each detector on the comic pages and the tall strip, against ``benchmarks/comic_faces.json``.
   A detection matches a labelled face when its centre lies in the label and its size is within
   0.4x-2.5x; detections on 'ignore' boxes count neither way. Also the chain after the
   ``not_a_face`` filter, and how many sprite and anime-tile faces that filter would drop.
2. Reference selection: the Ren'Py sprites' faces mixed with the 36 anime tiles' faces; for each
   character, every choice of 1 reference (averaged) and the first 3, keep faces >= threshold.
3. Actor cleaning: each deepface person with >= 5 photos plus 3 photos of other people (deepface
   and face_recognition): intruders removed, true photos kept.
4. Clustering purity on the sprites, alone and with the anime tiles.
5. Filters: what ``text`` and ``not_a_face`` drop among sprite faces (at 3 scales), anime-tile faces,
   labelled comic faces, the comics' other detections and the labelled speech bubbles.
6. Duplicates: the 13 sprites with a resized, re-saved copy of each, and the strip with its five pages,
   through ``ingest_pages``: distinct faces kept, copies (and the strip's faces found again on their
   pages, by box) dropped.
7. Characters on the Pepper&Carrot pages (``ingest_pages`` on the folder, each kept face named by
   ``benchmarks/comic_characters.json``): per recurring character, how many of its faces the largest
   cluster holding them has, and that cluster's purity, at several clustering distances, with average and
   complete linkage; and selection with one reference (each of the character's faces in turn).

    python benchmarks/curate_evidence.py --assets ../shared/assets [--threshold 0.85] [--only characters]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import tempfile
from pathlib import Path

import cv2

import numpy as np
from rich.console import Console
from rich.table import Table

from curate.actors import PhotoFaces, judge
from curate.features import feature_matrix
from curate.filters import Thresholds, reject_reason, unconfirmed
from curate.ingest import ChainDetector, Detection, crop_square
from curate.run import CropOptions, Summary, ingest_pages
from curate.select import LINKAGES, choose, cluster, purity, similarity_to
from curate.store import Workspace
from factory.faces import DetectorChain
from factory.images import read_image
from factory.models.embedding import DlibEmbedder, embed

console = Console(width=200)
LABELS = Path(__file__).with_name("comic_faces.json")
CHARACTERS = Path(__file__).with_name("comic_characters.json")
SECTIONS = ("detection", "selection", "clustering", "filters", "duplicates", "actors", "characters")


def strip_labels(labels: dict) -> dict:
    """The strip's boxes from its pages' boxes (scaled to 800 px, stacked with white gaps)."""
    strip, out = labels["strip"], {"faces": [], "ignore": []}
    top = 0.0
    for page in strip["pages"]:
        scale = strip["width"] / 1280
        for kind in out:
            out[kind] += [[b[0] * scale, b[1] * scale + top, b[2] * scale, b[3] * scale + top] for b in labels["pages"][page][kind]]
        top += round(1771 * scale) + strip["gap"]
    return out


def matches(box, label) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ratio = np.sqrt((box[2] - box[0]) * (box[3] - box[1]) / ((label[2] - label[0]) * (label[3] - label[1])))
    return label[0] <= cx <= label[2] and label[1] <= cy <= label[3] and 0.4 <= ratio <= 2.5


def score_detections(boxes, truth) -> tuple[int, int, int]:
    """(true positives, false positives, labelled faces)."""
    found, fp = set(), 0
    for box in boxes:
        hit = next((i for i, label in enumerate(truth["faces"]) if matches(box, label)), None)
        if hit is not None:
            found.add(hit)
        elif not any(matches(box, label) for label in truth["ignore"]):
            fp += 1
    return len(found), fp, len(truth["faces"])


def detection(assets: Path) -> None:
    labels = json.loads(LABELS.read_text())
    pages = {**labels["pages"], labels["strip"]["file"]: strip_labels(labels)}
    chain = ChainDetector(cascade=assets / "models/lbpcascade_animeface.xml", min_size=20)
    rows = {name: np.zeros(3, int) for name in [*chain.names, "chain", "chain, not_a_face filtered"]}
    limits = Thresholds()
    table = Table("image", "faces", "chain found", "false", title="detection per image (chain, merged)")
    for name, truth in pages.items():
        found = chain.detect(read_image(assets / "comics" / name))
        counts = score_detections([d.box for d in found], truth)
        rows["chain"] += counts
        rows["chain, not_a_face filtered"] += score_detections([d.box for d in found if not unconfirmed(d, limits)], truth)
        for det_name in chain.names:
            rows[det_name] += score_detections([d.box for d in found if det_name in (d.detector, *d.agreed)], truth)
        table.add_row(Path(name).name[:40], str(counts[2]), str(counts[0]), str(counts[1]))
    console.print(table)
    summary = Table("detector", "recall", "precision", "found / labelled", "false", title="detection on the comics")
    for name, (tp, fp, total) in rows.items():
        summary.add_row(name, f"{tp / total:.0%}", f"{tp / max(tp + fp, 1):.0%}", f"{tp}/{total}", str(fp))
    console.print(summary)


def drawn_faces(assets: Path):
    """(crops, character names) of the sprites and (crops) of the anime tiles."""
    chain = ChainDetector(cascade=assets / "models/lbpcascade_animeface.xml", min_size=24)
    crops, names, dropped, limits = [], [], [0, 0], Thresholds()
    for path in sorted((assets / "characters/renpy").glob("*/*.png")):
        image = read_image(path)
        found = chain.detect(image)
        if found:
            face = max(found, key=lambda d: d.size)
            crops.append(crop_square(image, face.box))
            names.append(path.parent.name)
            dropped[0] += unconfirmed(face, limits)
    grid = read_image(assets / "anime/grid36.jpg")
    tiles = [np.ascontiguousarray(grid[r:r + 512, c:c + 512]) for r in range(0, 3072, 512) for c in range(0, 3072, 512)]
    found = [(tile, d) for tile in tiles for d in chain.detect(tile)]
    distractors = [crop_square(tile, d.box) for tile, d in found]
    dropped[1] = sum(unconfirmed(d, limits) for _, d in found)
    console.print(f"not_a_face would drop {dropped[0]}/{len(crops)} sprite faces and {dropped[1]}/{len(found)} anime-tile faces")
    return crops, names, distractors


def selection(crops, names, distractors, threshold: float) -> None:
    features = feature_matrix(crops + distractors)
    truth = np.array(names + ["distractor"] * len(distractors))
    table = Table("character", "references", "precision", "recall", "kept", "true", title=f"selection (cosine >= {threshold})")
    for name in sorted(set(names)):
        own = np.flatnonzero(truth == name)
        for count in (1, 3):
            choices = [own[i:i + 1] for i in range(len(own))] if count == 1 else [own[:3]]
            precision, recall, kept = [], [], []
            for refs in choices:
                rest = np.setdiff1d(np.arange(len(truth)), refs)
                keep = choose(similarity_to(features[refs], features[rest]), None, threshold)
                positives = truth[rest] == name
                tp = int((keep & positives).sum())
                precision.append(tp / keep.sum() if keep.sum() else 1.0)
                recall.append(tp / positives.sum() if positives.sum() else 1.0)
                kept.append(int(keep.sum()))
            table.add_row(name, str(min(count, len(own))), f"{np.mean(precision):.0%}", f"{np.mean(recall):.0%}",
                          f"{np.mean(kept):.1f}", str(len(own) - min(count, len(own))))
    console.print(table)
    console.print(f"{len(crops)} sprite faces, {len(distractors)} anime-tile faces as distractors")


def clustering(crops, names, distractors) -> None:
    table = Table("set", "max distance", "purity", "clusters", "sprites clustered", title="clustering (no reference)")
    for label, extra in (("sprites", []), ("sprites + anime tiles", distractors)):
        features = feature_matrix(crops + extra)
        truth = names + [f"tile{i}" for i in range(len(extra))]
        for distance in (0.08, 0.12, 0.16):
            labels = cluster(features, distance)
            table.add_row(label, f"{distance}", f"{purity(labels, truth):.0%}", str(len(set(labels.tolist()) - {-1})),
                          f"{int((labels[:len(crops)] >= 0).sum())}/{len(crops)}")
    console.print(table)


def filters(assets: Path) -> None:
    chain, limits = ChainDetector(cascade=assets / "models/lbpcascade_animeface.xml"), Thresholds()
    counts: dict[str, list[int]] = {}  # set -> [items, text, not_a_face]

    def judge(name: str, image: np.ndarray, detections) -> None:
        for det in detections:
            reason = reject_reason(det, crop_square(image, det.box), limits)[0]
            row = counts.setdefault(name, [0, 0, 0])
            row[0] += 1
            row[1] += reason == "text"
            row[2] += reason == "not_a_face"

    for path in sorted((assets / "characters/renpy").glob("*/*.png")):
        for scale in (1.0, 0.6, 1.3):
            image = cv2.resize(read_image(path), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            found = chain.detect(image)
            high = [d for d in found if d.box[1] + d.box[3] < 0.9 * image.shape[0]]  # centre in the top 45%
            judge("sprite faces (13 x 3 scales)", image, high)
            judge("sprite bodies (other boxes)", image, [d for d in found if d not in high])
    grid = read_image(assets / "anime/grid36.jpg")
    for r in range(0, 3072, 512):
        for c in range(0, 3072, 512):
            tile = np.ascontiguousarray(grid[r:r + 512, c:c + 512])
            judge("anime-tile faces", tile, chain.detect(tile))
    labels = json.loads(LABELS.read_text())
    for name, truth in {**labels["pages"], labels["strip"]["file"]: strip_labels(labels)}.items():
        image = read_image(assets / "comics" / name)
        found = chain.detect(image)
        judge("comic faces (labelled)", image, [d for d in found if any(matches(d.box, b) for b in truth["faces"])])
        judge("comic non-faces (unlabelled boxes)", image,
              [d for d in found if not any(matches(d.box, b) for b in truth["faces"] + truth["ignore"])])
        judge("speech bubbles (labelled)", image,
              [Detection(np.array(b, float), 9.9, "anime", 0, ["mediapipe"]) for b in truth.get("text", [])])
    table = Table("set", "boxes", "text", "not_a_face", "dropped", title="filters (faces: every drop is a false drop)")
    for name, (items, text, lone) in counts.items():
        table.add_row(name, str(items), str(text), str(lone), f"{text + lone}/{items} ({(text + lone) / max(items, 1):.0%})")
    console.print(table)


def _iou(a, b) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def duplicates(assets: Path) -> None:
    cascade = assets / "models/lbpcascade_animeface.xml"
    table = Table("set", "faces", "distinct kept", "copies dropped", "wrongly dropped", title="duplicates")
    with tempfile.TemporaryDirectory() as tmp:
        sprites = sorted((assets / "characters/renpy").glob("*/*.png"))
        for i, path in enumerate(sprites):
            image = read_image(path)
            small = cv2.resize(image, None, fx=(0.8, 0.6, 1.3)[i % 3], fy=(0.8, 0.6, 1.3)[i % 3], interpolation=cv2.INTER_AREA)
            cv2.imwrite(f"{tmp}/{path.stem}_copy{'.jpg' if i % 2 else '.png'}", small[..., ::-1])
        ws = Workspace(Path(tmp) / "sprites")
        ingest_pages(ws, sprites + sorted(Path(tmp).glob("*_copy.*")), ChainDetector(cascade=cascade), CropOptions(), Summary())
        faces = ws.manifest["faces"]
        stem = {fid: Path(f["file"]).stem.removesuffix("_copy") for fid, f in faces.items()}
        originals = {fid for fid, f in faces.items() if f["file"] in map(str, sprites)}
        right = sum(f["reason"].startswith("duplicate") and stem[f["reason"].split()[-1]] == stem[fid]
                    for fid, f in faces.items() if fid not in originals)
        wrong = sum(f["reason"].startswith("duplicate") for fid, f in faces.items()) - right
        table.add_row("13 sprites + a resized copy of each", str(len(faces)),
                      f"{sum(not faces[f]['reason'] for f in originals)}/13", f"{right}/13", str(wrong))

        labels = json.loads(LABELS.read_text())["strip"]
        pages = [assets / "comics" / p for p in labels["pages"]]
        ws = Workspace(Path(tmp) / "strip")
        ingest_pages(ws, [assets / "comics" / labels["file"], *pages], ChainDetector(cascade=cascade), CropOptions(), Summary())
        faces = ws.manifest["faces"]
        scale, top, tops = labels["width"] / 1280, 0, {}
        for page in pages:
            tops[str(page)] = top
            top += round(1771 * scale) + labels["gap"]
        strip = [f["box"] for f in faces.values() if f["file"] not in tops]

        def on_strip(face) -> bool:
            box = np.array(face["box"]) * scale + np.array([0, tops[face["file"]], 0, tops[face["file"]]])
            return any(_iou(box, other) > 0.3 for other in strip)

        judged = [f for f in faces.values() if not f["reason"] or f["reason"].startswith("duplicate")]
        truth = [f["file"] in tops and on_strip(f) for f in judged]
        dropped = [f["reason"].startswith("duplicate") for f in judged]
        table.add_row("strip + its 5 pages", str(len(faces)), f"{sum(not t and not d for t, d in zip(truth, dropped))}/{truth.count(False)}",
                      f"{sum(t and d for t, d in zip(truth, dropped))}/{sum(truth)}", str(sum(d and not t for t, d in zip(truth, dropped))))
    console.print(table)


def actor_cleaning(assets: Path, radii: list[float]) -> None:
    rows = list(csv.DictReader(open(assets / "faces/deepface/identities.csv")))
    people: dict[str, list[Path]] = {}
    for row in rows:
        people.setdefault(row["identity"], []).append(assets / "faces/deepface" / row["file"])
    others = sorted((assets / "faces/face_recognition/train").glob("*/*"))
    chain, embedder = DetectorChain("dlib,mediapipe", min_size=20), DlibEmbedder()
    cache: dict[Path, PhotoFaces] = {}

    def photo(path: Path) -> PhotoFaces:
        if path not in cache:
            image = read_image(path)
            faces = chain.detect(image)
            cache[path] = PhotoFaces(str(path), faces, embed(embedder, image, faces)[0])
        return cache[path]

    rng = np.random.default_rng(0)
    folders = {person: paths + [pool[i] for i in rng.choice(len(pool), 3, replace=False)]
               for person, paths in sorted(people.items()) if len(paths) >= 5
               for pool in [[p for q, ps in people.items() if q != person for p in ps] + others]}
    table = Table("radius", "actors", "photos", "intruders", "intruders removed", "true kept",
                  title="actor cleaning (each folder: one person's photos + 3 of other people)")
    for radius in radii:
        total = np.zeros(4, int)
        for person, paths in folders.items():
            verdicts = judge([photo(p) for p in paths], radius=radius, min_face=20)
            kept = {v.name for v in verdicts if v.keep}
            own = [p for p in paths if p in people[person]]
            total += [sum(str(p) not in kept for p in paths[len(own):]), len(paths) - len(own),
                      sum(str(p) in kept for p in own), len(own)]
        table.add_row(f"{radius}", str(len(folders)), str(total[3]), str(total[1]),
                      f"{total[0]}/{total[1]} ({total[0] / total[1]:.0%})", f"{total[2]}/{total[3]} ({total[2] / total[3]:.0%})")
    console.print(table)


def who_is(face: dict, labels: list[dict]) -> str:
    """The labelled name of a detected face (centre inside the label, size within 0.5x-2x), or '?'."""
    for label in labels:
        if Path(label["file"]).name == Path(face["file"]).name and matches(face["box"], label["box"]):
            ratio = np.sqrt(np.prod(np.subtract(face["box"][2:], face["box"][:2])) / np.prod(np.subtract(label["box"][2:], label["box"][:2])))
            if 0.5 <= ratio <= 2:
                return label["who"]
    return "?"


def comic_characters(assets: Path, distances: list[float], thresholds: list[float]) -> None:
    labels = json.loads(CHARACTERS.read_text())["faces"]
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        ingest_pages(ws, sorted((assets / "comics/peppercarrot").glob("*.jpg")),
                     ChainDetector(cascade=assets / "models/lbpcascade_animeface.xml", min_size=20), CropOptions(), Summary())
        kept = [(fid, f) for fid, f in ws.manifest["faces"].items() if f.get("kind") == "drawn" and not f["reason"]]
        features = np.stack([ws.features[fid] for fid, _ in kept])
    truth = np.array([who_is(f, labels) for _, f in kept])
    names = [n for n in sorted(set(truth)) if (truth == n).sum() >= 2 and n not in ("not_a_face", "?")]
    table = Table("linkage", "max distance", "clusters", "clustered", "purity", *names,
                  title="Pepper&Carrot characters without references: faces in the largest cluster holding them / faces (its purity)")
    for method, distance in ((m, d) for m in LINKAGES for d in distances):
        found = cluster(features, distance, method=method)
        cells = []
        for name in names:
            own = found[truth == name]
            ids, counts = np.unique(own[own >= 0], return_counts=True)
            if not len(ids):
                cells.append(f"0/{len(own)}")
                continue
            best = ids[counts.argmax()]
            cells.append(f"{counts.max()}/{len(own)} ({np.mean(truth[found == best] == name):.0%})")
        table.add_row(method, f"{distance}", str(len(set(found.tolist()) - {-1})), f"{int((found >= 0).sum())}/{len(found)}",
                      f"{purity(found, truth.tolist()):.0%}", *cells)
    console.print(table)
    picks = Table("threshold", *names, title="Pepper&Carrot selection with 1 reference (each face in turn): precision / recall")
    for threshold in thresholds:
        cells = []
        for name in names:
            own = np.flatnonzero(truth == name)
            precision, recall = [], []
            for ref in own:
                rest = np.setdiff1d(np.arange(len(truth)), [ref])
                keep = choose(similarity_to(features[[ref]], features[rest]), None, threshold)
                tp = int((keep & (truth[rest] == name)).sum())
                precision.append(tp / keep.sum() if keep.sum() else 1.0)
                recall.append(tp / (len(own) - 1))
            cells.append(f"{np.mean(precision):.0%} / {np.mean(recall):.0%}")
        picks.add_row(f"{threshold}", *cells)
    console.print(picks)
    console.print(f"{len(truth)} kept faces: " + ", ".join(f"{n} {(truth == n).sum()}" for n in names)
                  + f"; unlabelled {(truth == '?').sum()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[2] / "shared/assets")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.75, 0.85])
    parser.add_argument("--radius", type=float, nargs="+", default=[0.35, 0.4, 0.45, 0.5, 0.55])
    parser.add_argument("--distance", type=float, nargs="+", default=[0.12, 0.2, 0.25, 0.3, 0.35],
                        help="clustering distances for the Pepper&Carrot characters table")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run = set(args.only) - ({"detection"} if args.skip_detection else set())
    if "detection" in run:
        detection(args.assets)
    if run & {"selection", "clustering"}:
        crops, names, distractors = drawn_faces(args.assets)
        for threshold in args.threshold if "selection" in run else []:
            selection(crops, names, distractors, threshold)
        if "clustering" in run:
            clustering(crops, names, distractors)
    if "filters" in run:
        filters(args.assets)
    if "duplicates" in run:
        duplicates(args.assets)
    if "actors" in run:
        actor_cleaning(args.assets, args.radius)
    if "characters" in run:
        comic_characters(args.assets, args.distance, args.threshold)


if __name__ == "__main__":
    main()
