"""`toonfactory cast`: build an actor gallery, and rank its actors for a webtoon character."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import Progress
from rich.table import Table

from toonfactory.cli.common import NestedOption, console, refuse_missing

app = typer.Typer(no_args_is_help=True, help="Virtual casting: which actor should play this character?")

EmbedderOption = typer.Option("dlib", help="'dlib' (128-d ResNet, default) or the path of an ONNX face-recognition model")
DETECTOR_HELP = ("face detectors tried in order, comma-separated: dlib, mediapipe, haar, anime:CASCADE.xml "
                 "(e.g. dlib,mediapipe,anime:lbpcascade_animeface.xml for drawn faces)")


@app.command()
def gallery(
    actors: Path = typer.Argument(..., help="folder with one sub-folder per actor, or a CSV with columns image, actor[, gender, ...]"),
    out: Path = typer.Option(..., "--out", help="gallery folder (created, or synced with ACTORS when it exists)"),
    attributes: Optional[Path] = typer.Option(None, help="CSV with an actor column and attribute columns (e.g. gender)"),
    embedder: str = EmbedderOption,
    detector: str = typer.Option("dlib,mediapipe", help=DETECTOR_HELP),
    min_face: int = typer.Option(40, min=8, help="smallest face side in pixels"),
    jitters: Optional[int] = typer.Option(None, help="dlib: average each descriptor over N jittered views "
                                          "(default 10 for a new gallery; N+1 times slower)"),
    colour: Optional[str] = typer.Option(None, help="'gray' (default for a new gallery: a drawing's colours are "
                                         "its style's, not the person's) or 'rgb'"),
    nested: bool = NestedOption,
    draw: bool = typer.Option(True, help="also embed the `webtoon` teacher's drawing of each new photo: verdicts on "
                                         "drawn characters are calibrated on them (a drawing, a detection and an embedding more per photo)"),
):
    """Detect, align and embed every actor photo; photos with no face or several are reported, not used;
    photos and actors no longer in ACTORS leave the gallery. An existing gallery keeps its embedder settings."""
    from casting.gallery import GALLERY_JSON, Gallery, collect_inputs, embedder_for, update_gallery
    from factory.faces import DetectorChain
    from factory.files import output_folder, refuse_out_in_inputs

    output_folder(out)
    chain = DetectorChain(detector, min_size=min_face)  # options first: a bad spec is named before the photos
    refuse_out_in_inputs(out, [actors])
    existing = Gallery.load(out) if (out / GALLERY_JSON).exists() else None
    model = embedder_for(embedder, existing, jitters=jitters, colour=colour)
    inputs, attrs = collect_inputs(actors, attributes, nested)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("embedding", total=len(inputs))
        built, update = update_gallery(out, inputs, attrs, model, chain, progress=lambda: bar.advance(task), draw=draw)
    if update.rejected:
        table = Table("image", "actor", "reason", title="not used")
        for row in update.rejected:
            table.add_row(row["image"], row["actor"], row["reason"])
        console.print(table)
    if update.faceless:
        console.print(f"[yellow]no usable face[/yellow] for actor(s): {', '.join(update.faceless)}")
    console.print(f"[green]gallery[/green] {out}: {len(built.entries)} faces of {len(built.actor_names())} actors "
                  f"({update.added} added, {update.reused} unchanged, {update.replaced} replaced, "
                  f"{len(update.removed)} removed, {len(update.rejected)} rejected)")


def _about(name: str) -> str:
    """A cast rank option's help: the CastConfig field's own description (one text for both)."""
    from casting.caster import CastConfig

    return CastConfig.model_fields[name].description or ""


@app.command()
def rank(
    images: List[Path] = typer.Argument(..., help="images of one character"),
    gallery_dir: Path = typer.Option(..., "--gallery", help="a folder made by `cast gallery`"),
    out: Path = typer.Option(..., "--out", help="report folder: ranking.json, report.html, report.png"),
    realify: Optional[Path] = typer.Option(None, help=_about("realify")),
    unwarp: Optional[str] = typer.Option(None, help=_about("unwarp")),
    top: int = typer.Option(5, help=_about("top")),
    face: str = typer.Option("largest", help=_about("face")),
    min_z: float = typer.Option(2.0, help=_about("min_z")),
    min_likeness: float = typer.Option(0.9, help=_about("min_likeness")),
    where: Optional[List[str]] = typer.Option(None, help=_about("where")),
    embedder: str = typer.Option("dlib", help=_about("embedder")),
    detector: str = typer.Option("dlib,mediapipe", help=DETECTOR_HELP),
    min_face: int = typer.Option(40, help=_about("min_face")),
):
    """Rank the gallery's actors for a character across its images: Borda votes, a calibrated confidence
    (z-score against the other actors) and a verdict ("no clear match" below the threshold)."""
    from casting.caster import CastConfig, load_caster
    from casting.report import write_report
    from factory.files import output_folder

    output_folder(out)
    config = CastConfig.of(top=top, face=face, min_z=min_z, min_likeness=min_likeness, where=where or [], embedder=embedder, detector=detector,
                           min_face=min_face, realify=realify, unwarp=unwarp)
    refuse_missing(images, "IMAGES")  # before the models load
    caster = load_caster(gallery_dir, config)
    actors = caster.gallery
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("casting", total=len(images))
        result = caster(images, progress=lambda: bar.advance(task))
    paths = write_report(result, actors, out)
    table = Table("#", "actor", "points", "first", "mean z", "mean similarity",
                  title=f"cast for {len(images)} image(s), Borda over the top {result.settings['top']}")
    for n, row in enumerate(result.overall[:result.settings["top"]], 1):
        z = "n/a" if row["mean_z"] is None else f"{row['mean_z']:.2f}"
        table.add_row(str(n), row["actor"], str(row["points"]), str(row["firsts"]), z, f"{row['mean_score']:.3f}")
    console.print(table)
    for item in result.images:
        if item.status != "ok":
            console.print(f"[yellow]skipped[/yellow] {item.path}: {item.status}")
        else:
            steps = item.query.steps()
            unwarped = steps["unwarp"] and f", geometry {steps['unwarp']['fitted_strength']} undone by {steps['unwarp']['undone']}"
            console.print(f"{Path(item.path).name} ({item.chosen}): detected by {steps['detected_by']}{unwarped or ''}"
                          f"{', realified by ' + steps['realified_by'] if steps['realified_by'] else ''}; "
                          f"first {item.ranking[0]['actor']}, z {item.confidence if item.confidence is None else round(item.confidence, 2)}")
    style = "green" if result.verdict == "match" else "yellow"
    calibration = result.settings["calibration"]
    if result.likeness is not None:
        console.print(f"[{style}]{result.verdict}[/{style}] (likeness {result.likeness}, threshold "
                      f"{calibration['clear_match_likeness']}; confidence z {result.confidence})")
    else:
        console.print(f"[{style}]{result.verdict}[/{style}] (confidence z {result.confidence}, threshold "
                      f"{calibration['clear_match_z']})")
    console.print(f"[green]report[/green] {paths['html']} {paths['png']} {paths['json']}")
