"""`toonfactory curate`: crawled comic pages and actor photos become clean per-character face sets."""

from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import Progress
from rich.table import Table

from toonfactory.cli.common import NestedOption, ProgressLines, console, refuse_missing

app = typer.Typer(no_args_is_help=True, help="""Curate raw material into the folders recipes and `cast gallery` read.

1. crawl comic pages or actor photos; 2. `curate comics` / `curate actors` --out OUT;
3. look at OUT/review/*.html; 4. write OUT/overrides.json ({"<group>": {"<id>": "keep"|"drop"}});
5. run again: only new files are read and a person's decisions stand;
6. use OUT/characters/<name> as a `folder` source (domain: toon) and OUT/actors with `cast gallery`.""")

OutOption = typer.Option(..., "--out", help="curation folder (created, or extended when it exists)")
SuperresOption = typer.Option(None, "--superres", help="Real-ESRGAN compact weights (.pth) to upscale crops smaller than --size")
TrackingOption = typer.Option("offline", help="ClearML dataset version: offline (default), auto, server or none")


def _checked(**options) -> None:
    """The curate options, each mistaken one named, before anything is read or written."""
    from curate.run import CurateOptions
    from factory.config import validate_options

    validate_options(CurateOptions, options)


def _crop_options(margin: float, size: int, min_face: int, superres: Optional[Path]):
    from curate.filters import Thresholds
    from curate.run import CropOptions
    from curate.superres import SuperResolver

    return CropOptions(margin=margin, side=size, limits=Thresholds(min_face=min_face),
                       superres=SuperResolver(superres) if superres else None)


def _references(specs: List[str]) -> dict[str, list[Path]]:
    from factory.errors import UserError

    named: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name or not Path(path).is_file():
            raise UserError(f"--reference {spec!r}: expected NAME=IMAGE with an existing image file")
        named.setdefault(name, []).append(Path(path))
    for name, paths in named.items():
        if len(paths) > 3:
            raise UserError(f"--reference: {name} has {len(paths)} references; give 1 to 3")
    return named


@app.command()
def comics(
    inputs: List[Path] = typer.Argument(..., help="pages, strips, or folders of them (any height: tall strips are sliced)"),
    out: Path = OutOption,
    reference: Optional[List[str]] = typer.Option(None, help="NAME=IMAGE, 1-3 per character (repeatable); none: cluster"),
    top: Optional[int] = typer.Option(None, min=1, help="keep the N faces most like each character"),
    threshold: Optional[float] = typer.Option(0.85, help="keep faces at least this similar to a reference (cosine)"),
    cascade: Optional[Path] = typer.Option(None, help="LBP anime-face cascade XML (e.g. lbpcascade_animeface.xml)"),
    detector: Optional[str] = typer.Option(None, help="detectors run on every slice, merged "
                                           "(default anime,mediapipe,dlib; mediapipe,dlib without --cascade)"),
    margin: float = typer.Option(1.5, help="crop side = margin x the face box"),
    size: int = typer.Option(256, min=32, help="crop side in pixels"),
    min_face: int = typer.Option(40, min=8, help="smaller faces are dropped (too_small)"),
    superres: Optional[Path] = SuperresOption,
    slice_height: int = typer.Option(1600, min=64, help="tall images are cut into slices of this height"),
    overlap: int = typer.Option(320, min=0, help="rows shared by neighbouring slices"),
    cluster_distance: float = typer.Option(0.12, help="with no reference: cosine distance that joins two faces"),
    min_cluster: int = typer.Option(2, min=1, help="with no reference: smallest cluster kept"),
    tracking: str = TrackingOption,
):
    """Pages -> faces (with provenance) -> filters with reasons -> characters by reference, or clusters."""
    from curate.ingest import DEFAULT_CHAIN, ChainDetector
    from curate.run import Summary, cluster_characters, ingest_pages, reference_features, select_characters
    from curate.store import Workspace, locked
    from factory.files import refuse_out_in_inputs
    from factory.images import named_files

    _checked(margin=margin, size=size, threshold=threshold, cluster_distance=cluster_distance, tracking=tracking)
    refuse_missing([cascade], "--cascade")
    named = _references(reference or [])
    files = named_files(inputs)
    if detector is None and cascade is None:
        console.print("warning: the anime detector is off: no --cascade given (lbpcascade_animeface.xml); "
                      "drawn faces are found by mediapipe and dlib only")
        detector = DEFAULT_CHAIN.replace("anime,", "")
    chain = ChainDetector(detector or DEFAULT_CHAIN, cascade=cascade, min_size=max(min_face // 2, 8),
                          slice_height=slice_height, overlap=overlap)
    options = _crop_options(margin, size, min_face, superres)
    refs = {name: reference_features(paths, chain, options) for name, paths in named.items()}
    refuse_out_in_inputs(out, inputs)
    summary = Summary()
    with locked(out):
        ws = Workspace(out)
        with Progress(console=console, transient=True) as bar:
            lines = ProgressLines("curate pages", len(files), "pages")
            ingest_pages(ws, files, chain, options, summary,
                         progress=_advance(bar, bar.add_task("pages", total=len(files)), lines))
        if refs:
            select_characters(ws, refs, top, threshold, summary)
        else:
            cluster_characters(ws, cluster_distance, min_cluster, summary)
        _register(ws, tracking, {"command": "curate comics", "detector": chain.spec, "margin": margin})
    _report(out, summary)


@app.command()
def actors(
    folder: Path = typer.Argument(..., help="one sub-folder of crawled photos per actor"),
    out: Path = OutOption,
    detector: str = typer.Option("dlib,mediapipe", help="face detectors tried in order"),
    embedder: str = typer.Option("dlib", help="'dlib' or the path of an ONNX face-recognition model"),
    radius: float = typer.Option(0.4, help="embedding distance (unit dlib vectors) within which a face is the actor"),
    margin: float = typer.Option(2.0, help="crop side = margin x the face box (photos need context)"),
    size: int = typer.Option(256, min=32, help="crop side in pixels"),
    min_face: int = typer.Option(40, min=8, help="smaller faces are dropped (too_small)"),
    superres: Optional[Path] = SuperresOption,
    nested: bool = NestedOption,
    tracking: str = TrackingOption,
):
    """Per actor: keep each photo's face that matches the majority identity; drop namesakes, group
    shots with no match, duplicates and tiny faces."""
    from curate.run import Summary, curate_actors
    from curate.store import Workspace, locked
    from factory.faces import DetectorChain
    from factory.files import refuse_out_in_inputs
    from factory.models.embedding import build_embedder

    _checked(margin=margin, size=size, radius=radius, tracking=tracking)
    chain = DetectorChain(detector, min_size=max(min_face // 2, 8))
    model = build_embedder(embedder)
    options = _crop_options(margin, size, min_face, superres)
    refuse_out_in_inputs(out, [folder])
    summary = Summary()
    with locked(out):
        ws = Workspace(out)
        lines = ProgressLines("curate photos", unit="photos")
        with Progress(console=console, transient=True) as bar:
            curate_actors(ws, folder, chain, model, options, summary, radius=radius, nested=nested,
                          progress=_advance(bar, bar.add_task("photos", total=None), lines))
        lines.finish()
        _register(ws, tracking, {"command": "curate actors", "detector": detector, "embedder": embedder, "radius": radius})
    _report(out, summary)


def _advance(bar: Progress, task, lines: ProgressLines):
    """The callback that moves the bar one file on, and the plain progress lines off a terminal."""
    done = count(1)

    def advance() -> None:
        bar.advance(task)
        lines.update(next(done))
    return advance


def _register(ws, mode: str, settings: dict) -> None:
    from factory.tracking import TrackingConfig, start_tracking

    with start_tracking(TrackingConfig(mode=mode), name="curate", recipe=settings, recipe_hash=None,
                        out_dir=ws.root) as tracker:
        tracker.register_dataset(ws.root, "curate", ws.published_files())


def _report(out: Path, summary) -> None:
    table = Table("group", "kept", "dropped", title=f"curated into {out}")
    for group, (kept, dropped) in sorted(summary.groups.items()):
        table.add_row(group, str(kept), str(dropped))
    console.print(table)
    reasons = ", ".join(f"{k} {v}" for k, v in summary.rejected.most_common()) or "none"
    bad = ", ".join(f"{k} {v}" for k, v in summary.bad_sources.items())
    console.print(f"{summary.new_sources} new files ({summary.reused_sources} already curated"
                  f"{', unreadable: ' + bad if bad else ''}), {summary.new_faces} new faces; dropped: {reasons}")
    if summary.unclustered:
        console.print(f"{summary.unclustered} faces like no other face are in no cluster yet (kept in faces/; "
                      "a later run clusters them with new faces that resemble them)")
    console.print(f"review: {', '.join(str(out / s) for s in summary.sheets)}")
