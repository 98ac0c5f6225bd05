"""`toonfactory demo MODEL [--whole WHOLE] [--gallery G]`: the student on an uploaded photo, a short video
or a webcam frame (whole frame, faces pasted back, people only) with its time per frame; and a casting
tab that ranks a gallery's actors for a character's images. Runs on a CPU; the models load once.

MODEL converts every output; with ``--whole`` a whole-frame student (trained on scene pairs,
``recipes/fullbody.yaml``) converts the whole and person-only outputs instead, and MODEL (a face-crop
student) the faces: a face-crop student given a whole frame returns the frame.
"""

import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from distill.config import InferConfig
from distill.infer import Inference, Student, Target
from factory.errors import UserError
from factory.images import VIDEO_SUFFIXES, BadImage, encode_png, open_video, read_image
from toonfactory.apps import Sessions

MODES = {"whole": {"mode": "whole"}, "face": {"mode": "face"}, "person only": {"mode": "whole", "person_only": "keep"}}
WHOLE_FRAME_MODES = ("whole", "person only")  # converted by the whole-frame student when there is one
MAX_VIDEO_FRAMES = 90


def to_webm(source: Path) -> Path:
    """Re-encode a video as VP8 WebM, which browsers play (OpenCV writes MPEG-4 part 2); read as every video
    is (``open_video``, frames held to one bounded size)."""
    capture = open_video(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    target, writer = source.with_suffix(".webm"), None
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"VP80"), fps, frame.shape[1::-1])
            writer.write(frame)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return target


class StudentDemo:
    """The students and one inference runner per mode, kept between requests (one request at a time)."""

    def __init__(self, model: Path, whole_model: Path | None = None):
        self.student = Student(model)
        self.whole = Student(whole_model) if whole_model is not None else None
        self.runners: dict[str, Inference] = {}
        self.work = tempfile.TemporaryDirectory(prefix="toonfactory-demo-")
        self.requests = 0
        self.lock = threading.Lock()

    def _runner(self, name: str) -> Inference:
        if name not in self.runners:
            config = InferConfig.of(batch_size=4, max_frames=MAX_VIDEO_FRAMES, **MODES[name])
            self.runners[name] = Inference(self.student_for(name), config)
        return self.runners[name]

    def student_for(self, name: str) -> Student:
        """The student that converts mode ``name``: the whole-frame one for whole frames, when given."""
        return self.whole if self.whole is not None and name in WHOLE_FRAME_MODES else self.student

    def describe(self, name: str) -> str:
        """The output's label: the mode, and which student drew it when there are two."""
        if self.whole is None:
            return name
        return f"{name} (whole-frame student)" if name in WHOLE_FRAME_MODES else f"{name} (face student)"

    def run(self, source: Path, progress=None, work: Path | None = None) -> dict[str, tuple[Path, float]]:
        """Every mode on one image or video: the output file and milliseconds per frame, by mode (written
        under ``work``, the session's folder, else this demo's own temporary folder)."""
        video = source.suffix.lower() in VIDEO_SUFFIXES
        with self.lock:
            self.requests += 1
            folder = Path(work or self.work.name) / f"request-{self.requests:05d}"
            results = {}
            for n, name in enumerate(MODES):
                if progress is not None:
                    progress(n / len(MODES), desc=f"{name}: running the student")
                runner = self._runner(name)
                target = Target(source, folder / f"{name.replace(' ', '_')}{'.mp4' if video else '.png'}", video, folder)
                before = runner.stats["frames"]
                try:
                    summary = runner.run([target])
                except BaseException:
                    self.runners.pop(name, None)  # a failed runner's threads and queues are not reused
                    raise
                if target.skipped:  # unreadable, frames too large or changing size: one line, not a broken tab
                    raise UserError(f"{source.name}: {target.skipped}")
                frames = max(summary["frames"] - before, 1)
                output = to_webm(target.output) if video else target.output
                results[name] = (output, 1000 * summary["seconds"] / frames)
        return results

    def run_image(self, image: np.ndarray, progress=None, work: Path | None = None) -> dict[str, tuple[Path, float]]:
        handle, name = tempfile.mkstemp(prefix="upload-", suffix=".png", dir=work or self.work.name)
        with open(handle, "wb") as file:
            file.write(encode_png(image))
        source = Path(name)
        try:
            return self.run(source, progress, work)
        finally:
            source.unlink(missing_ok=True)  # the upload is not kept once its outputs exist


class CastingDemo:
    """A gallery with its embedder and detectors (``casting.caster``, as `cast rank` loads them), loaded
    once; reports written under a temp folder."""

    def __init__(self, gallery_dir: Path, work: Path):
        from casting.caster import load_caster

        self.caster = load_caster(gallery_dir)  # as `cast rank` does, with its defaults
        self.gallery = self.caster.gallery
        self.work = work
        self.runs = 0

    def rank(self, images: list[Path], top: int, progress=None, work: Path | None = None) -> tuple[Path, pd.DataFrame, Path]:
        from casting.report import write_report

        done = [0]

        def tick():
            done[0] += 1
            if progress is not None:
                progress(done[0] / len(images), desc=f"casting: {done[0]} of {len(images)} image(s)")

        result = self.caster(images, top=top, progress=tick)
        self.runs += 1
        paths = write_report(result, self.gallery, (work or self.work) / f"cast-{self.runs:05d}")
        table = pd.DataFrame(result.overall[:top])
        return paths["png"], table, paths["html"]


def build(model: Path, gallery_dir: Path | None = None, whole_model: Path | None = None,
          sessions: Sessions | None = None):
    """The demo's gradio Blocks: a student tab and, with a gallery, a casting tab. Each browser session's
    uploads and outputs are deleted when it ends (``Sessions``)."""
    import gradio as gr

    sessions = sessions or Sessions()
    student = StudentDemo(model, whole_model)
    casting = CastingDemo(gallery_dir, Path(student.work.name)) if gallery_dir is not None else None

    def show(results: dict[str, tuple[Path, float]], reader):
        timings = " · ".join(f"**{name}** {ms:.0f} ms/frame" for name, (_, ms) in results.items())
        models = [f"{student.student.backend}, {student.student.size} px student"]
        if student.whole is not None:
            models.append(f"whole frames: {student.whole.backend}, {student.whole.size} px whole-frame student")
        return (*(reader(path) for path, _ in results.values()), f"{timings} ({'; '.join(models)})")

    def on_image(path, request: gr.Request, progress=gr.Progress()):
        if not path:
            raise gr.Error("upload a photo or take a webcam frame first")
        sessions.claim(request.session_hash, path)
        try:
            image = read_image(Path(path))
        except BadImage as exc:
            raise gr.Error(f"this photo cannot be used: {exc}") from None
        return show(student.run_image(image, progress, sessions.folder(request.session_hash)), str)

    def on_video(path, request: gr.Request, progress=gr.Progress()):
        if not path:
            raise gr.Error("upload a short video first")
        sessions.claim(request.session_hash, path)
        try:
            return show(student.run(Path(path), progress, sessions.folder(request.session_hash)), str)
        except UserError as exc:
            raise gr.Error(str(exc)) from None

    def on_cast(files, top, request: gr.Request, progress=gr.Progress()):
        if casting is None:
            raise gr.Error("start the demo with --gallery GALLERY to cast actors")
        if not files:
            raise gr.Error("upload one or more images of the character")
        sessions.claim(request.session_hash, *files)
        try:
            png, table, html = casting.rank([Path(f) for f in files], int(top), progress,
                                            sessions.folder(request.session_hash))
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        return str(png), table, str(html)

    with gr.Blocks(title="toonfactory demo") as page:
        gr.Markdown(f"## toonfactory demo · student `{model}` · {student.student.backend}"
                    + (f" · whole-frame student `{whole_model}`" if whole_model is not None else ""))
        with gr.Tab("Photo or webcam"):
            with gr.Row():
                photo = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
                                 label="photo", elem_id="photo")
                photo_button = gr.Button("Run the student", variant="primary", elem_id="run-photo")
            photo_timing = gr.Markdown(elem_id="photo-timing")
            with gr.Row():
                photo_outputs = [gr.Image(label=student.describe(name), interactive=False, elem_id=f"out-{name.replace(' ', '-')}")
                                 for name in MODES]
        with gr.Tab("Short video"):
            with gr.Row():
                clip = gr.Video(sources=["upload"], label=f"video (first {MAX_VIDEO_FRAMES} frames)", elem_id="clip")
                clip_button = gr.Button("Run the student", variant="primary", elem_id="run-video")
            clip_timing = gr.Markdown()
            with gr.Row():
                clip_outputs = [gr.Video(label=student.describe(name), interactive=False) for name in MODES]
        with gr.Tab("Casting"):
            if casting is None:
                gr.Markdown("Start the demo with `--gallery GALLERY` (made by `toonfactory cast gallery`) to cast actors.")
            else:
                gr.Markdown(f"Gallery `{gallery_dir}`: {len(casting.gallery.actor_names())} actors, "
                            f"{len(casting.gallery.entries)} faces.")
            with gr.Row():
                character = gr.File(file_count="multiple", file_types=["image"], label="character images", elem_id="character")
                with gr.Column():
                    top = gr.Slider(1, 10, value=5, step=1, label="actors per image")
                    cast_button = gr.Button("Cast", variant="primary", elem_id="cast")
            ranking = gr.Dataframe(label="ranking", interactive=False)
            report = gr.Image(label="report", interactive=False, elem_id="cast-report")
            report_html = gr.File(label="report.html")

        photo_button.click(on_image, [photo], [*photo_outputs, photo_timing])
        clip_button.click(on_video, [clip], [*clip_outputs, clip_timing])
        cast_button.click(on_cast, [character, top], [report, ranking, report_html])
        sessions.attach(page)
    return page
