"""Commands over recipes and the datasets they make: validate, generate, run, inspect, clearml-import."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from factory.errors import UserError
from toonfactory.cli.common import ProgressLines, SetOption, console, refuse_missing
from toonfactory.recipe import load as load_recipe
from toonfactory.recipe import produced

app = typer.Typer()

OutOption = typer.Option(..., "--out", help="output folder (re-running resumes it)")
WorkersOption = typer.Option(1, "--workers", min=1, help="local worker processes (with --executor ray: CPUs of a local cluster)")
ExecutorOption = typer.Option("local", "--executor", help="local (this process or --workers N processes) or ray")
RemoteOption = typer.Option(None, "--remote", help="hand the run to this ClearML agent queue")


@app.command()
def validate(recipe: Optional[Path] = typer.Argument(None, help="the recipe to check"),
             set_: Optional[List[str]] = SetOption,
             kinds: bool = typer.Option(False, "--kinds", help="list every kind a recipe or a command can name "
                                        "(teachers, sources, masks, inpainters, adapters, detectors, embedders, realifiers)")):
    """Check a recipe; report every problem with its YAML path. With --kinds, list every pluggable kind."""
    from factory.recipe import check_paths

    if kinds:
        print_kinds()
        if recipe is None:
            return
    if recipe is None:
        raise UserError("validate: give a RECIPE to check (or --kinds to list every kind)")
    resolved = load_recipe(recipe, set_ or [])
    check_paths(resolved, produced(resolved))
    console.print(f"[green]ok[/green] {recipe} (hash {resolved.hash})")


def print_kinds() -> None:
    from toonfactory.kinds import kind_rows

    table = Table("family", "kind", "what it is", "named by", title="pluggable kinds")
    for family, where, kind, what in kind_rows():
        table.add_row(family, kind, what, where)
    Console(width=max(console.width, 160)).print(table)


def _generate(recipe: Path, out: Path, set_: list[str], workers: int, executor: str, remote: str | None):
    from factory import executors, tracking
    from factory.dataset.stats import ShardStats
    from factory.generate import generate as make
    from factory.shard import ShardFailure

    runner = executors.choose(executor, workers)  # worker start-up overlaps with reading the recipe
    resolved = load_recipe(recipe, set_)
    config = resolved.recipe

    def start_tracking():
        return tracking.start_tracking(config.tracking, name=config.name, recipe=resolved.to_dict(),
                                       recipe_hash=resolved.hash, out_dir=out, remote_queue=remote)

    # --remote hands the whole run to a ClearML agent now; a local run is tracked once its shards
    # exist, so a mistake found while building the stages leaves nothing behind.
    tracker = start_tracking() if remote and runner.rank == 0 else None
    lines, made = ProgressLines(f"generate {config.name} shards", unit="pairs"), {"shards": 0, "pairs": 0}
    # Drawn once every check passed and the pipeline is built: a mistake is the first thing printed.
    progress = Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=console)
    bar = None

    def on_plan(todo: int, done: int) -> None:
        nonlocal bar
        if done:
            console.print(f"{done} of {done + todo} shards already done" + (f"; making the other {todo}" if todo else ""))
        if todo:
            progress.start()
            bar = progress.add_task(f"{config.name}: shards", total=todo)
            lines.total = todo

    def on_shard(outcome: ShardStats | ShardFailure) -> None:
        progress.advance(bar)
        made["shards"] += 1
        made["pairs"] += outcome.accepted if isinstance(outcome, ShardStats) else 0
        lines.update(made["shards"], f"pairs {made['pairs']}", count=made["pairs"])

    try:
        result = make(resolved, out, runner, on_plan=on_plan, on_shard=on_shard)
    finally:
        if bar is not None:  # stopping a bar never drawn would still print an empty line
            progress.stop()
    if result.failed:
        if tracker:
            tracker.close()
        console.print(f"[red]{len(result.failed)} shard(s) failed[/red]; re-run the same command to retry them")
        raise typer.Exit(1)
    if result.sealed_before:  # nothing made: no new tracking task, the contact sheet and card stand
        if tracker:
            tracker.close()
        if runner.rank == 0 and not (out / "contact_sheet.png").exists():  # the run that sealed it stopped before
            from factory.dataset.report import write_contact_sheet       # its sheet (a full disk): made now

            console.print(f"contact sheet {write_contact_sheet(out)}", highlight=False, soft_wrap=True)
        console.print(f"nothing to make: {out} holds the whole dataset ({result.manifest['counts']['accepted']} pairs); "
                      f"`toonfactory inspect {out}` shows its counts", highlight=False, soft_wrap=True)
        return resolved, runner.rank
    if runner.rank == 0:
        _report(out, tracker or start_tracking(), register_dataset=config.tracking.dataset)
    return resolved, runner.rank


def _report(out: Path, tracker, register_dataset: bool) -> None:
    """Stats to the console and the tracker, the contact sheet to disk and the tracker."""
    from factory.dataset.layout import dataset_files, read_manifest
    from factory.dataset.report import shard_stats, write_contact_sheet
    from factory.dataset.stats import RunStats

    stats = RunStats.merge(shard_stats(out))
    sheet = write_contact_sheet(out)
    tracker.report_stats(stats)
    tracker.report_image("dataset", "contact sheet", sheet)
    manifest = read_manifest(out)
    if manifest and register_dataset:
        tracker.register_dataset(out, name=manifest["name"], files=dataset_files(out))
    tracker.close()
    print_stats(stats)
    console.print(f"pairs in [bold]{out}[/bold]; contact sheet {sheet}")


def print_stats(stats) -> None:
    from factory.dataset.report import stats_tables

    stdout = Console()
    for table in stats_tables(stats):
        stdout.print(table)


@app.command()
def generate(recipe: Path, out: Path = OutOption, set_: Optional[List[str]] = SetOption,
             workers: int = WorkersOption, executor: str = ExecutorOption, remote: Optional[str] = RemoteOption):
    """Make the pairs a recipe describes (resumes an interrupted run)."""
    _generate(recipe, out, set_ or [], workers, executor, remote)


@app.command()
def run(recipe: Path, out: Path = OutOption, set_: Optional[List[str]] = SetOption,
        workers: int = WorkersOption, executor: str = ExecutorOption, remote: Optional[str] = RemoteOption):
    """Run every stage the recipe declares: adapt the teacher, generate the pairs, then train and export
    the student.

    Re-running resumes whichever stage was interrupted (adaptation and training from their latest
    checkpoints, shards where they stopped).
    """
    from toonfactory.cli.student import export_formats, settings_source, train_tracked

    from factory.recipe import check_paths

    first = load_recipe(recipe, set_ or [])
    check_paths(first, produced(first))  # every stage's paths (distill.init too) before anything is made
    if first.recipe.adapt is not None:
        from adapt.training import recipe_field
        from toonfactory.cli.adapt import adapt_tracked

        if remote:
            raise UserError(f"--remote: {recipe} has an `adapt:` section, which runs locally for now; run "
                            "`toonfactory adapt` where the agent can read its output, or drop --remote")
        adapt_tracked(first.recipe.adapt, first.recipe.tracking, "latest", recipe_field)
    resolved, rank = _generate(recipe, out, set_ or [], workers, executor, remote)
    config = resolved.recipe
    if config.distill is None:
        return
    checkpoint = train_tracked(config.distill, out, out / "student", "latest", config.tracking, rank,
                               source=settings_source(f"distill from {recipe}", set_ or []))
    console.print(f"[green]student[/green] {checkpoint}")
    if config.export is not None and rank == 0:
        export_formats(checkpoint, config.export.formats, out / "student" / "export", config.export.opset,
                       config.export.tolerance, replace=True)  # the run's own export: its newer student replaces it


@app.command()
def inspect(dataset_dir: Path, sheet: int = typer.Option(24, help="pairs in the contact sheet")):
    """Print a dataset's counts, reject reasons and timings; write its contact sheet."""
    from factory.dataset.layout import read_manifest
    from factory.dataset.report import shard_stats, write_contact_sheet
    from factory.dataset.stats import RunStats

    refuse_missing([dataset_dir], "DATASET_DIR")
    if not (dataset_dir / "stats").is_dir():
        raise UserError(f"{dataset_dir}: not a toonfactory dataset (no stats/ folder)")
    manifest = read_manifest(dataset_dir)
    stats = RunStats.merge(shard_stats(dataset_dir))
    if manifest is None:
        console.print("[yellow]no manifest.json: the run is incomplete (re-run generate to finish it)[/yellow]")
    elif not isinstance(manifest, dict):
        raise UserError(f"{dataset_dir / 'manifest.json'}: not a dataset manifest (a JSON object)")
    else:  # a field a damaged manifest lacks is shown as missing, not a KeyError traceback
        shards = manifest.get("shards")
        console.print(f"{manifest.get('name', dataset_dir.name)}: recipe hash {manifest.get('recipe_hash')}, "
                      f"{len(shards) if isinstance(shards, list) else 'unknown'} shards", highlight=False)
    print_stats(stats)
    console.print(f"contact sheet: {write_contact_sheet(dataset_dir, sheet)}")


@app.command("clearml-import")
def clearml_import(dataset_dir: Path):
    """Import a run's offline ClearML sessions (DIR/clearml/*.zip) into the configured ClearML server."""
    from factory import tracking

    for new_id in tracking.import_offline_sessions(dataset_dir):
        console.print(f"imported into ClearML: {new_id}")
