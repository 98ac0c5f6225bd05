"""Scene pairs (whole frames, `output.frame: scene`) and the whole-frame student: speed, seams, skin, likeness.

Usage:
    .venv/bin/python benchmarks/scene_quality.py [--data out/fullbody] [--student out/fullbody/student/export/student.onnx]
        [--speed-count 12] [--size 512] [--heldout-count 40] [--out /tmp/scene_quality]

Three tables, each printed when its inputs are there:

- **speed** (always): pairs per second of `recipes/fullbody.yaml` at ``--size`` px, scene pairs against the
  same recipe with `output.frame: face` (face crops), on the same sources (the packaged portraits;
  ``--speed-video`` adds the Hamilton clip at `every: 15`), ``--speed-count`` pairs each, one process; each setting runs twice,
  interleaved, and its faster run counts (wall, start-up of the stages included; and the teacher's
  ms per candidate from the shard stats). The ratio is what to read: the machine may be shared.
- **seams and skin** (``--data``, a finished scene dataset): over every pasted face of the accepted
  pairs, seam energy (mean gradient magnitude along the paste boundary over the same in a band just
  inside it; target <= 1.5), the scene drawing's own at the same boundary, and the median CIEDE2000
  between the drawn face's skin tone and the drawn body skin (target <= 8); with the `visible_seam`
  rejects from the shard stats. Writes ``--out``/scene_pairs.png (3 photo pairs, 5 frames over the clip).
- **likeness** (``--student``): held-out scene pairs made here by the same recipe from `faces/deepface`'s
  photos (people neither the student nor the judge saw; seed 1, 256 px), converted whole by the student.
  The judge is `toon_likeness.py`'s (webtoon characters against `faces/face_recognition`'s photos). It
  reads faces, so every whole frame is judged at its faces: each face is cropped from the photo, the
  teacher's frame and the student's frame by the same alignment (the photo's face mesh, as the face
  stage aligns), and a frame is called webtoon when its faces' mean probability is above 0.5. Target:
  the student's share >= 0.6x the teacher's. Also PSNR against the teacher's frame (identity: the photo).
  Writes ``--out``/heldout_sheet.png (photo / teacher / student).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
FULLBODY = REPO / "recipes" / "fullbody.yaml"
HAMILTON = ASSETS / "video" / "short_hamilton_clip.mp4"


def recipe(overrides: list[str], face_pairs: bool = False, source: dict | None = None, video: bool = True):
    """`recipes/fullbody.yaml` with the Hamilton clip added (``video``), ``overrides``; face crops instead of
    scenes (its scene-only sections and gates dropped) with ``face_pairs``; another ``source`` when given."""
    from factory.recipe import Resolved, validate
    from toonfactory.recipe import RunRecipe, load

    videos = [f"source.videos=[{HAMILTON}]"] if video else []
    resolved = load(FULLBODY, [*videos, "tracking.mode=none", *overrides])
    if not face_pairs and source is None:
        return resolved
    data = resolved.to_dict()
    if face_pairs:
        data.pop("scene", None)
        data["output"]["frame"] = "face"
        for gate in ("face_on_toon", "max_seam"):
            data["gates"].pop(gate, None)
    if source is not None:
        data["source"] = source
    return Resolved(validate(data, f"{FULLBODY.name} ({'face pairs' if face_pairs else 'scene pairs'})", RunRecipe),
                    resolved.origin)


def make(resolved, out: Path) -> tuple[Path, float]:
    """Generate ``resolved``'s pairs into ``out`` in this process; (folder, wall seconds)."""
    from factory import executors
    from factory.generate import generate

    started = time.perf_counter()
    result = generate(resolved, out, executors.choose("local", 1))
    seconds = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"{out}: {len(result.failed)} shard(s) failed")
    return out, seconds


def shard_stats(data: Path):
    """Counts, rejects by reason and stage seconds summed over ``data``'s shard stats."""
    from factory.dataset.report import shard_stats as records
    from factory.dataset.stats import RunStats

    return RunStats.merge(records(data))


def speed_table(count: int, size: int, root: Path, video: bool) -> None:
    settings = {"scene pairs": False, "face pairs": True}
    best: dict[str, tuple[float, dict]] = {}
    for repeat in range(2):
        for name, face_pairs in settings.items():
            resolved = recipe([f"output.size={size}", f"output.count={count}", f"output.shard_size={count}",
                               f"seed={repeat}"], face_pairs, video=video)
            data, seconds = make(resolved, root / f"{name.split()[0]}-{repeat}")
            stats = shard_stats(data)
            rate = stats.accepted / seconds
            if name not in best or rate > best[name][0]:
                best[name] = (rate, stats)
    sources = "the packaged portraits" + (" and the Hamilton clip" if video else "")
    print(f"\n### speed: pairs per second at {size} px from {sources}, one process ({count} pairs each, faster of 2 runs)\n")
    print("| pairs | pairs/s | candidates/s | teacher ms / candidate | accepted / attempted | vs face pairs |")
    print("|---|---:|---:|---:|---:|---:|")
    face_rate = best["face pairs"][0]
    for name, (rate, stats) in best.items():
        teacher = stats.seconds.get("teacher")
        per = f"{1000 * teacher / stats.attempted:.0f}" if teacher and stats.attempted else "-"
        print(f"| {name} | {rate:.2f} | {rate * stats.attempted / max(stats.accepted, 1):.2f} | {per} | "
              f"{stats.accepted} / {stats.attempted} | {rate / face_rate:.2f}x |")


def label(image: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((22, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    return np.vstack([image, strip])


def pair_sheet(data: Path, entries: list, path: Path, photos: int = 3, frames: int = 5) -> Path:
    """real | toon of ``photos`` photo pairs and ``frames`` video frames spread over the clip, each under
    its key, the seam energy of its faces and the median CIEDE2000 of face to body skin."""
    from factory.dataset.reader import read_field
    from factory.images import decode_png

    stills = [e for e in entries if "#" not in str(e.meta["source"].get("item", ""))][:photos]
    video = sorted((e for e in entries if "#" in str(e.meta["source"].get("item", ""))),
                   key=lambda e: int(str(e.meta["source"]["item"]).rsplit("#", 1)[1]))
    chosen = stills + [video[i] for i in np.linspace(0, len(video) - 1, frames).round().astype(int)] if video else stills
    cells = []
    for entry in chosen:
        faces = entry.meta.get("teacher", {}).get("faces") or []
        seams = "/".join(f"{f['seam']:.2f}" for f in faces if f.get("seam") is not None)
        skin = [f["skin"]["delta_e"] for f in faces if (f.get("skin") or {}).get("delta_e") is not None]
        text = f"{entry.key} seam {seams or '-'}" + (f" skin dE {np.median(skin):.1f}" if skin else "")
        pair = np.hstack([decode_png(read_field(data, entry, side)) for side in ("real", "toon")])
        cells.append(label(cv2.resize(pair, (512, 256), interpolation=cv2.INTER_AREA), text))
    while len(cells) % 4:
        cells.append(np.full_like(cells[0], 255))
    rows = [np.hstack([np.pad(c, ((0, 4), (0, 4), (0, 0)), constant_values=255) for c in cells[i:i + 4]])
            for i in range(0, len(cells), 4)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return path


def seam_table(data: Path, sheet: Path) -> None:
    from factory.dataset.reader import index_samples

    seams, scene_seams, delta_e, several, pairs = [], [], [], 0, 0
    entries = list(index_samples(data))
    for entry in entries:
        faces = entry.meta.get("teacher", {}).get("faces") or []
        pairs += 1
        several += len(faces) > 1
        for face in faces:
            if face.get("seam") is not None:
                seams.append(face["seam"])
            if face.get("seam_scene") is not None:
                scene_seams.append(face["seam_scene"])
            skin = face.get("skin") or {}
            if skin.get("delta_e") is not None:
                delta_e.append(skin["delta_e"])
    stats = shard_stats(data)
    q = lambda values, p: f"{np.percentile(values, p):.2f}" if values else "-"  # noqa: E731
    print(f"\n### seams and skin: {data} ({pairs} pairs, {len(seams)} pasted faces, {several} pairs with several; "
          f"rejects {stats.rejected})\n")
    print("| measure | median | 90th pct | max | target | met |")
    print("|---|---:|---:|---:|---:|---|")
    print(f"| seam energy (boundary / band) | {q(seams, 50)} | {q(seams, 90)} | {q(seams, 100)} | <= 1.5 | "
          f"{'yes' if seams and np.median(seams) <= 1.5 else 'no'} ({np.mean(np.array(seams) <= 1.5):.0%} of faces) |")
    print(f"| the scene drawing's own, same boundary | {q(scene_seams, 50)} | {q(scene_seams, 90)} | {q(scene_seams, 100)} | - | - |")
    print(f"| CIEDE2000 drawn face skin vs body skin ({len(delta_e)} faces with body skin) | {q(delta_e, 50)} | "
          f"{q(delta_e, 90)} | {q(delta_e, 100)} | <= 8 | {'yes' if delta_e and np.median(delta_e) <= 8 else 'no'} |")
    print(f"\nwrote {pair_sheet(data, entries, sheet)} (real | toon; seam energy of each pasted face, skin CIEDE2000)")


def heldout_photos(root: Path) -> Path:
    folder = root / "deepface"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for path in sorted((ASSETS / "faces" / "deepface").glob("*.jpg")):
            (folder / path.name).symlink_to(path)
    return folder


def face_crops(images: list[np.ndarray], landmarks: list) -> list[list[np.ndarray]]:
    """For each face mesh (in the frames' pixels), its 256 px aligned crop from every image in ``images``."""
    from factory.faces import _mesh_face, alignment_matrix, crop

    matrices = [alignment_matrix(_mesh_face(np.asarray(points, np.float64)).keypoints5(), 256) for points in landmarks]
    return [[crop(image, matrix, 256) for matrix in matrices] for image in images]


def likeness_table(student_path: Path, count: int, root: Path, sheet: Path, pairs_dir: Path | None = None) -> None:
    """The judge on held-out scene pairs made here, or on ``pairs_dir``'s pairs (e.g. the student's own
    training set: what it learned at the scale it trained on)."""
    from distill.infer import Student, to_input, to_uint8
    from distill_quality import factory_code_hash
    from factory.dataset.reader import index_samples, read_field
    from factory.images import decode_png
    from factory.teachers.style_features import feature_matrix
    from toon_likeness import aligned_folder, fit_judge, webtoon_characters

    what = f"scene pairs of {pairs_dir}"
    if pairs_dir is None:
        resolved = recipe(["seed=1", f"output.count={count}", "output.size=256", "output.shard_size=20"],
                          source={"kind": "folder", "path": str(heldout_photos(root))})
        pairs_dir, _ = make(resolved, root / f"heldout-{resolved.hash}-{factory_code_hash()}")
        what = "held-out scene pairs of faces/deepface (256 px)"

    photos = sorted(p for p in (ASSETS / "faces" / "face_recognition").rglob("*")
                    if p.suffix.lower() in {".jpg", ".jpeg", ".png"} and "edge_cases" not in p.parts)
    art = aligned_folder(webtoon_characters(ASSETS))
    seen = aligned_folder(photos)
    judge, accuracy = fit_judge([c for _, c, _ in art], [c for _, c, _ in seen])

    student = Student(student_path, device="cpu")
    rows = {"photo (identity)": [], "teacher": [], "student": []}
    face_p = {name: [] for name in rows}
    frame_p = {name: [] for name in rows}
    psnr = {name: [] for name in rows}
    for entry in index_samples(pairs_dir):
        real, toon = decode_png(read_field(pairs_dir, entry, "real")), decode_png(read_field(pairs_dir, entry, "toon"))
        drawn = to_uint8(student(to_input(real, student.multiple)[None])[0], *real.shape[:2])
        images = {"photo (identity)": real, "teacher": toon, "student": drawn}
        faces = [f["landmarks"] for f in entry.meta["faces"]["faces"] if len(f.get("landmarks") or []) >= 468]
        if not faces:
            continue
        crops = face_crops(list(images.values()), faces)
        for name, face_set in zip(images, crops):
            p = judge.probability(feature_matrix(face_set))
            face_p[name].extend(p.tolist())
            frame_p[name].append(float(p.mean()))
            rows[name].append(images[name])
            psnr[name].append(cv2.PSNR(images[name], toon))
    frames = len(frame_p["teacher"])
    print(f"\n### likeness: {frames} {what} ({len(face_p['teacher'])} faces), "
          f"student {student_path} ({student.backend})\n")
    print(f"judge: {len(art)} webtoon characters vs {len(seen)} face_recognition photos, 5-fold CV accuracy {accuracy:.1%}\n")
    print("| frames drawn by | called webtoon (frames) | faces called webtoon | mean P(webtoon) | PSNR vs teacher dB |")
    print("|---|---:|---:|---:|---:|")
    for name in rows:
        teacher_psnr = "-" if name == "teacher" else f"{np.mean(psnr[name]):.2f}"
        print(f"| {name} | {np.mean(np.array(frame_p[name]) > 0.5):.0%} | {np.mean(np.array(face_p[name]) > 0.5):.0%} | "
              f"{np.mean(face_p[name]):.2f} | {teacher_psnr} |")
    share = {name: np.mean(np.array(frame_p[name]) > 0.5) for name in rows}
    ratio = share["student"] / share["teacher"] if share["teacher"] else float("nan")
    print(f"\nstudent's share over the teacher's: {ratio:.2f}x (target >= 0.6x: {'met' if ratio >= 0.6 else 'not met'})")
    columns = [np.vstack([rows[name][i] for name in rows]) for i in range(min(10, frames))]
    sheet.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sheet), cv2.cvtColor(np.hstack(columns), cv2.COLOR_RGB2BGR))
    print(f"wrote {sheet} (rows: photo / teacher / student)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a finished scene dataset (toonfactory run recipes/fullbody.yaml)")
    parser.add_argument("--student", type=Path, help="a whole-frame student: checkpoint folder or .onnx")
    parser.add_argument("--speed-count", type=int, default=12, help="pairs per speed run (0: no speed table)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--speed-video", action="store_true", help="speed on the Hamilton clip too (its small "
                        "faces make face crops at 512 px mostly `blurry` rejects, so pairs/s compare rejects)")
    parser.add_argument("--heldout-count", type=int, default=40)
    parser.add_argument("--likeness-on-data", action="store_true", help="with --data and --student: the judge on "
                        "--data's pairs too (the student's training pairs, when --data made it)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/scene_quality"))
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="scene_quality-"))
    if args.speed_count:
        speed_table(args.speed_count, args.size, root, args.speed_video)
    if args.data:
        seam_table(args.data, args.out / "scene_pairs.png")
    if args.student:
        args.out.mkdir(parents=True, exist_ok=True)
        likeness_table(args.student, args.heldout_count, args.out, args.out / "heldout_sheet.png")
        if args.data and args.likeness_on_data:
            likeness_table(args.student, 0, args.out, args.out / "data_sheet.png", args.data)


if __name__ == "__main__":
    main()
