"""The `toonfactory` command. Only the CLI prints; a user's mistake exits 2 with a message."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

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
