"""The `toonfactory` command. Only the CLI prints; a user's mistake exits 2 with a message."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn

from factory.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mass-produce aligned webtoon <-> real pairs.")
console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="override a recipe field: a.b=value (repeatable)")


@app.command()
def validate(recipe: Path, set_: Optional[List[str]] = SetOption):
    """Check a recipe; report every problem with its YAML path."""
    from factory import recipe as recipes

    resolved = recipes.load(recipe, set_ or [])
    console.print(f"[green]ok[/green] {recipe} (hash {resolved.hash})")


OutOption = typer.Option(..., "--out", help="output folder (re-running resumes it)")
WorkersOption = typer.Option(1, "--workers", min=1, help="local worker processes")
RemoteOption = typer.Option(None, "--remote", help="hand the run to this ClearML agent queue")


def _generate(recipe: Path, out: Path, set_: list[str], workers: int, remote: str | None):
    from factory import plan, runner, tracking
    from factory import recipe as recipes

    resolved = recipes.load(recipe, set_)
    config = resolved.recipe

    def start_tracking():
        return tracking.start_tracking(config.tracking, name=config.name, recipe=resolved.to_dict(),
                                       recipe_hash=resolved.hash, out_dir=out, remote_queue=remote)

    runner.prepare_output(resolved, out)
    rank, _ = runner.distributed_rank()
    # --remote hands the whole run to a ClearML agent now; a local run is tracked once its shards
    # exist, so a mistake found while building the stages leaves nothing behind.
    tracker = start_tracking() if remote and rank == 0 else None
    shards = len(plan.plan(config.output.count, config.output.shard_size, config.output.max_attempts))
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(f"{config.name}: shards", total=shards)
        result = runner.run(resolved, out, workers=workers, on_shard=lambda _: progress.advance(bar))
        progress.update(bar, completed=shards)
    if result.failed:
        if tracker:
            tracker.close()
        console.print(f"[red]{len(result.failed)} shard(s) failed[/red]; re-run the same command to retry them")
        raise typer.Exit(1)
    if rank == 0:
        _report(out, tracker or start_tracking(), register_dataset=config.tracking.dataset)
    return resolved, result


def _report(out: Path, tracker, register_dataset: bool) -> None:
    """Stats to the console and the tracker, the contact sheet to disk and the tracker."""
    from factory import dataset

    stats = dataset.merge_stats(dataset.shard_stats(out))
    sheet = write_contact_sheet(out)
    tracker.report_stats(stats)
    tracker.report_image("dataset", "contact sheet", sheet)
    manifest = dataset.read_manifest(out)
    if manifest and register_dataset:
        files = [out / "manifest.json", out / "recipe.json", *sorted((out / "stats").glob("*.json")),
                 *sorted((out / "shards").glob("*.tar"))]
        tracker.register_dataset(out, name=manifest["name"], files=files)
    tracker.close()
    print_stats(stats)
    console.print(f"pairs in [bold]{out}[/bold]; contact sheet {sheet}")


def write_contact_sheet(out: Path, count: int = 24) -> Path:
    from PIL import Image

    from factory import dataset
    from factory.sheets import pair_sheet

    pairs = list(dataset.iter_pairs(out, limit=count))
    path = out / "contact_sheet.png"
    if pairs:
        Image.fromarray(pair_sheet(pairs)).save(path)
    return path


def print_stats(stats: dict) -> None:
    from rich.table import Table

    counts = Table(title="samples")
    for column in ("shards", "planned", "attempted", "accepted"):
        counts.add_column(column, justify="right")
    counts.add_row(*(str(stats[c]) for c in ("shards", "planned", "attempted", "accepted")))
    rejects = Table(title="rejects")
    rejects.add_column("reason")
    rejects.add_column("count", justify="right")
    for reason, n in sorted(stats["rejected"].items(), key=lambda kv: -kv[1]) or [("none", 0)]:
        rejects.add_row(reason, str(n))
    timings = Table(title="seconds per stage")
    timings.add_column("stage")
    timings.add_column("total s", justify="right")
    timings.add_column("ms / candidate", justify="right")
    for stage, seconds in stats["seconds"].items():
        timings.add_row(stage, f"{seconds:.2f}", f"{1000 * seconds / max(stats['attempted'], 1):.1f}")
    out = Console()
    for table in (counts, rejects, timings):
        out.print(table)


@app.command()
def generate(recipe: Path, out: Path = OutOption, set_: Optional[List[str]] = SetOption,
             workers: int = WorkersOption, remote: Optional[str] = RemoteOption):
    """Make the pairs a recipe describes (resumes an interrupted run)."""
    _generate(recipe, out, set_ or [], workers, remote)


@app.command()
def run(recipe: Path, out: Path = OutOption, set_: Optional[List[str]] = SetOption,
        workers: int = WorkersOption, remote: Optional[str] = RemoteOption):
    """Run every stage the recipe declares: generate the pairs, then train and export the student.

    Re-running resumes whichever stage was interrupted (shards, then training from its latest checkpoint).
    """
    from factory.runner import distributed_rank

    resolved, _ = _generate(recipe, out, set_ or [], workers, remote)
    config = resolved.recipe
    if config.distill is None:
        return
    from distill.cli import train_with_progress
    from distill.export import export

    checkpoint = train_with_progress(config.distill, out, out / "student", "latest", config.tracking)
    console.print(f"[green]student[/green] {checkpoint}")
    if config.export is not None and distributed_rank()[0] == 0:
        for fmt in config.export.formats:
            path = export(checkpoint, fmt, out / "student" / "export", opset=config.export.opset,
                          tolerance=config.export.tolerance)
            console.print(f"[green]{fmt}[/green] {path}")


@app.command()
def inspect(dataset_dir: Path, sheet: int = typer.Option(24, help="pairs in the contact sheet")):
    """Print a dataset's counts, reject reasons and timings; write its contact sheet."""
    from factory import dataset

    if not (dataset_dir / "stats").is_dir():
        raise UserError(f"{dataset_dir}: not a toonfactory dataset (no stats/ folder)")
    manifest = dataset.read_manifest(dataset_dir)
    stats = dataset.merge_stats(dataset.shard_stats(dataset_dir))
    if manifest is None:
        console.print("[yellow]no manifest.json: the run is incomplete (re-run generate to finish it)[/yellow]")
    else:
        console.print(f"{manifest['name']}: recipe hash {manifest['recipe_hash']}, {len(manifest['shards'])} shards")
    print_stats(stats)
    console.print(f"contact sheet: {write_contact_sheet(dataset_dir, sheet)}")


@app.command("clearml-import")
def clearml_import(dataset_dir: Path):
    """Import a run's offline ClearML sessions (DIR/clearml/*.zip) into the configured ClearML server."""
    from factory import tracking

    for new_id in tracking.import_offline_sessions(dataset_dir):
        console.print(f"imported into ClearML: {new_id}")


from factory import cast_cli  # noqa: E402  (light: typer and rich only)

app.add_typer(cast_cli.app, name="cast")

from factory import warp_cli  # noqa: E402  (light: typer and rich only)

app.add_typer(warp_cli.app, name="warp")

from distill import cli as distill_cli  # noqa: E402  (light: typer and rich only)

distill_cli.register(app)


@app.callback()
def _root():
    """toonfactory: recipes in, aligned webtoon <-> real pairs out."""


def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()  # click handles usage errors itself (exit 2)
    except UserError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
