"""The student's commands: train, export, infer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from factory.errors import UserError
from toonfactory.cli.common import ProgressLines, console, refuse_missing

app = typer.Typer()


TRAINING_SECTIONS = ("distill", "tracking")


def load_training_sections(data: Path, recipe: Path | None, overrides: list[str], tracking_mode: str | None = None):
    """The `distill:` and `tracking:` sections training runs with, and where the student's settings came
    from: defaults, replaced section by section by the dataset's own recipe (DATA/recipe.json, written by
    `generate`), then by ``recipe``'s, then ``--set`` overrides."""
    from distill.config import DistillConfig
    from factory.config import Strict, apply_overrides, blame_overrides, read_yaml, validate_section
    from factory.dataset.layout import RECIPE, read_recipe
    from factory.errors import RecipeError
    from factory.tracking import TrackingConfig

    class TrainingSections(Strict):
        distill: DistillConfig = DistillConfig()
        tracking: TrackingConfig = TrackingConfig()

    own = Path(data) / RECIPE
    files = {str(own): (read_recipe(Path(data)) or {}).get("recipe") or {}}
    if recipe is not None:
        files[str(recipe)] = read_yaml(recipe)
    given, origins = {}, {}
    for path, raw in files.items():
        found = {name: raw[name] for name in TRAINING_SECTIONS if raw.get(name) is not None}
        given.update(found)
        origins.update(dict.fromkeys(found, path))
    merged = apply_overrides({name: given.get(name, {}) for name in TRAINING_SECTIONS}, overrides, "the training settings")
    if tracking_mode is not None:
        merged["tracking"]["mode"] = tracking_mode
    origin = origins.get("distill")
    source = "defaults" if origin is None else f"distill from {own}" if origin == str(own) else f"--recipe {recipe}"
    try:
        return validate_section(TrainingSections, merged, "--set"), settings_source(source, overrides)
    except RecipeError as exc:  # named after the file the first problem's section came from
        section = exc.problems[0].split(":", 1)[0].split(".", 1)[0]
        raise blame_overrides(RecipeError(origins.get(section, "--set"), exc.problems), overrides) from None


def settings_source(origin: str, overrides: list[str]) -> str:
    """Where the student's settings came from: a file or defaults, then the `--set distill.*` overrides."""
    return ", ".join([origin, *(f"--set {item}" for item in overrides if item.startswith("distill."))])


@app.command("train")
def train_command(
    data: Path = typer.Option(..., help="dataset folder (shards/*.tar) made by `toonfactory generate`"),
    out: Path = typer.Option(..., help="training folder: checkpoints/, validation/, metrics.jsonl"),
    recipe: Optional[Path] = typer.Option(None, help="take the `distill:` and `tracking:` sections from this recipe "
                                                     "instead of the dataset's own (DATA/recipe.json)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a field: distill.steps=500 (repeatable)"),
    resume: Optional[str] = typer.Option(None, help="`latest` or a checkpoints/step_* folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run already in --out (its checkpoints, grids, metrics)"),
    tracking: Optional[str] = typer.Option(None, help="ClearML mode: auto, offline, server or none"),
):
    """Train the pix2pix student on a dataset's pairs, with the dataset recipe's `distill:` settings
    (works under `accelerate launch`)."""
    from factory.executors import distributed_rank

    sections, source = load_training_sections(data, recipe, set_ or [], tracking)
    checkpoint = train_tracked(sections.distill, data, out, resume, sections.tracking, distributed_rank()[0], overwrite,
                               source)
    console.print(f"[green]checkpoint[/green] {checkpoint}")


def train_tracked(config, data: Path, out: Path, resume: str | None, tracking, rank: int, overwrite: bool = False,
                  source: str = "defaults") -> Path:
    """Train with a progress bar showing the latest losses (plain lines off a terminal), tracked from rank 0;
    returns the last checkpoint. The first line says where the settings came from (``source``) and the main
    ones. The data, ``--resume`` and ``--out`` are checked before tracking starts or anything is written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from distill.train import prepare_training, train
    from factory.dataset.reader import recipe_hash
    from factory.tracking import Tracker, start_tracking

    if rank == 0:
        console.print(f"settings: {source}; size {config.size}, steps {config.steps}, batch {config.batch_size}, "
                      f"student ngf {config.student.ngf}", markup=False, highlight=False, soft_wrap=True)
    prepare_training(config, data, out, resume, overwrite)
    finished = finished_checkpoint(config, out, resume)
    if finished is not None:  # no bar counting from 0 to a training that does nothing
        if rank == 0:
            console.print(f"student already trained: {finished} reached distill.steps {config.steps}; nothing to "
                          "train (raise distill.steps to train on)", markup=False, highlight=False, soft_wrap=True)
        return finished
    tracker = Tracker()
    if rank == 0:
        tracker = start_tracking(tracking, name=tracking.task_name or f"distill-{Path(out).name}",
                                 recipe={"distill": config.model_dump(mode="json"), "data": str(data)},
                                 recipe_hash=recipe_hash(data), out_dir=Path(out), task_type="training")

    # Off a terminal the plain progress lines say it all; the bar would only add its last render, cut to 80 columns.
    with Progress(
        TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
        console=console, disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("train", total=config.steps, losses="")
        lines = None

        def on_step(step: int, total: int, record: dict) -> None:
            nonlocal lines
            shown = " ".join(f"{k}={v:.3f}" for k, v in record.items() if k != "step")
            progress.update(task, completed=step, losses=shown)
            lines = lines or ProgressLines("train step", total, "steps", start=step)  # the rate from the first step on
            lines.update(step, shown)

        try:
            return train(config, data, out, resume=resume, tracker=tracker, on_step=on_step, overwrite=overwrite)
        finally:
            tracker.close()


def finished_checkpoint(config, out: Path, resume: str | None) -> Path | None:
    """The checkpoint ``--resume`` names when it already reached ``config.steps`` with this student and
    discriminator (resuming it would train nothing); None otherwise."""
    from distill.train import TRAINING_RECORD, read_json_record, resolve_resume

    path = resolve_resume(resume, out) if resume else None
    if path is None or not (path / TRAINING_RECORD).is_file():
        return None
    record = read_json_record(path / TRAINING_RECORD)
    saved = record.get("distill") if isinstance(record.get("distill"), dict) else {}
    same = all(saved.get(part) == getattr(config, part).model_dump(mode="json") for part in ("student", "discriminator"))
    step = record.get("step")
    return path if same and isinstance(step, int) and step >= config.steps else None


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="a checkpoints/step_* folder (or student .safetensors)"),
    format: List[str] = typer.Option(["onnx"], "--format", help="safetensors, onnx, torchscript or tensorrt (repeatable)"),
    out: Optional[Path] = typer.Option(None, help="output folder (default: CHECKPOINT/export)"),
    opset: int = typer.Option(17, help="ONNX opset"),
    tolerance: float = typer.Option(1e-3, help="max abs difference allowed against PyTorch"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace another student's export already in --out"),
):
    """Export the student; ONNX and TorchScript are checked against PyTorch on random inputs."""
    given = Path(checkpoint)
    default = (given if given.is_dir() else given.parent) / "export"  # a weights file given: beside its folder
    export_formats(checkpoint, format, out or default, opset, tolerance, overwrite)


def export_formats(checkpoint: Path, formats: list[str], out: Path, opset: int, tolerance: float,
                   replace: bool = False) -> None:
    from distill.export import export

    for name in formats:
        path = export(checkpoint, name, out, opset=opset, tolerance=tolerance, replace=replace)
        console.print(f"[green]{name}[/green] {path}")


def _about(name: str) -> str:
    """An infer option's help: the InferConfig field's own description (one text for both)."""
    from distill.config import InferConfig

    return InferConfig.model_fields[name].description or ""


@app.command("infer")
def infer_command(
    model: Path = typer.Argument(..., help="checkpoint folder, student .safetensors or .onnx"),
    inputs: List[Path] = typer.Argument(..., help="image files, folders of images, video files"),
    out: Path = typer.Option(..., help="output folder"),
    mode: Optional[str] = typer.Option(None, help=_about("mode")),
    batch_size: int = typer.Option(8, help=_about("batch_size")),
    max_frames: Optional[int] = typer.Option(None, help=_about("max_frames")),
    device: str = typer.Option("auto", help=_about("device")),
    half: bool = typer.Option(False, help=_about("half")),
    detector: str = typer.Option("mediapipe", help=_about("detector").replace("mode face", "--mode face")),
    cascade: Optional[Path] = typer.Option(None, help=_about("cascade").replace("detector anime", "--detector anime")),
    person_only: Optional[str] = typer.Option(None, "--person-only", help=_about("person_only")),
    max_pixels: int = typer.Option(4_000_000, "--max-pixels", help=_about("max_pixels")),
    whole_side: int = typer.Option(640, "--whole-side", help=_about("whole_side")),
    track: bool = typer.Option(True, help=_about("track")),
    detect_every: int = typer.Option(5, help=_about("detect_every")),
    smooth: bool = typer.Option(True, help=_about("smooth") + " (carried by optical flow, corrected past a dead band)"),
    embedder: str = typer.Option("dlib", help=_about("embedder")),
    gallery: Optional[Path] = typer.Option(None, help="a `cast gallery` folder: tracks are named by the actor recognised"),
    assign: Optional[List[str]] = typer.Option(None, "--assign", help=_about("assign") + " (ACTOR with --gallery; repeatable)"),
):
    """Run the student on images and videos; decoding runs in parallel with the model."""
    from distill.config import InferConfig
    from distill.infer import infer

    config = InferConfig.of(mode=mode, batch_size=batch_size, max_frames=max_frames, device=device, half=half,
                            detector=detector, cascade=cascade, person_only=person_only, max_pixels=max_pixels,
                            whole_side=whole_side, track=track, detect_every=detect_every, smooth=smooth, embedder=embedder,
                            assign=assign or [])
    refuse_missing([config.cascade], "--cascade")
    model_embedder, recognise = face_identities(config.embedder, gallery, config.assign)
    track_ids, tracks_files = assigned_tracks(config, inputs, out)
    lines = ProgressLines("infer frames", unit="frames")
    summary = infer(model, inputs, out, config, embedder=model_embedder, recognise=recognise,
                    on_frame=lambda frames, files, total: lines.update(frames, f"file {files}/{total}"))
    lines.finish()
    typer.echo(json.dumps(summary))
    refuse_unseen_tracks(track_ids, tracks_files)


def assigned_tracks(config, inputs: list[Path], out: Path) -> tuple[list[str], list[Path]]:
    """The track ids ``--assign`` names and the tracks files a face-mode run will write (one per video);
    ids with no tracked video among the inputs are refused before the run."""
    from distill.infer import collect_targets

    assignment = config.assignment
    ids = sorted(set(assignment.rules) - assignment.actors, key=int)
    if not ids:  # an InferConfig with --assign rules is in face mode
        return [], []
    files = [t.output.with_name(f"{t.output.stem}.tracks.json") for t in collect_targets(inputs, out) if t.video]
    if not files or not config.track:
        raise UserError(f"--assign {ids[0]}=...: track ids number the faces tracked in videos (--mode face, --track); "
                        "no video among the inputs is tracked")
    return ids, files


def refuse_unseen_tracks(ids: list[str], files: list[Path]) -> None:
    """Track ids ``--assign`` named that no video's tracks file holds: the rule converted no face."""
    seen = sorted({key for path in files if path.is_file() for key in json.loads(path.read_text())["tracks"]}, key=int)
    unseen = [key for key in ids if key not in seen]
    if unseen:
        raise UserError(f"--assign {', '.join(unseen)}: no such track id in the videos (tracks {', '.join(seen) or 'none'}; "
                        f"see {', '.join(map(str, files))}); no face was assigned by it: the outputs were made without "
                        "that rule, re-run with ids from the tracks files")


def face_identities(embedder: str, gallery: Path | None, assign: list[str]):
    """With a gallery, the embedder loaded and the function naming a track's actor (every actor an --assign
    names must be in the gallery); without one, (None, None): `infer` loads ``embedder`` when it tracks faces."""
    if embedder == "none" and gallery is not None:
        raise UserError("--gallery recognises actors by their face embeddings: it needs an --embedder, not none")
    if gallery is None:
        return None, None
    from casting.gallery import Gallery, identity
    from casting.rank import recogniser
    from distill.config import parse_assignments
    from factory.models.embedding import build_embedder

    actors = Gallery.load(gallery)
    model = build_embedder(embedder)
    if identity(model) != actors.embedder:
        hint = (" (naming faces in a video needs a gallery built with `cast gallery --colour rgb --jitters 0`: "
                "its threshold was measured so)" if actors.embedder["settings"] else "")
        raise UserError(f"{gallery}: the gallery was embedded by {actors.embedder}, --embedder gives {identity(model)}{hint}")
    unknown = sorted(parse_assignments(assign).actors - set(actors.actor_names()))
    if unknown:
        raise UserError(f"--assign {unknown[0]}=...: no actor {unknown[0]!r} in {gallery} "
                        f"(actors: {', '.join(actors.actor_names()) or 'none'})")
    return model, recogniser(actors)
