"""`toonfactory dataset ...`: a finished dataset's new versions and views: filter out reviewed pairs, draw its map, write its card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress

from factory.errors import UserError
from toonfactory.cli.common import console

app = typer.Typer(no_args_is_help=True, help="A finished dataset: filter out reviewed pairs, embedding map, dataset card.")

TRACKING_MODES = ("auto", "offline", "server", "none")


@app.command("filter")
def filter_(
    dataset_dir: Path,
    out: Path = typer.Option(..., "--out", help="the new version's folder (new or empty)"),
    review_file: Optional[Path] = typer.Option(None, "--review", help="marks from `toonfactory view` (default DIR/review.json)"),
    tracking_mode: Optional[str] = typer.Option(None, "--tracking", help="auto, offline, server or none (default: the recipe's)"),
):
    """Write a new dataset version without the pairs marked bad; the original stays untouched."""
    from factory import tracking
    from factory.dataset.layout import dataset_files
    from factory.dataset.stats import RunStats
    from factory.dataset.review import review_path
    from factory.dataset.versions import filter_dataset

    if tracking_mode is not None and tracking_mode not in TRACKING_MODES:
        raise UserError(f"--tracking {tracking_mode}: choose one of {', '.join(TRACKING_MODES)}")
    with console.status(f"filtering {dataset_dir}"):
        manifest = filter_dataset(dataset_dir, review_file or review_path(dataset_dir), out)
    config = tracking.TrackingConfig.model_validate(manifest["recipe"].get("tracking") or {})
    if tracking_mode is not None:
        config = config.model_copy(update={"mode": tracking_mode})
    removed, parents = manifest["parent"]["removed"], tracking.dataset_ids(dataset_dir)
    with tracking.start_tracking(config, name=f"{manifest['name']}-filtered", recipe=manifest["recipe"],
                                 recipe_hash=manifest["recipe_hash"], out_dir=out) as tracker:
        tracker.report_stats(RunStats(shards=len(manifest["shards"]), **manifest["counts"]))
        tracker.register_dataset(out, manifest["name"], dataset_files(out), parents=parents,
                                 description=f"{manifest['name']} filtered from {manifest['parent']['path']} "
                                             f"(ClearML parent: {', '.join(parents) or 'not tracked'}): "
                                             f"{len(removed)} pair(s) removed in review")
    console.print(f"[green]new version[/green] {out}: {manifest['counts']['accepted']} pairs "
                  f"({len(removed)} removed); parent {dataset_dir} untouched")


@app.command("map")
def map_(dataset_dir: Path, by: str = typer.Option("character", help="colour by character, source or teacher"),
         limit: int = typer.Option(500, min=2, help="faces on the map (the first N pairs)")):
    """Draw the dataset's faces on a 2-D map (t-SNE of dlib face vectors): DIR/embedding_map.png."""
    from factory.dataset.facemap import write_map
    from factory.dataset.reader import shard_files

    if by not in ("character", "source", "teacher"):
        raise UserError(f"--by {by}: choose character, source or teacher")
    shard_files(dataset_dir, "DIR")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("embedding faces", total=1.0)
        result = write_map(dataset_dir, by=by, limit=limit, progress=lambda f: bar.update(task, completed=f))
    console.print(f"[green]map[/green] {result['png']} ({len(result['points'])} faces, {result['feature']} "
                  f"features, {result['method']})")


@app.command("card")
def card(dataset_dir: Path, overwrite: bool = typer.Option(False, "--overwrite", help="replace a README.md edited by hand")):
    """(Re)write DIR/README.md, the Hugging Face dataset card, from the manifest; a card edited since is kept."""
    from factory.dataset.card import write_card
    from factory.dataset.layout import MANIFEST, read_manifest

    manifest = read_manifest(dataset_dir)
    if manifest is None:
        raise UserError(f"{dataset_dir / MANIFEST}: not found; the card is written once a run is finished")
    console.print(f"[green]card[/green] {write_card(dataset_dir, manifest, overwrite)}")
