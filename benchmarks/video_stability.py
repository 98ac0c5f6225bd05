"""Temporal stability of face-mode video inference: flicker and identity switches, with and without
tracks and smoothing.

Rows: ``per-frame`` (the behaviour before tracks: detect every frame, align on raw keypoints),
``tracks`` (detect every k frames, follow, link; raw keypoints) and ``tracks + stabiliser`` (keypoints
carried by optical flow, corrected toward the detector past a dead band). Frames are composed in memory (no video codec between them), by the same
parts `infer` uses.

- flicker: over pixels of the faces (boxes of this and the previous frame) where the input barely
  changed (grey difference < 3 levels), the mean output change divided by the mean input change;
  1.0 = the output moves only as much as the input, higher = flicker added by the conversion.
- whole mode (``--whole STUDENT``, a whole-frame student): every frame converted whole, the same flicker
  on the same face pixels (faces found every frame, for the region only), and over every pixel of the
  frame that barely changed ("frame" column; in face mode the frame outside faces is the input's).
- identity switches: on the Hamilton clip, against a hand labelling of who is where (the singer,
  before and after the cuts; four audience members by position, from frame 211): times a person's
  track id changes between their consecutive appearances, plus ids shared by two people. On any
  clip: "jumps", a track moving more than one face size between consecutive frames.

    .venv/bin/python benchmarks/video_stability.py [--model CKPT] [--whole CKPT] [--detect-every 5] [--max-frames N]
        [--clips hamilton]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from distill.config import InferConfig
from distill.infer import Student, to_input, to_uint8
from distill.tracks import FaceTracks, track_strip
from distill.train import save_random_student
from factory.faces import alignment_matrix, build_detector, crop, paste_back
from factory.images import BadImage, open_video
from factory.models.embedding import build_embedder

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
HAMILTON = ASSETS / "video" / "short_hamilton_clip.mp4"
PEPPER = ASSETS / "video" / "peppercarrot_scroll.mp4"
CASCADE = ASSETS / "models" / "lbpcascade_animeface.xml"


def hamilton_person(frame: int, box) -> str | None:
    """Hand labels: the singer is the only face found before frame 211 (frames 0-19 and 82-210);
    then four audience members sit still, told apart by the x of their face centre."""
    if frame < 211:
        return "singer"
    centre = (box[0] + box[2]) / 2
    for name, right in (("left woman", 130), ("grandmother", 260), ("barack", 390), ("michelle", 640)):
        if centre < right:
            return name
    return None


def frames_of(path: Path, limit: int | None):
    capture = open_video(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    count = 0
    while limit is None or count < limit:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        yield fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def convert(student: Student, image: np.ndarray, keypoints: list[np.ndarray]) -> np.ndarray:
    matrices = [alignment_matrix(k, student.size) for k in keypoints]
    if not matrices:
        return image
    outputs = student(np.stack([to_input(crop(image, m, student.size), student.multiple) for m in matrices]))
    for matrix, output in zip(matrices, outputs):
        image = paste_back(image, to_uint8(output, student.size, student.size), matrix)
    return image


def convert_whole(student: Student, image: np.ndarray) -> np.ndarray:
    return to_uint8(student(to_input(image, student.multiple)[None])[0], *image.shape[:2])


def measure(path: Path, student: Student, detector, embedder, setting: str, k: int, limit: int | None, labels) -> dict:
    tracks = None
    previous_in = previous_out = previous_boxes = None
    ratios, frame_ratios, jumps, history = [], [], 0, {}
    last_box: dict[int, tuple[int, np.ndarray]] = {}
    start = time.perf_counter()
    for index, (fps, image) in enumerate(frames_of(path, limit)):
        if setting in ("per-frame", "whole"):
            faces = [(None, f.box, f.keypoints5()) for f in detector.detect(image)[:4]]
        else:
            if tracks is None:
                config = InferConfig.of(mode="face", detect_every=k, smooth=setting.endswith("stabiliser"))
                tracks = FaceTracks(detector, embedder, config, fps=fps)
            faces = [(f.track, f.face.box, f.keypoints) for f in tracks(image)]
        output = convert_whole(student, image) if setting == "whole" else convert(student, image, [kp for _, _, kp in faces])
        boxes = [box for _, box, _ in faces]
        grey_in, grey_out = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (image, output))
        if previous_in is not None:
            still = np.abs(grey_in - previous_in) < 3
            if still.sum() > 100:
                change_in = np.abs(grey_in - previous_in)[still].mean()
                frame_ratios.append(np.abs(grey_out - previous_out)[still].mean() / max(change_in, 0.25))
        if previous_in is not None and (boxes or previous_boxes):
            region = np.zeros(grey_in.shape, bool)
            for x0, y0, x1, y1 in (np.round(b).astype(int) for b in [*boxes, *previous_boxes]):
                region[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
            still = region & (np.abs(grey_in - previous_in) < 3)
            if still.sum() > 100:
                change_in = np.abs(grey_in - previous_in)[still].mean()
                ratios.append(np.abs(grey_out - previous_out)[still].mean() / max(change_in, 0.25))
        for track, box, _ in faces:
            if track is None:
                continue
            size = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
            seen = last_box.get(track)
            if seen is not None and seen[0] == index - 1 and np.linalg.norm((box[:2] + box[2:] - seen[1][:2] - seen[1][2:]) / 2) > size:
                jumps += 1
            last_box[track] = (index, box)
            if labels is not None and (person := labels(index, box)) is not None:
                history.setdefault(person, []).append(track)
        previous_in, previous_out, previous_boxes = grey_in, grey_out, boxes
    row = {"flicker": float(np.mean(ratios)) if ratios else float("nan"),
           "frame_flicker": float(np.mean(frame_ratios)) if frame_ratios else float("nan"), "frames": index + 1, "rows": tracks and tracks.rows,
           "seconds": time.perf_counter() - start, "jumps": jumps if tracks else None,
           "tracks": tracks.summary()["tracks"] if tracks else None}
    if labels is not None and tracks is not None:
        switches = sum(int(a != b) for ids in history.values() for a, b in zip(ids, ids[1:]))
        owners: dict[int, set] = {}
        for person, ids in history.items():
            for track in ids:
                owners.setdefault(track, set()).add(person)
        row["switches"] = switches
        row["shared"] = sum(len(people) > 1 for people in owners.values())
        row["ids"] = {person: sorted(set(ids)) for person, ids in history.items()}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="student checkpoint or .onnx (default: random weights, ngf 16, 256 px)")
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--strip", type=Path, help="write a PNG of Hamilton frames with the track ids drawn")
    parser.add_argument("--whole", type=Path, help="a whole-frame student (checkpoint or .onnx): adds a whole-mode row")
    parser.add_argument("--clips", nargs="+", default=["hamilton", "peppercarrot"])
    args = parser.parse_args()
    model = args.model or save_random_student(Path(tempfile.mkdtemp()) / "student", ngf=16, depth=5, size=256)
    student = Student(model, device="cpu")
    whole = Student(args.whole, device="cpu") if args.whole else None
    embedder = build_embedder("dlib")
    clips = [("hamilton", HAMILTON, build_detector("mediapipe", min_size=24), hamilton_person),
             ("peppercarrot", PEPPER, build_detector("anime", min_size=24, cascade=CASCADE), None)]
    print(f"| clip | setting | flicker (out/in change, static face pixels) | frame | tracks | id switches | ids shared | jumps | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path, detector, labels in clips:
        if name not in args.clips:
            continue
        if not path.is_file():
            print(f"| {name} | missing: {path} |")
            continue
        settings = ["per-frame", "tracks", "tracks + stabiliser"] + (["whole"] if whole is not None else [])
        for setting in settings:
            try:
                row = measure(path, whole if setting == "whole" else student, detector, embedder, setting,
                              args.detect_every, args.max_frames, labels)
            except BadImage as exc:  # frames over the pixel limit or changing size: skipped, like a bad image
                print(f"| {name} | skipped: {exc} |")
                break
            fmt = lambda key: "-" if row.get(key) is None else str(row[key])  # noqa: E731
            print(f"| {name} | {setting} | {row['flicker']:.2f} | {row['frame_flicker']:.2f} | {fmt('tracks')} | {fmt('switches')} | "
                  f"{fmt('shared')} | {fmt('jumps')} | {row['seconds']:.0f} |", flush=True)
            if row.get("ids"):
                print(f"|  |  | ids per person: {row['ids']} |")
            if args.strip and name == "hamilton" and setting == "tracks + stabiliser":
                frames = [0, 10, 19, 25, 82, 120, 180, 210, 212, 230, 255, 270]
                strip = track_strip(path, row["rows"], [f for f in frames if f < row["frames"]])
                cv2.imwrite(str(args.strip), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
