"""`toonfactory train`, `export` and `infer`: the student's commands, registered on the main app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from factory.errors import RecipeError, UserError

console = Console(stderr=True)


def load_training_sections(recipe: Path | None, overrides: list[str], tracking_mode: str | None = None):
    """The `distill:` and `tracking:` sections of a recipe (defaults without one), with overrides."""
    from pydantic import ValidationError

    from distill.config import DistillConfig
    from factory.recipe import Strict, TrackingConfig, apply_overrides, problems, read_yaml

    class TrainingSections(Strict):
        distill: DistillConfig = DistillConfig()
        tracking: TrackingConfig = TrackingConfig()

    origin = str(recipe) if recipe else "--set"
    raw = read_yaml(recipe) if recipe is not None else {}
    data = apply_overrides({name: raw.get(name) or {} for name in ("distill", "tracking")}, overrides, origin)
    if tracking_mode is not None:
        data["tracking"]["mode"] = tracking_mode
    try:
        return TrainingSections.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(origin, problems(exc, data)) from None


def train_command(
    data: Path = typer.Option(..., help="dataset folder (shards/*.tar) made by `toonfactory generate`"),
    out: Path = typer.Option(..., help="training folder: checkpoints/, validation/, metrics.jsonl"),
    recipe: Optional[Path] = typer.Option(None, help="take the `distill:` and `tracking:` sections from this recipe"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a field: distill.steps=500 (repeatable)"),
    resume: Optional[str] = typer.Option(None, help="`latest` or a checkpoints/step_* folder"),
    tracking: Optional[str] = typer.Option(None, help="ClearML mode: auto, offline, server or none"),
):
    """Train the pix2pix student on a dataset's pairs (works under `accelerate launch`)."""
    sections = load_training_sections(recipe, set_ or [], tracking)
    checkpoint = train_with_progress(sections.distill, data, out, resume, sections.tracking)
    console.print(f"[green]checkpoint[/green] {checkpoint}")


def train_with_progress(config, data: Path, out: Path, resume: str | None, tracking) -> Path:
    """Train with a progress bar showing the latest losses; returns the last checkpoint."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from distill.train import train

    with Progress(
        TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
        console=console,
    ) as progress:
        task = progress.add_task("train", total=config.steps, losses="")

        def on_step(step: int, total: int, record: dict) -> None:
            shown = " ".join(f"{k}={v:.3f}" for k, v in record.items() if k != "step")
            progress.update(task, completed=step, losses=shown)

        return train(config, data, out, resume=resume, tracking=tracking, on_step=on_step)


def export_command(
    checkpoint: Path = typer.Argument(..., help="a checkpoints/step_* folder (or student .safetensors)"),
    format: List[str] = typer.Option(["onnx"], "--format", help="safetensors, onnx, torchscript or tensorrt (repeatable)"),
    out: Optional[Path] = typer.Option(None, help="output folder (default: CHECKPOINT/export)"),
    opset: int = typer.Option(17, help="ONNX opset"),
    tolerance: float = typer.Option(1e-3, help="max abs difference allowed against PyTorch"),
):
    """Export the student; ONNX and TorchScript are checked against PyTorch on random inputs."""
    from distill.export import export

    target = out or Path(checkpoint) / "export"
    for name in format:
        console.print(f"[green]{name}[/green] {export(checkpoint, name, target, opset=opset, tolerance=tolerance)}")


def infer_command(
    model: Path = typer.Argument(..., help="checkpoint folder, student .safetensors or .onnx"),
    inputs: List[Path] = typer.Argument(..., help="image files, folders of images, video files"),
    out: Path = typer.Option(..., help="output folder"),
    mode: str = typer.Option("whole", help="whole (the frame) or face (detect, align, paste back)"),
    batch_size: int = typer.Option(8, min=1),
    max_frames: Optional[int] = typer.Option(None, help="stop each video after this many frames"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 (PyTorch models)"),
    half: bool = typer.Option(False, help="fp16 on CUDA (PyTorch models)"),
    detector: str = typer.Option("mediapipe", help="face detector for --mode face"),
    person_only: Optional[str] = typer.Option(
        None, "--person-only", help="convert only people: keep (the background as it is) or stylize (inpainted, then converted)"),
):
    """Run the student on images and videos; decoding runs in parallel with the model."""
    from distill.infer import infer

    if mode not in ("whole", "face"):
        raise UserError(f"--mode {mode!r}: choose whole or face")
    if person_only not in (None, "keep", "stylize"):
        raise UserError(f"--person-only {person_only!r}: choose keep or stylize")
    summary = infer(model, inputs, out, mode=mode, batch_size=batch_size, max_frames=max_frames,
                    device=device, half=half, detector=detector, person_only=person_only)
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("export")(export_command)
    app.command("infer")(infer_command)
