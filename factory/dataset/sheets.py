"""Contact sheets: grids of images under column headers, each group of images captioned beneath it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TEXT = (40, 40, 40)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis so it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def labelled_grid(groups: list[list[np.ndarray]], headers: list[str], captions: list[str], per_row: int = 1,
                  tile: int = 128, pad: int = 4) -> np.ndarray:
    """Groups of tiles (a pair, a photo and its drawings), ``per_row`` groups to a row, as RGB uint8.

    ``headers`` name the tiles of a group and head every group column once, at the top;
    ``captions[i]`` is written under group ``i`` (its key, its file name).
    """
    font = ImageFont.load_default(size=max(10, tile // 11))
    line = int(font.size * 1.4)
    size = len(headers)
    group_w = size * tile + (size - 1) * pad
    gap = pad * 4  # between groups, so each caption plainly belongs to the group above it
    rows = [groups[i:i + per_row] for i in range(0, len(groups), per_row)]
    columns = max(1, min(per_row, len(groups)))
    width = pad * 2 + columns * group_w + (columns - 1) * gap
    height = pad + line + len(rows) * (tile + line + pad)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for g in range(columns):
        for t, header in enumerate(headers):
            x = pad + g * (group_w + gap) + t * (tile + pad)
            draw.text((x + tile / 2, pad + line / 2), _fit(draw, header, font, tile), fill=TEXT, font=font, anchor="mm")
    for r, row in enumerate(rows):
        y = pad + line + r * (tile + line + pad)
        for g, group in enumerate(row):
            x0 = pad + g * (group_w + gap)
            for t, image in enumerate(group):
                image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
                canvas.paste(Image.fromarray(image).resize((tile, tile), Image.BICUBIC), (x0 + t * (tile + pad), y))
            caption = _fit(draw, captions[r * per_row + g], font, group_w)
            draw.text((x0 + group_w / 2, y + tile + line / 2), caption, fill=TEXT, font=font, anchor="mm")
    return np.asarray(canvas)


def pair_sheet(pairs: list[dict], per_row: int = 4, tile: int = 128) -> np.ndarray:
    """Pairs (dicts with real, toon and key) under a real | toon header, each pair's key beneath it."""
    return labelled_grid([[p["real"], p["toon"]] for p in pairs], ["real", "toon"], [p["key"] for p in pairs],
                         per_row=per_row, tile=tile)
