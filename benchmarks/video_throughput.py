"""End-to-end frames per second of `infer` on a video: whole frames, and face mode with and without tracks.

Every part is timed where it runs (reader thread: decode, detect, embed, track, align; main thread:
model; writer thread: paste, encode); the shares are of their sum. "hidden" is how much of that sum
the three threads overlap: 1 - wall / sum. "model waits" is the share of wall time the model
thread waited for input. Face mode runs per-frame detection (tracks off, the behaviour before
tracks) as the baseline, then tracks (detect every k frames, optical flow between, dlib
re-identification, stabilised keypoints). Random-weight students (speed does not depend on weights;
``--model`` times a trained one instead); whole frames run in PyTorch and, exported, in ONNX Runtime
(its default threads: one per core), and the model alone in CPU time per frame, one thread (a figure
a shared machine disturbs less than wall time), as trained and in its inference form. ``--whole-only`` skips face mode.
The machine is shared: every setting runs ``--repeat`` times, interleaved, and its fastest run is shown.

    .venv/bin/python benchmarks/video_throughput.py [--video V] [--frames 150] [--ngf 16] [--sizes 256 512]
        [--model STUDENT] [--threads 2] [--whole-only]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
from pathlib import Path

from distill.config import InferConfig
from distill.export import export
from distill.infer import infer
from distill.train import save_random_student

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "assets" / "video" / "short_hamilton_clip.mp4"
PARTS = ("decode", "detect", "embed", "track", "align", "model", "paste", "encode")


def model_cpu_table(whole: Path, onnx: Path, video: Path, frames: int, scratch: Path) -> None:
    """The model alone on ``frames`` frames, one thread, in CPU seconds (what the other jobs on a shared
    machine take from wall time, CPU time mostly keeps): frames per core-second, PyTorch and ONNX Runtime."""
    import time

    import cv2
    import numpy as np
    import onnxruntime as ort
    import torch

    from distill.export import load_student
    from distill.infer import Student, to_input

    from factory.images import open_video

    capture = open_video(video)
    batch = []
    while len(batch) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    student = Student(whole, device="cpu")
    inputs = [to_input(frame, student.multiple)[None] for frame in batch]
    trained, _ = load_student(whole)  # the baseline: the eval student as trained, no inference form
    plain = scratch / "as_trained.onnx"
    torch.onnx.export(trained, (torch.from_numpy(inputs[0]),), str(plain), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("plain", plain), ("fast", onnx))}
    backends = {
        "pytorch, as trained": lambda x: trained(torch.from_numpy(x)),
        "pytorch, inference form (channels_last)": student,
        "onnxruntime, as trained (it folds BatchNorm itself)": lambda x: sessions["plain"].run(None, {"input": x})[0],
        "onnxruntime, inference form (the export)": lambda x: sessions["fast"].run(None, {"input": x})[0],
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f"\nmodel only, {len(inputs)} frames of {batch[0].shape[1]}x{batch[0].shape[0]} (padded to "
          f"{inputs[0].shape[3]}x{inputs[0].shape[2]}), one thread, CPU time; the inference form folds BatchNorm "
          "and computes each upsampling convolution at low resolution (distill.models.for_inference):\n")
    print("| backend | CPU ms / frame | vs as trained | frames per core-second | x2 cores (if it scaled) | wall ms / frame |")
    print("|---|---:|---:|---:|---:|---:|")
    baseline = None
    for name, run in backends.items():
        with torch.no_grad():
            run(inputs[0])  # warm-up
            cpu, wall = time.process_time(), time.perf_counter()
            for x in inputs:
                run(x)
        cpu, wall = (time.process_time() - cpu) / len(inputs), (time.perf_counter() - wall) / len(inputs)
        baseline = cpu if "as trained" in name else baseline
        print(f"| {name} | {1000 * cpu:.0f} | {baseline / cpu:.2f}x | {1 / cpu:.1f} | {2 / cpu:.1f} | {1000 * wall:.0f} |",
              flush=True)
    torch.set_num_threads(threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a trained student (checkpoint folder) for the whole-frame rows")
    parser.add_argument("--threads", type=int, help="PyTorch threads (default: torch's, OMP_NUM_THREADS)")
    parser.add_argument("--whole-only", action="store_true", help="whole frames only (no face mode)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, root, True)  # the random students, exports and converted videos
    whole = args.model or save_random_student(root / "whole", ngf=args.ngf, depth=5, size=args.sizes[0])
    onnx = export(whole, "onnx", root / "whole-onnx")
    model_cpu_table(whole, onnx, args.video, min(args.frames, 30), root)
    runs = [("whole, pytorch", args.sizes[0], {"mode": "whole"}), ("whole, onnxruntime", args.sizes[0], {"mode": "whole"})]
    for size in [] if args.whole_only else args.sizes:
        runs += [("face, per-frame detection", size, {"mode": "face", "track": False}),
                 (f"face, tracks (k={args.detect_every})", size, {"mode": "face", "detect_every": args.detect_every})]
    print(f"{args.video.name}, {args.frames} frames, ngf {args.ngf}, whole frames by {args.model or 'a random student'}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} at start")
    print("| mode | px | fps | vs per-frame | model waits | hidden | " + " | ".join(PARTS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(PARTS))
    best: dict[int, dict] = {}
    for _ in range(args.repeat):
        for number, (name, size, options) in enumerate(runs):
            model = onnx if "onnxruntime" in name else whole if options["mode"] == "whole" else root / f"student{size}"
            if not model.exists():
                save_random_student(model, ngf=args.ngf, depth=5, size=size)
            config = InferConfig.of(batch_size=args.batch_size, max_frames=args.frames, device="cpu", **options)
            summary = infer(model, [args.video], root / "out", config)
            if number not in best or summary["seconds"] < best[number]["seconds"]:
                best[number] = summary
    baseline = {}
    for number, (name, size, options) in enumerate(runs):
        summary = best[number]
        fps = summary["frames"] / summary["seconds"]
        parts = summary["part_seconds"]
        total = sum(parts.get(p, 0.0) for p in PARTS)
        if "per-frame" in name:
            baseline[size] = fps
        ratio = f"{fps / baseline[size]:.2f}x" if "tracks" in name and size in baseline else "-"
        shares = " | ".join(f"{100 * parts.get(p, 0.0) / total:.0f}%" for p in PARTS)
        print(f"| {name} | {size if options['mode'] == 'face' else 'frame'} | {fps:.1f} | {ratio} | "
              f"{100 * summary['model_waited_seconds'] / summary['seconds']:.0f}% | "
              f"{100 * (1 - summary['seconds'] / total):.0f}% | {shares} |", flush=True)


if __name__ == "__main__":
    main()
