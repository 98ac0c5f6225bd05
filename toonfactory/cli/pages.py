"""`toonfactory view` and `toonfactory demo`: local web pages (127.0.0.1 only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from toonfactory.cli.common import console

app = typer.Typer()

PortOption = typer.Option(7860, "--port", min=1, max=65535, help="port on 127.0.0.1")
OpenOption = typer.Option(False, "--open", help="open the page in the default browser")


@app.command()
def view(dataset_dir: Path, port: int = PortOption, open_browser: bool = OpenOption):
    """Browse a dataset: pairs with scores, filters, rejects, the embedding map; mark bad pairs (DIR/review.json)."""
    from factory.dataset.reader import shard_files
    from toonfactory.apps import HOST, launch
    from toonfactory.apps.viewer import build

    shard_files(dataset_dir, "DIR")
    with console.status(f"indexing {dataset_dir}"):
        page = build(dataset_dir)
    console.print(f"viewer on [bold]http://{HOST}:{port}[/bold] (Ctrl-C stops it)")
    launch(page, port, open_browser, uploads=False)  # the viewer has nothing to upload


@app.command()
def demo(model: Path, gallery_dir: Optional[Path] = typer.Option(None, "--gallery", help="an actor gallery (`cast gallery`) for the casting tab"),
         whole_model: Optional[Path] = typer.Option(None, "--whole", help="a whole-frame student (trained on scene pairs, "
                                                    "recipes/fullbody.yaml) for the whole and person-only outputs; MODEL draws the faces"),
         port: int = PortOption, open_browser: bool = OpenOption):
    """Try the student on a photo, a short video or a webcam frame; cast actors for a character (--gallery)."""
    from toonfactory.apps import HOST, launch
    from toonfactory.apps.demo import build

    with console.status(f"loading {model}" + (f" and {whole_model}" if whole_model else "")):
        page = build(model, gallery_dir, whole_model)
    console.print(f"demo on [bold]http://{HOST}:{port}[/bold] (Ctrl-C stops it)")
    launch(page, port, open_browser)
