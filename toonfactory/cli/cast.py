"""`toonfactory cast`: build an actor gallery, and rank its actors for a webtoon character."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import Progress
from rich.table import Table

from toonfactory.cli.common import console

app = typer.Typer(no_args_is_help=True, help="Virtual casting: which actor should play this character?")

EmbedderOption = typer.Option("dlib", help="'dlib' (128-d ResNet, default) or the path of an ONNX face-recognition model")


@app.command()
def gallery(
    actors: Path = typer.Argument(..., help="folder with one sub-folder per actor, or a CSV with columns image, actor[, gender, ...]"),
    out: Path = typer.Option(..., "--out", help="gallery folder (created, or extended when it exists)"),
    attributes: Optional[Path] = typer.Option(None, help="CSV with an actor column and attribute columns (e.g. gender)"),
    embedder: str = EmbedderOption,
    detector: str = typer.Option("dlib,mediapipe", help="face detectors tried in order"),
    min_face: int = typer.Option(40, help="smallest face side in pixels"),
):
    """Detect, align and embed every actor photo; photos with no face or several are reported, not used."""
    from casting.gallery import collect_inputs, update_gallery
    from factory.faces import DetectorChain
    from factory.files import output_folder
    from factory.models.embedding import build_embedder

    output_folder(out)
    inputs, attrs = collect_inputs(actors, attributes)
    model = build_embedder(embedder)
    chain = DetectorChain(detector, min_size=min_face)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("embedding", total=len(inputs))
        built, update = update_gallery(out, inputs, attrs, model, chain, progress=lambda: bar.advance(task))
    if update.rejected:
        table = Table("image", "actor", "reason", title="not used")
        for row in update.rejected:
            table.add_row(row["image"], row["actor"], row["reason"])
        console.print(table)
    if update.faceless:
        console.print(f"[yellow]no usable face[/yellow] for actor(s): {', '.join(update.faceless)}")
    console.print(f"[green]gallery[/green] {out}: {len(built.entries)} faces of {len(built.actor_names())} actors "
                  f"({update.added} added, {update.reused} unchanged, {update.replaced} replaced, "
                  f"{len(update.rejected)} rejected)")


@app.command()
def rank(
    images: List[Path] = typer.Argument(..., help="images of one character"),
    gallery_dir: Path = typer.Option(..., "--gallery", help="a folder made by `cast gallery`"),
    out: Path = typer.Option(..., "--out", help="report folder: ranking.json, report.html, report.png"),
    realify: Optional[Path] = typer.Option(None, help="toon2real model: .onnx, a student checkpoint, or a teacher .yaml"),
    unwarp: Optional[str] = typer.Option(None, help="undo webtoon geometry first: 'default' or a warping profile .json"),
    top: int = typer.Option(5, min=1, help="actors voted for per image, and shown"),
    where: Optional[List[str]] = typer.Option(None, help="attribute filter key=value (repeatable), e.g. gender=female"),
    embedder: str = EmbedderOption,
    detector: str = typer.Option("dlib,mediapipe", help="detectors for the character images, tried in order"),
    min_face: int = typer.Option(40, help="smallest face side in pixels"),
):
    """Rank the gallery's actors for a character across its images (top-k votes, ties by mean similarity)."""
    from casting.gallery import Gallery
    from casting.rank import cast, parse_where
    from casting.realify import InverseWebtoonWarp, load_realifier
    from casting.report import write_report
    from factory.faces import DetectorChain
    from factory.files import output_folder
    from factory.models.embedding import build_embedder

    output_folder(out)
    where_map = parse_where(where or [])
    actors = Gallery.load(gallery_dir)
    model = build_embedder(embedder)
    chain = DetectorChain(detector, min_size=min_face)
    realifier = load_realifier(realify) if realify else None
    warp = None if unwarp is None else InverseWebtoonWarp(None if unwarp == "default" else Path(unwarp))
    real_chain = DetectorChain("dlib,mediapipe", min_size=min_face) if realifier or warp else None
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("casting", total=len(images))
        result = cast(actors, images, model, chain, top=top, where=where_map, realifier=realifier,
                      real_detector=real_chain, inverse_warp=warp, progress=lambda: bar.advance(task))
    paths = write_report(result, actors, out)
    table = Table("#", "actor", "votes", "mean similarity", title=f"cast for {len(images)} image(s)")
    for n, row in enumerate(result.overall[:top], 1):
        table.add_row(str(n), row["actor"], str(row["votes"]), f"{row['mean_score']:.3f}")
    console.print(table)
    for item in result.images:
        if item.status != "ok":
            console.print(f"[yellow]skipped[/yellow] {item.path}: {item.status}")
    console.print(f"[green]report[/green] {paths['html']} {paths['png']} {paths['json']}")
