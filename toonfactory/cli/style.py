"""`toonfactory style`: fit a webtoon style from one webtoon's images, preview styles on a photo."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from factory.errors import UserError
from toonfactory.cli.common import check_out_file, console

app = typer.Typer(no_args_is_help=True, help="Webtoon drawing styles for the `webtoon` teacher.")


@app.command()
def fit(
    toon: Path = typer.Option(..., "--toon", help="folder of 8-300 images of one webtoon's faces"),
    out: Path = typer.Option(..., "--out", help="style JSON to write"),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", help="file name to leave out (repeatable)"),
    name: Optional[str] = typer.Option(None, "--name", help="the style's name (default: the folder's)"),
):
    """Estimate a webtoon style (skin and ink colours, shadows, lines, eyes, backgrounds) from images."""
    from factory.teachers.webtoon_fit import fit_style_from_folder

    check_out_file(out, ".json", [toon])
    if not toon.is_dir():
        raise UserError(f"{toon}: --toon: not a folder of webtoon images")
    style, report = fit_style_from_folder(toon, exclude=exclude or [], name=name)
    out.parent.mkdir(parents=True, exist_ok=True)
    style.save(out)
    console.print(f"[green]wrote[/green] {out}: style '{style.name}' from {style.fitted_on['faces']} faces "
                  f"in {len(report['files'])} images")
    if report["skipped"]:
        console.print(f"no face found in: {', '.join(report['skipped'])}")
    counts = {kind or "not shown": report["backgrounds"].count(kind) for kind in dict.fromkeys(report["backgrounds"])}
    lines = ", ".join(f"{key} {low:g}-{high:g}" for key, (low, high) in style.ranges.items()
                      if key in ("line_width", "line_darkness", "shadow_depth", "saturation"))
    console.print(f"skin Lab {style.skin_lab}, ink Lab {style.ink_lab}; {lines}; backgrounds {counts}")


@app.command()
def preview(
    photo: Path = typer.Argument(..., help="a portrait photo"),
    style: List[Path] = typer.Option(..., "--style", help="style JSON to compare with the default (repeatable)"),
    out: Path = typer.Option(..., "--out", help="PNG to write: photo | default | each style"),
    size: int = typer.Option(256, "--size", min=64, max=1024, help="side of each panel"),
):
    """Draw the photo's face with the packaged default style and each given style, side by side."""
    from factory.files import write_atomic
    from factory.images import BadImage, encode_png, read_image
    from factory.teachers.webtoon_fit import preview as draw_preview
    from factory.teachers.webtoon_style import load_style

    check_out_file(out, ".png", [photo, *style])
    styles = {"default": load_style()}
    for path in style:
        fitted = load_style(path, field="--style")
        label = fitted.name if fitted.name not in styles else path.stem
        styles[label if label not in styles else str(path)] = fitted
    try:
        picture = read_image(photo)
    except BadImage as exc:
        raise UserError(f"{photo}: PHOTO: {exc}") from None
    try:
        sheet = draw_preview(picture, styles, size=size)
    except UserError as exc:
        raise UserError(f"{photo}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, encode_png(sheet))
    console.print(f"[green]wrote[/green] {out}: photo | {' | '.join(styles)}")
