"""The casting report: ``ranking.json``, an HTML page and a PNG contact sheet in one folder.

Each ranked face gets a row: the face as detected, the face as transformed (labelled with what was
done: realified by which model, unwarped by how much) and the top actors, each with the gallery photo
that matched best, its ranking score (the similarity; with a gallery's drawings, the mean of the similarities to
the photos and to their drawings) and z-score; the verdict and the overall vote head the page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from casting.gallery import THUMB_SIZE, Gallery
from casting.rank import CastResult
from factory.images import encode_png
from factory.files import FolderLock, inside, output_folder, subfolder, write_atomic


def _save(image: np.ndarray, out: Path, name: str) -> None:
    """A face tile as ``out/faces/name`` (JPEG)."""
    tile = cv2.resize(image, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    write_atomic(subfolder(out, "faces") / name, cv2.imencode(".jpg", cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))[1].tobytes())


def _load(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:  # a gallery whose faces/ folder was removed: a grey tile, not a crash
        return np.full((THUMB_SIZE, THUMB_SIZE, 3), 128, np.uint8)
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


def write_report(result: CastResult, gallery: Gallery, out: Path) -> dict[str, Path]:
    """Write ranking.json, report.html and report.png into ``out`` (locked meanwhile); returns their paths."""
    out = output_folder(out)
    with FolderLock(out, "toonfactory cast rank", kind="cast rank", earlier="ranking.json"):
        return _write_report(result, gallery, out)


def _write_report(result: CastResult, gallery: Gallery, out: Path) -> dict[str, Path]:
    paths = {"json": out / "ranking.json", "html": out / "report.html", "png": out / "report.png"}
    write_atomic(paths["json"], json.dumps(result.to_json(), indent=1, ensure_ascii=False).encode())
    for i, item in enumerate(result.images):
        if item.query is not None:
            _save(item.query.crop, out, f"character_{i}.jpg")
            if item.query.realified is not None:
                _save(item.query.realified, out, f"realified_{i}.jpg")
        for row in item.ranking:
            source = inside(gallery.root, row["photo"], f"{gallery.root / 'gallery.json'}: field 'face'")
            target = out / "actors" / source.name
            if not target.exists() and source.is_file():
                write_atomic(subfolder(out, "actors") / source.name, source.read_bytes())
    write_atomic(paths["html"], _html(result).encode())
    write_atomic(paths["png"], encode_png(_sheet(result, out)))
    return paths


def _face_label(item) -> str:
    """What the first tile shows: the face as found, by which detector, and its fitted webtoon geometry."""
    query = item.query
    label = f"by {query.detected_by}" if query.detected_by else "detected"
    if query.unwarp_fitted is not None:
        label += f", shape {query.unwarp_fitted:.2f}"
    return label


def _html(result: CastResult) -> str:
    esc = html.escape
    settings = result.settings
    overall = "".join(
        f"<tr><td>{n + 1}</td><td>{esc(r['actor'])}</td><td>{r['points']}</td><td>{r['firsts']}</td>"
        f"<td>{_z(r['mean_z'])}</td><td>{r['mean_score']:.3f}</td><td>{r['best_score']:.3f}</td></tr>"
        for n, r in enumerate(result.overall))
    rows = []
    for i, item in enumerate(result.images):
        judged = "" if item.query is None else f"<br><small>{esc(_face_basis(item))}: {esc(item.verdict)}</small>"
        cells = [f"<td class=name>{esc(Path(item.path).name)}<br><small>{esc(item.status)}"
                 f"{'' if item.chosen is None else ' &middot; ' + esc(item.chosen)}</small>{judged}</td>"]
        if item.query is not None:
            cells.append(f"<td><img src='faces/character_{i}.jpg'><br>{esc(_face_label(item))}</td>")
            if item.query.realified is not None:
                cells.append(f"<td><img src='faces/realified_{i}.jpg'><br>{esc(item.query.transform_label() or '')}</td>")
            cells += [f"<td><img src='actors/{esc(Path(r['photo']).name)}'><br>{esc(r['actor'])}<br>{r['score']:.3f} "
                      f"(z {_z(r['z'])})</td>" for r in item.ranking]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Virtual casting</title>
<style>body{{font-family:sans-serif;margin:1.5em}} td{{text-align:center;padding:4px;vertical-align:top}}
td.name{{text-align:left;max-width:14em}} img{{width:{THUMB_SIZE}px;height:{THUMB_SIZE}px}}
table.overall td{{text-align:left;padding:2px 12px}}</style></head><body>
<h1>Virtual casting: {esc(result.verdict)} ({esc(_basis(result))})</h1>
<p>Gallery <code>{esc(str(settings['gallery']))}</code>, embedder {esc(settings['embedder']['name'])},
detector {esc(settings['detector'])}, face: {esc(settings['face'])}, realify: {esc(str(settings['realify']))},
unwarp: {esc(str(settings['unwarp']))}, Borda votes over the top {settings['top']} per face,
filter: {esc(json.dumps(settings['where']))}.</p>
<h2>Overall</h2>
<table class=overall><tr><th>#</th><th>actor</th><th>points</th><th>first</th><th>mean z</th><th>mean similarity</th><th>best</th></tr>{overall}</table>
<h2>Per face</h2>
<table>{''.join(rows)}</table>
</body></html>
"""


def _z(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _face_basis(item) -> str:
    """A face's likeness (galleries with drawings) and z-score, short."""
    return ("" if item.likeness is None else f"likeness {item.likeness:.2f}, ") + f"z {_z(item.confidence)}"


def _basis(result: CastResult) -> str:
    """What the verdict was judged on: the likeness (galleries with drawings) or the z-score, and its threshold."""
    calibration = result.settings["calibration"]
    if result.likeness is not None:
        return (f"likeness {result.likeness:.2f}, threshold {calibration['clear_match_likeness']}; "
                f"confidence z {_z(result.confidence)}")
    return f"confidence z {_z(result.confidence)}, threshold {calibration['clear_match_z']}"


def _sheet(result: CastResult, out: Path) -> np.ndarray:
    """One row per ranked face: character | transformed | top actors; the verdict and winners on top."""
    usable = [(i, item) for i, item in enumerate(result.images) if item.query is not None]
    transformed = any(item.query.realified is not None for _, item in usable)
    top = max(len(item.ranking) for _, item in usable)
    tile, label = THUMB_SIZE, 50
    cols = 1 + int(transformed) + top
    header = 58
    sheet = Image.new("RGB", (max(cols * (tile + 8) + 8, 560), header + len(usable) * (tile + label + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    winners = ", ".join(f"{r['actor']} ({r['points']} pts, z {_z(r['mean_z'])})" for r in result.overall[:3])
    draw.text((8, 8), f"{result.verdict} ({_basis(result)})",
              fill="black" if result.verdict == "match" else "#b00000", font=font)
    draw.text((8, 28), f"cast: {winners}", fill="black", font=font)
    for row, (i, item) in enumerate(usable):
        y = header + row * (tile + label + 8)
        tiles = [(_load(out / "faces" / f"character_{i}.jpg"), Path(item.path).name[:18], _face_label(item)[:20])]
        if transformed:
            changed = item.query.realified is not None
            done, by = item.query.transform_lines()
            tiles.append((_load(out / "faces" / f"realified_{i}.jpg") if changed else np.full((tile, tile, 3), 235, np.uint8),
                          done, by[:19]))
        tiles += [(_load(out / "actors" / Path(r["photo"]).name), r["actor"][:18], f"{r['score']:.3f} z {_z(r['z'])}")
                  for r in item.ranking]
        for col, (image, name, note) in enumerate(tiles):
            x = 8 + col * (tile + 8)
            sheet.paste(Image.fromarray(image), (x, y))
            draw.text((x, y + tile + 2), name, fill="black", font=font)
            draw.text((x, y + tile + 17), note, fill="#555555", font=font)
        draw.text((8, y + tile + 32), f"{_face_basis(item)}: {item.verdict}", fill="#555555", font=font)
    return np.asarray(sheet)
