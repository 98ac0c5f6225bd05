"""The casting report: ``ranking.json``, an HTML page and a PNG contact sheet in one folder.

Each character image gets a row: its face, its realified face (when realify ran) and the top actors,
each with the gallery photo that matched best and its score; the overall vote heads the page.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from casting.gallery import THUMB_SIZE, Gallery
from casting.rank import CastResult
from factory.files import FolderLock, output_folder


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _load(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:  # a gallery whose faces/ folder was removed: a grey tile, not a crash
        return np.full((THUMB_SIZE, THUMB_SIZE, 3), 128, np.uint8)
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


def write_report(result: CastResult, gallery: Gallery, out: Path) -> dict[str, Path]:
    """Write ranking.json, report.html and report.png into ``out`` (locked meanwhile); returns their paths."""
    out = output_folder(out)
    with FolderLock(out, "toonfactory cast rank"):
        return _write_report(result, gallery, out)


def _write_report(result: CastResult, gallery: Gallery, out: Path) -> dict[str, Path]:
    paths = {"json": out / "ranking.json", "html": out / "report.html", "png": out / "report.png"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    for i, item in enumerate(result.images):
        if item.query is not None:
            _save(cv2.resize(item.query.crop, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA), out / "faces" / f"character_{i}.jpg")
            if item.query.realified is not None:
                _save(cv2.resize(item.query.realified, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA), out / "faces" / f"realified_{i}.jpg")
        for row in item.ranking:
            target = out / "actors" / Path(row["photo"]).name
            if not target.exists() and (gallery.root / row["photo"]).exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(gallery.root / row["photo"], target)
    paths["html"].write_text(_html(result))
    Image.fromarray(_sheet(result, out)).save(paths["png"])
    return paths


def _html(result: CastResult) -> str:
    esc = html.escape
    settings = result.settings
    overall = "".join(
        f"<tr><td>{n + 1}</td><td>{esc(r['actor'])}</td><td>{r['votes']}</td><td>{r['mean_score']:.3f}</td>"
        f"<td>{r['best_score']:.3f}</td></tr>" for n, r in enumerate(result.overall))
    rows = []
    for i, item in enumerate(result.images):
        cells = [f"<td class=name>{esc(Path(item.path).name)}<br><small>{esc(item.status)}"
                 f"{'' if item.faces_found < 2 else f' ({item.faces_found} faces, largest used)'}</small></td>"]
        if item.query is not None:
            cells.append(f"<td><img src='faces/character_{i}.jpg'><br>character</td>")
            if item.query.realified is not None:
                cells.append(f"<td><img src='faces/realified_{i}.jpg'><br>realified</td>")
            cells += [f"<td><img src='actors/{esc(Path(r['photo']).name)}'><br>{esc(r['actor'])}<br>{r['score']:.3f}</td>"
                      for r in item.ranking]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Virtual casting</title>
<style>body{{font-family:sans-serif;margin:1.5em}} td{{text-align:center;padding:4px;vertical-align:top}}
td.name{{text-align:left;max-width:14em}} img{{width:{THUMB_SIZE}px;height:{THUMB_SIZE}px}}
table.overall td{{text-align:left;padding:2px 12px}}</style></head><body>
<h1>Virtual casting</h1>
<p>Gallery <code>{esc(str(settings['gallery']))}</code>, embedder {esc(settings['embedder']['name'])},
realify: {esc(str(settings['realify']))}, top {settings['top']} votes per image,
filter: {esc(json.dumps(settings['where']))}.</p>
<h2>Overall</h2>
<table class=overall><tr><th>#</th><th>actor</th><th>votes</th><th>mean similarity</th><th>best</th></tr>{overall}</table>
<h2>Per image</h2>
<table>{''.join(rows)}</table>
</body></html>
"""


def _sheet(result: CastResult, out: Path) -> np.ndarray:
    """One row per usable image: character | realified | top actors; the overall winner on top."""
    usable = [(i, item) for i, item in enumerate(result.images) if item.query is not None]
    realified = any(item.query.realified is not None for _, item in usable)
    top = max(len(item.ranking) for _, item in usable)
    tile, label = THUMB_SIZE, 34
    cols = 1 + int(realified) + top
    header = 40
    sheet = Image.new("RGB", (cols * (tile + 8) + 8, header + len(usable) * (tile + label + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    winners = ", ".join(f"{r['actor']} ({r['votes']} votes, {r['mean_score']:.3f})" for r in result.overall[:3])
    draw.text((8, 12), f"cast: {winners}", fill="black", font=font)
    for row, (i, item) in enumerate(usable):
        y = header + row * (tile + label + 8)
        tiles = [(_load(out / "faces" / f"character_{i}.jpg"), Path(item.path).name[:18], "")]
        if realified:
            tiles.append((_load(out / "faces" / f"realified_{i}.jpg"), "realified", ""))
        tiles += [(_load(out / "actors" / Path(r["photo"]).name), r["actor"][:18], f"{r['score']:.3f}") for r in item.ranking]
        for col, (image, name, score) in enumerate(tiles):
            x = 8 + col * (tile + 8)
            sheet.paste(Image.fromarray(image), (x, y))
            draw.text((x, y + tile + 2), name, fill="black", font=font)
            draw.text((x, y + tile + 17), score, fill="#555555", font=font)
    return np.asarray(sheet)
