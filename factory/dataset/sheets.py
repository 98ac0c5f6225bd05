"""Contact sheets: grids of images with captions, for people who would rather look than read."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def grid(tiles: list[list[np.ndarray]], captions: list[str] | None = None, tile: int = 160, pad: int = 4) -> np.ndarray:
    """Rows of RGB tiles (each row left to right), resized to ``tile`` px, one caption per row."""
    columns = max(len(row) for row in tiles)
    caption_h = 14 if captions else 0
    height = len(tiles) * (tile + caption_h + pad) + pad
    width = columns * (tile + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, row in enumerate(tiles):
        y = pad + r * (tile + caption_h + pad)
        if captions:
            draw.text((pad, y), captions[r][: width // 6], fill=(40, 40, 40), font=font)
        for c, image in enumerate(row):
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            canvas.paste(Image.fromarray(image).resize((tile, tile), Image.BICUBIC), (pad + c * (tile + pad), y + caption_h))
    return np.asarray(canvas)


def pair_sheet(pairs: list[dict], per_row: int = 4, tile: int = 128) -> np.ndarray:
    """Pairs (dicts with real, toon and key) laid out real|toon, ``per_row`` pairs per row."""
    rows, captions = [], []
    for start in range(0, len(pairs), per_row):
        chunk = pairs[start:start + per_row]
        rows.append([img for p in chunk for img in (p["real"], p["toon"])])
        captions.append("   ".join(p["key"] for p in chunk))
    return grid(rows, captions, tile=tile)
