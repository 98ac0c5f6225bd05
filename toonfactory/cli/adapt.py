"""`toonfactory adapt`: learn a new webtoon style from a few images, for the generative teachers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from toonfactory.cli.common import console

app = typer.Typer(no_args_is_help=True, help="Learn a new webtoon style from a few images.")

SetOption = typer.Option(None, "--set", help="any other setting: rank=8, mixed_precision=bf16 (repeatable)")
ResumeOption = typer.Option(None, help="`latest` or a checkpoints/step_* folder")
TrackingOption = typer.Option("auto", help="ClearML mode: auto, offline, server or none")
ImagesOption = typer.Option(..., help="a folder of example images (a .txt beside an image is its caption)")


def option_names(options: dict):
    """How messages name a setting: its option when the command has one, else `--set NAME`."""
    return lambda name: f"--{name.replace('_', '-')}" if name in options else f"--set {name}"


def from_options(model, options: dict, overrides: list[str], origin: str):
    """The adaptation settings from the command's options (those given) and `--set` overrides."""
    from factory.config import apply_overrides, validate_section

    data = {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
    return validate_section(model, apply_overrides(data, overrides, origin), origin)


def adapt_tracked(config, tracking, resume: str | None, field) -> Path:
    """Adapt with a progress bar showing the latest losses, tracked in ClearML from the main process."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from adapt.training import adapt
    from factory.tracking import start_tracking

    def start_tracker():
        return start_tracking(tracking, name=tracking.task_name or f"adapt-{config.kind}-{Path(config.out).stem}",
                              recipe={"adapt": config.model_dump(mode="json")}, recipe_hash=None,
                              out_dir=config.work_dir(), task_type="training")

    with Progress(TextColumn(f"adapt {config.kind}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[losses]}"), console=console) as progress:
        task = progress.add_task("adapt", total=config.steps, losses="")

        def on_step(step: int, total: int, losses: dict) -> None:
            progress.update(task, completed=step, losses=" ".join(f"{k}={v:.3f}" for k, v in losses.items()))

        out, trained = adapt(config, resume=resume, field=field, start_tracker=start_tracker, on_step=on_step)
    console.print(f"[green]{'adapted' if trained else 'already adapted'}[/green] {out}")
    return out


def tracking_config(mode: str):
    from factory.config import validate_section
    from factory.tracking import TrackingConfig

    return validate_section(TrackingConfig, {"mode": mode}, "--tracking")


@app.command("lora")
def lora_command(
    images: Path = ImagesOption,
    base: Path = typer.Option(..., help="Stable Diffusion: a local diffusers folder or one .safetensors/.ckpt file"),
    out: Path = typer.Option(..., help="output folder: pytorch_lora_weights.safetensors, checkpoints/, validation/"),
    config: Optional[Path] = typer.Option(None, help="a local diffusers folder of configs, for a single-file --base"),
    token: Optional[str] = typer.Option(None, help="the rare token naming the style (default sks)"),
    instance_prompt: Optional[str] = typer.Option(None, help="the prompt of the examples; must contain the token"),
    class_prompt: Optional[str] = typer.Option(None, help="prior preservation with class images of this prompt"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default 500)"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default 1e-4)"),
    train_text_encoder: bool = typer.Option(False, "--train-text-encoder", help="LoRA on the text encoder too"),
    set_: Optional[List[str]] = SetOption,
    resume: Optional[str] = ResumeOption,
    tracking: str = TrackingOption,
):
    """DreamBooth-style LoRA of a Stable Diffusion model, for `teacher: {kind: diffusion, lora: [{path: OUT}]}`."""
    from adapt.lora import LoraAdaptConfig

    options = dict(images=images, base=base, out=out, config=config, token=token, instance_prompt=instance_prompt,
                   steps=steps, lr=lr, train_text_encoder=train_text_encoder or None,
                   prior={"class_prompt": class_prompt} if class_prompt else None)
    settings = from_options(LoraAdaptConfig, options, set_ or [], "toonfactory adapt lora")
    adapt_tracked(settings, tracking_config(tracking), resume, option_names({**options, "class_prompt": 1}))


@app.command("stylegan2")
def stylegan2_command(
    images: Path = ImagesOption,
    base: Path = typer.Option(..., help="the base generator: a rosinality stylegan2-pytorch .pt or .safetensors"),
    out: Path = typer.Option(..., help="the toon generator to write: .safetensors or a weights-only .pt"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps (default 1000)"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default 0.002)"),
    batch_size: Optional[int] = typer.Option(None, help="images per step (default 4)"),
    set_: Optional[List[str]] = SetOption,
    resume: Optional[str] = ResumeOption,
    tracking: str = TrackingOption,
):
    """Fine-tune a StyleGAN2 on a few aligned webtoon faces, for `teacher: {kind: toonify, toon: OUT}`."""
    from adapt.stylegan2 import StyleGAN2AdaptConfig

    options = dict(images=images, base=base, out=out, steps=steps, lr=lr, batch_size=batch_size)
    settings = from_options(StyleGAN2AdaptConfig, options, set_ or [], "toonfactory adapt stylegan2")
    adapt_tracked(settings, tracking_config(tracking), resume, option_names(options))
