"""Running the student on folders of images and on videos, fast.

Three threads, joined by bounded queues: a reader decodes frames and preprocesses them (whole
frames padded to the model's multiple, or aligned face crops) into batches; the model runs the
batches; a writer composes (pastes faces back) and encodes the outputs. Decoding, detection and
encoding (OpenCV, PIL, mediapipe release the GIL) overlap with the model, which never waits on the
CPU when it need not.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from distill.config import DEFAULT_MODEL, KEEP, MAX_PIXELS, InferConfig
from factory.errors import Interrupted, ModelLoadError, UserError
from factory.files import FolderLock, disk_full, output_folder, refuse_out_in_inputs, staged, subfolder, write_atomic
from factory.images import (VIDEO_SUFFIXES, BadImage, fit_pixels, from_unit, named_files, open_video, read_image,
                            to_unit)

log = logging.getLogger(__name__)



class Student:
    """The student as a function of float32 NCHW arrays in [-1, 1]: a PyTorch checkpoint or an ONNX file."""

    def __init__(self, path: Path, device: str = "auto", half: bool = False):
        path = Path(path)
        if path.suffix == ".onnx":
            self._load_onnx(path)
        else:
            self._load_torch(path, device, half)
        self.size = int(self.record["size"])
        self.multiple = 2 ** int(self.record["student"]["depth"])
        # What it learnt from: face crops are converted face by face, scenes (and older records) whole.
        self.mode = "face" if self.record.get("frame") == "face" else "whole"

    def _load_onnx(self, path: Path) -> None:
        from distill.export import checked_record, read_record
        from factory.models.onnx import open_session

        self.session = open_session(path, "an exported student (.onnx)", gpu=True)
        inputs = [(i.name, len(i.shape)) for i in self.session.get_inputs()]
        if inputs != [("input", 4)]:  # another model: its inputs would be missing from every call
            raise ModelLoadError(path, f"an exported student takes one NCHW input named `input`; this model takes "
                                       f"{', '.join(name for name, _ in inputs) or 'nothing'}")
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "student" in metadata:
            try:
                self.record = checked_record(json.loads(metadata["student"]), f"{path} (its `student` metadata)")
            except json.JSONDecodeError as exc:
                raise ModelLoadError(path, f"its `student` metadata is not JSON ({exc})") from None
        else:
            self.record = read_record(path.with_name("student.json"))
        self.backend = f"onnxruntime ({self.session.get_providers()[0]})"
        self.on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"

    def _load_torch(self, path: Path, device: str, half: bool) -> None:
        import torch

        from distill.export import load_student
        from distill.models import for_inference
        from factory.models.tensors import pick_device

        model, self.record = load_student(path)
        self.model = for_inference(model)  # upsampling convolutions as transposed ones, BatchNorm folded
        self.device = pick_device(device)
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.model.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self.session = None
        self.backend = f"pytorch ({self.device.type}, {str(self.dtype).removeprefix('torch.')})"
        self.on_cpu = self.device.type == "cpu"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.session is not None:
            return self.session.run(None, {"input": batch})[0]
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device, self.dtype, non_blocking=True)
            tensor = tensor.contiguous(memory_format=torch.channels_last)
            return self.model(tensor).float().cpu().numpy()


def to_input(image: np.ndarray, multiple: int) -> np.ndarray:
    """RGB uint8 H×W×3 to float32 3×H'×W' in [-1, 1], reflect-padded on the bottom/right to ``multiple``."""
    height, width = image.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
    return to_unit(image)


def working_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) reduced so that the longer side is at most ``side`` (0: as it is)."""
    if not side or max(height, width) <= side:
        return height, width
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` at (height, width): area-averaged down, cubic up, untouched at its size."""
    if image.shape[:2] == (height, width):
        return image
    smaller = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_CUBIC)


def to_uint8(output: np.ndarray, height: int, width: int) -> np.ndarray:
    """Model output 3×H'×W' in [-1, 1] to RGB uint8, cropped back to H×W."""
    return from_unit(output[:, :height, :width])


# -- what flows between the threads ---------------------------------------------------------------


@dataclass
class Target:
    """Where one input's results go: an image file, or a video writer fed frame by frame."""

    source: Path
    output: Path
    video: bool
    root: Path  # the output folder: folders below it on the way to ``output`` are made, never followed
    fps: float = 25.0
    skipped: str | None = None  # why a video stopped in its middle: its output is not kept

    def output_folder(self) -> Path:
        """The folder of ``output``, made inside ``root`` (a link on the way is refused)."""
        return subfolder(self.root, self.output.parent.relative_to(self.root))


@dataclass
class Frame:
    target: Target
    index: int
    image: np.ndarray
    matrices: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray | None] = field(default_factory=list)
    mask: np.ndarray | None = None
    work: tuple[int, int] | None = None  # whole mode: the (height, width) the model converts

    @property
    def done(self) -> bool:
        return all(out is not None for out in self.outputs)


@dataclass
class Batch:
    """New frames, in order, and the inputs of (frame, slot) pieces for one model stacked in ``array``."""

    frames: list[Frame]
    pieces: list[tuple[Frame, int]]
    array: np.ndarray | None
    model: str = DEFAULT_MODEL


_END = object()
# On a CPU a batch's activations should stay in cache: 8 whole 640×384 frames in one call ran 1.4× slower
# per frame than one at a time (ONNX Runtime, 2 cores); 4 face crops of 256 px fit, as fast as 8.
CPU_BATCH_PIXELS = 1 << 18


class VideoFile:
    """One output video, written under a temporary name and renamed over its own name only once it is
    closed and reads back with every frame written; otherwise removed, and a UserError names it."""

    def __init__(self, target: Target, width: int, height: int):
        self.target, self.frames = target, 0
        self._stage = staged(target.output)
        self.tmp = self._stage.__enter__()
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), target.fps, (width, height))
        if not self.writer.isOpened():
            self._fail(f"{target.output}: OpenCV cannot write an mp4v video here")

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()
        capture = cv2.VideoCapture(str(self.tmp))
        readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if readable < self.frames:
            free = shutil.disk_usage(self.tmp.parent).free
            self._fail(f"{self.target.output}: only {readable} of {self.frames} frames could be written "
                       f"({free / 1e6:.0f} MB free on its disk); not kept")
        self._stage.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        self.writer.release()
        self._stage.__exit__(type(exc), exc, exc.__traceback__)

    def _fail(self, message: str):
        error = UserError(message)
        self.abort(error)
        raise error


def collect_targets(inputs: list[Path], out_dir: Path) -> list[Target]:
    """Image files, folders of images (recursively) and video files, each with its output path.

    Outputs keep the inputs' sub-paths below the folder the inputs share (a folder keeps its own
    name), so two inputs never get one output; an output that would replace an input is refused.
    """
    files = named_files(inputs, "input not found (give image files, folders of images or video files)")
    files = list(dict.fromkeys(p.resolve() for p in files))
    if not files:
        return []
    roots = [p.parent for p in files] + [Path(i).resolve().parent for i in inputs if Path(i).is_dir()]
    base = Path(os.path.commonpath(roots))
    names = [p.relative_to(base).with_suffix(".mp4" if p.suffix.lower() in VIDEO_SUFFIXES else ".png") for p in files]
    taken = Counter(names)
    names = [n.with_name(f"{p.stem}_{p.suffix[1:]}{n.suffix}") if taken[n] > 1 else n for p, n in zip(files, names)]
    out_dir = Path(out_dir).resolve()
    targets = [Target(p, out_dir / n, p.suffix.lower() in VIDEO_SUFFIXES, out_dir) for p, n in zip(files, names)]
    if len({t.output for t in targets}) < len(targets):
        raise UserError(f"--out {out_dir}: two inputs would share an output name; rename one of them")
    sources = set(files)
    for target in targets:
        if target.output in sources:
            raise UserError(f"--out {out_dir}: would write {target.output} over an input; choose a folder that "
                            "holds no input")
    return targets


def read_frames(target: Target, max_frames: int | None, max_pixels: int = MAX_PIXELS) -> Iterator[np.ndarray]:
    if not target.video:
        yield read_image(target.source, fit_pixels=max_pixels)
        return
    capture = open_video(target.source)
    target.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(fit_pixels(frame, max_pixels), cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class Inference:
    """One inference run over many inputs; see the module docstring for the threads.

    In face mode, videos are tracked (``distill.tracks``): faces are detected every
    ``detect_every`` frames, followed in between, keep one id per person across cuts (when an
    ``embedder`` is given), are aligned on stabilised keypoints, and are converted by the model their
    track or recognised actor is assigned (``students`` by name, ``assignment``).
    """

    def __init__(self, student: Student, config: InferConfig = InferConfig(), *, embedder=None,
                 recognise: Callable[[np.ndarray], str | None] | None = None, students: dict[str, Student] | None = None):
        config = config.for_student(student.mode)
        self.config, self.student = config, student
        self.mode, self.batch_size, self.max_pixels, self.person_only = config.mode, config.batch_size, config.max_pixels, config.person_only
        self.students = {DEFAULT_MODEL: student, **(students or {})}
        self.assignment = config.assignment
        self.masker, self.inpainter = None, None
        if config.person_only:
            from factory.stages.inpaint import OpenCVInpainter
            from factory.stages.segment import build_mask

            self.masker = build_mask("mediapipe")
            self.inpainter = OpenCVInpainter() if config.person_only == "stylize" else None
        self.embedder, self.recognise = embedder, recognise
        self.batches: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.results: queue.Queue = queue.Queue(maxsize=config.queue_size * config.batch_size)
        self.detector = None
        if config.mode == "face":
            from factory.faces import build_detector

            options = {"cascade": config.cascade} if config.cascade is not None else {}
            self.detector = build_detector(config.detector, min_size=24, **options)
        self.tracks = None
        self.tracks_models: dict[int, str] = {}  # track id -> the model it was converted with
        self.stats = {"images": 0, "videos": 0, "frames": 0, "faces": 0, "skipped": 0, "written": 0}
        self.seconds: dict[str, float] = defaultdict(float)  # per part of the pipeline, summed over threads
        self.errors: list[BaseException] = []
        self.stopped = False  # set when the model's thread ends early

    # reader thread --------------------------------------------------------------------------------

    def _pieces(self, frame: Frame) -> list[tuple[str, np.ndarray]]:
        """(model, input) pieces of a frame; a face's model is the one its track or actor is assigned."""
        if self.mode == "whole":
            images = [frame.image]
            if self.person_only:
                from factory.stages.person_only import person_only_inputs

                # the person mask (and, to restyle the background, the frame with the person removed)
                # is made here, beside the model; the writer composites
                frame.mask, images = person_only_inputs(frame.image, self.masker, self.person_only, self.inpainter)
            frame.work = working_size(*frame.image.shape[:2], self.config.whole_side)
            frame.outputs = [None] * len(images)
            return [(DEFAULT_MODEL, to_input(resized(image, *frame.work), self.student.multiple)) for image in images]
        from factory.faces import alignment_matrix, crop

        if self.tracks is not None:
            found = []
            for face in self.tracks(frame.image):
                found.append((face.keypoints, self.assignment.model_for(face.track, face.actor)))
                self.tracks_models[face.track] = found[-1][1]
        else:
            t0 = time.perf_counter()
            found = [(face.keypoints5(), DEFAULT_MODEL) for face in self.detector.detect(frame.image)[: self.config.max_faces]]
            self.seconds["detect"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        pieces = []
        for keypoints, model in found:
            if model == KEEP:
                continue
            student = self.students[model]
            matrix = alignment_matrix(keypoints, student.size, self.config.margin)
            frame.matrices.append(matrix)
            pieces.append((model, to_input(crop(frame.image, matrix, student.size), student.multiple)))
        frame.outputs = [None] * len(pieces)
        self.stats["faces"] += len(pieces)
        self.seconds["align"] += time.perf_counter() - t0
        return pieces

    def _start_tracks(self, target: Target) -> None:
        from distill.tracks import FaceTracks

        self.tracks, self.tracks_models = None, {}
        if target.video and self.config.tracks_videos:
            self.tracks = FaceTracks(self.detector, self.embedder, self.config, fps=target.fps, recognise=self.recognise)

    def _finish_tracks(self, target: Target) -> None:
        if self.tracks is None:
            return
        for part, seconds in self.tracks.seconds.items():
            self.seconds[part] += seconds
        target.output_folder()
        models = {track: model or "default" for track, model in self.tracks_models.items()}
        self.tracks.write(target.output.with_name(f"{target.output.stem}.tracks.json"), target.source, models)
        for key in ("tracks", "detections", "embeddings", "cuts"):
            self.stats[key] = self.stats.get(key, 0) + self.tracks.summary()[key]

    def _read(self, targets: list[Target]) -> None:
        try:
            frames: list[Frame] = []
            buffers: dict[str, tuple[list[tuple[Frame, int]], list[np.ndarray]]] = {}

            def flush():
                for model, (pieces, arrays) in buffers.items():
                    self.batches.put(Batch(list(frames), list(pieces), np.stack(arrays), model))
                    frames.clear()
                if frames:
                    self.batches.put(Batch(list(frames), [], None))
                frames.clear(), buffers.clear()

            for target in targets:
                self.stats["videos" if target.video else "images"] += 1
                try:
                    self.tracks = None  # until a video's first frame starts its tracks
                    decoded = read_frames(target, self.config.max_frames, self.max_pixels)
                    index = 0
                    while True:
                        t0 = time.perf_counter()
                        image = next(decoded, None)
                        self.seconds["decode"] += time.perf_counter() - t0
                        if image is None:
                            break
                        if index == 0:
                            self._start_tracks(target)
                        frame = Frame(target, index, image)
                        for slot, (model, array) in enumerate(self._pieces(frame)):
                            pieces, arrays = buffers.setdefault(model, ([], []))
                            batch_pixels = array[0].size * (len(arrays) + 1)
                            budget = min(self.max_pixels, CPU_BATCH_PIXELS) if self.students[model].on_cpu else self.max_pixels
                            if arrays and (array.shape != arrays[0].shape or len(arrays) >= self.batch_size
                                           or batch_pixels > budget):
                                flush()
                                pieces, arrays = buffers.setdefault(model, ([], []))
                            pieces.append((frame, slot))
                            arrays.append(array)
                        frames.append(frame)
                        self.stats["frames"] += 1
                        index += 1
                    self._finish_tracks(target)
                except BadImage as exc:
                    target.skipped = str(exc)  # set before any later frame is queued: the writer drops its video
                    log.warning("%s: skipped (%s)", target.source, exc)
                    self.stats["skipped"] += 1
            flush()
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.errors.append(exc)
        finally:
            self.batches.put(_END)

    # writer thread --------------------------------------------------------------------------------

    def _compose(self, frame: Frame) -> np.ndarray:
        if self.mode == "whole":
            outputs = [resized(output, *frame.image.shape[:2]) for output in frame.outputs]
            if not self.person_only:
                return outputs[0]
            from factory.stages.person_only import person_only_compose

            return person_only_compose(frame.image, frame.mask, outputs)
        from factory.faces import paste_back

        image = frame.image
        for matrix, styled in zip(frame.matrices, frame.outputs):
            image = paste_back(image, styled, matrix, oval=True)
        return image

    def _write(self, inputs: int, on_frame: Callable[[int, int, int], None] | None) -> None:
        video: VideoFile | None = None  # inputs come one after another: one video is open at a time
        frames, ended = 0, False
        try:
            while (frame := self.results.get()) is not _END:
                t0 = time.perf_counter()
                image = self._compose(frame)
                t1 = time.perf_counter()
                self.seconds["paste"] += t1 - t0
                target = frame.target
                if video is not None and video.target is not target:
                    video, finished = None, video
                    self._close(finished)
                target.output_folder()
                bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                if not target.video:
                    ok, data = cv2.imencode(".png", bgr)
                    if not ok:
                        raise ValueError(f"{target.source}: the output cannot be encoded as PNG")
                    write_atomic(target.output, data.tobytes())
                    self.stats["written"] += 1
                else:
                    if video is None:
                        video = VideoFile(target, *image.shape[1::-1])
                    video.write(bgr)
                self.seconds["encode"] += time.perf_counter() - t1
                frames += 1
                if on_frame is not None:
                    on_frame(frames, self.stats["written"] + (video is not None), inputs)
            ended = True
            if video is not None:
                video, finished = None, video
                if self.stopped or self.errors:  # the run ended early: its frames so far are not an output
                    finished.abort(UserError("the run stopped before the video's last frame"))
                else:
                    self._close(finished)
        except BaseException as exc:
            if video is not None:
                video.abort(exc)
            self.errors.append(exc)
            while not ended and self.results.get() is not _END:  # keep draining: the model thread never blocks
                pass

    def _close(self, video: VideoFile) -> None:
        if video.target.skipped:  # stopped in its middle: the frames written so far are not an output
            video.abort(BadImage("skipped", video.target.skipped))
            return
        video.close()
        self.stats["written"] += 1

    # main thread: the model -----------------------------------------------------------------------

    def run(self, targets: list[Target], on_frame: Callable[[int, int, int], None] | None = None) -> dict:
        """Process every target; returns counts, seconds (wall, and per part) and the time the model
        spent waiting for input. ``on_frame(frames, files, inputs)`` hears of each frame written: frames
        written, output files begun, and the inputs in all (called from the writer thread). ``written``
        counts finished files: a video counts once it is closed and reads back whole."""
        start = time.perf_counter()
        reader = threading.Thread(target=self._read, args=(targets,), name="infer-reader", daemon=True)
        writer = threading.Thread(target=self._write, args=(len(targets), on_frame), name="infer-writer", daemon=True)
        reader.start(), writer.start()
        pending: deque[Frame] = deque()
        waited = 0.0
        try:
            while True:
                t0 = time.perf_counter()
                batch = self.batches.get()
                waited += time.perf_counter() - t0
                if batch is _END:
                    break
                pending.extend(batch.frames)
                if batch.array is not None:
                    student = self.students[batch.model]
                    t0 = time.perf_counter()
                    outputs = student(batch.array)
                    self.seconds["model"] += time.perf_counter() - t0
                    for (frame, slot), output in zip(batch.pieces, outputs):
                        height, width = frame.work if self.mode == "whole" else (student.size,) * 2
                        frame.outputs[slot] = to_uint8(output, height, width)
                while pending and pending[0].done:
                    frame = pending.popleft()
                    self.results.put(frame)
        except BaseException:  # Ctrl-C or a model error: the writer drops the video it has open
            self.stopped = True
            raise
        finally:
            self.results.put(_END)
            writer.join()
            reader.join(timeout=5)
        if self.errors:
            raise self.errors[0]
        return {
            **self.stats,
            "seconds": round(time.perf_counter() - start, 3),
            "model_seconds": round(self.seconds["model"], 3),
            "model_waited_seconds": round(waited, 3),
            "part_seconds": {part: round(seconds, 3) for part, seconds in self.seconds.items()},
            "backend": self.student.backend,
        }


def infer(model: Path, inputs: list[Path], out_dir: Path, config: InferConfig = InferConfig(), *, embedder=None,
          recognise: Callable[[np.ndarray], str | None] | None = None,
          on_frame: Callable[[int, int, int], None] | None = None) -> dict:
    """Run the student (checkpoint folder, .safetensors or .onnx) on images, folders and videos, as
    ``config`` says (see :class:`distill.config.InferConfig`; checked when it was made).

    Images and frames above ``config.max_pixels`` are decoded reduced (memory stays bounded whatever the
    input); outputs keep the inputs' sub-paths and never replace an input; ``written`` counts files.

    ``person_only``: only people are converted (mediapipe selfie masks); the background is kept, or
    inpainted and converted too (``stylize``). In face mode, videos are tracked; ``config.embedder``
    (``dlib``, an .onnx path, or ``none`` for motion only; ``embedder``, an embedder already loaded,
    takes its place) re-identifies people across cuts; ``assign`` items ``TRACK_ID=MODEL`` or
    ``ACTOR=MODEL`` (actors named by ``recognise``) pick another model, or ``keep``, for some faces;
    ``<video>.tracks.json`` is written beside each output.
    ``on_frame(frames, files, inputs)`` hears of each frame written (progress; see :meth:`Inference.run`).
    """
    output_folder(out_dir)
    assignment = config.assignment
    if assignment.actors and recognise is None:
        raise UserError(f"--assign {sorted(assignment.actors)[0]}=...: actor names need --gallery (track ids are numbers)")
    refuse_out_in_inputs(out_dir, inputs)  # after the options: a mistaken option is named first
    targets = collect_targets(inputs, Path(out_dir))
    if not targets:
        raise UserError(f"{', '.join(map(str, inputs))}: no images or videos found")
    student = Student(model, device=config.device, half=config.half)
    config = config.for_student(student.mode)
    students = {name: Student(Path(name), device=config.device, half=config.half) for name in sorted(assignment.models)}
    if embedder is None and config.tracks_videos and config.embedder != "none":
        from factory.models.embedding import build_embedder

        embedder = build_embedder(config.embedder)
    inference = Inference(student, config, embedder=embedder, recognise=recognise, students=students)
    with FolderLock(out_dir, f"toonfactory infer --out {out_dir}", kind="infer"):
        try:
            return inference.run(targets, on_frame)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {inference.stats['written']} output(s) written whole to {out_dir} are "
                              "kept, the one being written was dropped; re-run the same command to convert "
                              "them all") from None
        except OSError as exc:
            full = disk_full(exc, f"{inference.stats['written']} outputs written to {out_dir}")
            if full is None:
                raise
            raise full from None
