"""`toonfactory view DIR`: a dataset's pairs side by side with their scores, filters and sorting,
rejected inputs with their reasons, the embedding map, and human review into ``DIR/review.json``.

Only the json records are read up front (:func:`factory.dataset.reader.index_samples`); images are
read from the shards by byte range when a page shows them.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from factory.dataset import review
from factory.dataset.facemap import MAP_PNG, group_of, section, write_map
from factory.dataset.layout import read_manifest
from factory.dataset.reader import Entry, index_samples, read_image_field
from factory.dataset.report import shard_stats
from factory.errors import UserError

log = logging.getLogger(__name__)

PAGE = 24
ALL = "(all)"
REVIEW_CHOICES = (ALL, "marked", "not marked")


def scores(meta: dict) -> dict[str, float]:
    """A sample's numeric scores: every gate score, the face detector's score and the warp strength."""
    found = {f"gates.{k}": float(v) for k, v in section(meta, "gates").items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for part, name in (("faces", "score"), ("warp", "strength")):
        value = section(meta, part).get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[f"{part}.{name}"] = float(value)
    return found


def sample_table(entries: list[Entry], marks: dict) -> pd.DataFrame:
    """One row per pair: key, shard, source, character, teacher, scores, and its review mark."""
    rows = [{"key": e.key, "shard": e.shard, "source": group_of(e.meta, "source"),
             "character": group_of(e.meta, "character"), "teacher": group_of(e.meta, "teacher"), **scores(e.meta),
             "marked": e.key in marks, "note": marks.get(e.key, {}).get("note", "")} for e in entries]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(["key", "shard", "source", "character", "teacher",
                                                          *(k for r in rows for k in r)])))


def score_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if "." in c]


def select(table: pd.DataFrame, *, score: str | None = None, low: float | None = None, high: float | None = None,
           teacher: str = ALL, source: str = ALL, reviewed: str = ALL, sort_by: str = "key",
           descending: bool = False) -> pd.DataFrame:
    """The rows passing the filters (a score range, teacher, source, review state), sorted by any column."""
    keep = pd.Series(True, index=table.index)
    if score in table.columns:
        if low is not None:
            keep &= table[score] >= low
        if high is not None:
            keep &= table[score] <= high
    if teacher != ALL:
        keep &= table["teacher"] == teacher
    if source != ALL:
        keep &= table["source"] == source
    if reviewed != ALL:
        keep &= table["marked"] == (reviewed == "marked")
    chosen = table[keep]
    if sort_by in chosen.columns:
        chosen = chosen.sort_values(sort_by, ascending=not descending, kind="stable", na_position="last")
    return chosen


def bound(text: str | None) -> float | None:
    """A score bound typed by the user: a number, or no bound when empty or not a number."""
    try:
        return float(text) if text and text.strip() else None
    except ValueError:
        return None


def reject_table(out: Path) -> pd.DataFrame:
    """Every rejected input of the run, with its shard, key, source item and reason (and a review note)."""
    rows = [{"shard": s.shard, "key": r.get("key"), "item": r.get("item"), "reason": r.get("reason"),
             "note": r.get("note", "")} for s in shard_stats(out) for r in s.rejects]
    return pd.DataFrame(rows, columns=["shard", "key", "item", "reason", "note"])


def side_by_side(images: list[np.ndarray | None], gap: int = 3) -> np.ndarray:
    """real | toon | mask in one RGB tile, white gaps between."""
    tiles = [np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im for im in images if im is not None]
    height = tiles[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    return np.concatenate([part for tile in tiles for part in (tile, spacer)][:-1], axis=1)


def enlarged(image: np.ndarray | None, side: int = 256) -> np.ndarray | None:
    """Small pairs shown at ``side`` px at least, pixels kept sharp (nearest neighbour)."""
    if image is None or max(image.shape[:2]) >= side:
        return image
    scale = side // max(image.shape[:2])
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def dataset_stamp(out: Path) -> tuple:
    """What changes when the dataset on disk does: name, size, mtime and inode of its manifest, shards
    and stats (a resumed or re-run generate, a shard replaced); review marks are read on every refresh."""
    files = [Path(out) / "manifest.json", *sorted((Path(out) / "shards").glob("*.tar")),
             *sorted((Path(out) / "stats").glob("*"))]
    stamp = []
    for path in files:
        try:
            info = path.lstat()
        except OSError:
            continue
        stamp.append((path.name, info.st_size, info.st_mtime_ns, info.st_ino))
    return tuple(stamp)


class Viewer:
    """The dataset behind the page: its index, review marks and the current selection's rows. The index
    follows the dataset on disk: :meth:`current` reads it again once its files changed (byte ranges into a
    replaced shard would show other pairs, or none)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self._index()

    def _index(self) -> None:
        self.stamp = dataset_stamp(self.out)
        self.manifest = read_manifest(self.out) or {}
        self.entries = {e.key: e for e in index_samples(self.out)}
        self.rejects = reject_table(self.out)
        self.table = sample_table(list(self.entries.values()), self.marks())

    def current(self) -> bool:
        """Read the dataset again when it changed on disk since it was read; True if it did."""
        if dataset_stamp(self.out) == self.stamp:
            return False
        log.info("%s changed on disk: read again", self.out)
        self._index()
        return True

    def marks(self) -> dict:
        return review.read_review(review.review_path(self.out))["marks"]

    def refresh_marks(self) -> None:
        marks = self.marks()
        self.table["marked"] = self.table["key"].isin(marks)
        self.table["note"] = [marks.get(k, {}).get("note", "") for k in self.table["key"]]

    def tile(self, key: str) -> np.ndarray:
        """A pair's real | toon | mask; a damaged sample is a grey tile (its error is logged) so the page stays."""
        try:
            return side_by_side([read_image_field(self.out, self.entries[key], f) for f in ("real", "toon", "mask")])
        except UserError as exc:
            log.warning("%s", exc)
            return np.full((64, 64, 3), 128, np.uint8)

    def page(self, rows: pd.DataFrame, number: int, score: str | None) -> list[tuple[np.ndarray, str]]:
        start = max(int(number or 1) - 1, 0) * PAGE
        shown = rows.iloc[start:start + PAGE]
        return [(self.tile(r["key"]), f"{'✗ ' if r['marked'] else ''}{r['key']}"
                 + (f"  {score}={r[score]:.6g}" if score in r and pd.notna(r[score]) else ""))
                for _, r in shown.iterrows()]

    def detail(self, key: str):
        entry = self.entries.get(key)
        if entry is None:
            return None, None, None, None, ""
        images = [enlarged(read_image_field(self.out, entry, f)) for f in ("real", "toon", "mask")]
        return (*images, entry.meta, self.marks().get(key, {}).get("note", ""))

    def header(self) -> str:
        m = self.manifest
        counts = m.get("counts", {})
        teacher = (m.get("recipe", {}).get("teacher") or {}).get("kind")
        parent = f" · filtered from `{m['parent']['path']}`" if m.get("parent") else ""
        return (f"## {m.get('name', self.out.name)} · {len(self.entries)} pairs · "
                f"{sum(counts.get('rejected', {}).values())} rejected · teacher `{teacher}` · "
                f"recipe `{m.get('recipe_hash')}`{parent}\n`{self.out}`")


def build(out: Path):
    """The viewer's gradio Blocks for the dataset folder ``out``."""
    import gradio as gr

    viewer = Viewer(out)
    scores_ = score_columns(viewer.table)
    sortable = ["key", *scores_, "source", "character", "teacher", "marked"]
    teachers = [ALL, *sorted(viewer.table["teacher"].unique())]
    sources = [ALL, *sorted(viewer.table["source"].unique())]
    reasons = [ALL, *sorted(viewer.rejects["reason"].dropna().unique())]

    def refresh(score, low, high, teacher, source, reviewed, sort_by, descending, page):
        if not viewer.current():
            viewer.refresh_marks()
        rows = select(viewer.table, score=score, low=bound(low), high=bound(high), teacher=teacher, source=source,
                      reviewed=reviewed, sort_by=sort_by, descending=descending)
        pages = max((len(rows) + PAGE - 1) // PAGE, 1)
        summary = f"**{len(rows)} of {len(viewer.table)} pairs** · page {min(int(page or 1), pages)} of {pages}"
        return viewer.page(rows, page, score), rows, list(rows["key"]), summary

    def choose(key):
        viewer.current()
        real, toon, mask, meta, note = viewer.detail(key)
        return key, real, toon, mask, meta, note

    def on_gallery(keys, page, evt: gr.SelectData):
        return choose(keys[max(int(page or 1) - 1, 0) * PAGE + evt.index])

    def on_row(rows, evt: gr.SelectData):
        return choose(rows.iloc[evt.index[0]]["key"])

    def mark_bad(key, note):
        if key not in viewer.entries:
            return "choose a pair first (click a tile or a row)", review_rows()
        review.mark(viewer.out, key, note or "")
        return f"marked **{key}** bad → `{review.review_path(viewer.out)}`", review_rows()

    def unmark(key):
        review.unmark(viewer.out, key)
        return f"mark taken off **{key}**", review_rows()

    def review_rows():
        marks = viewer.marks()
        return pd.DataFrame([{"key": k, "note": m.get("note", ""), "marked_at": m.get("marked_at", "")}
                             for k, m in sorted(marks.items())], columns=["key", "note", "marked_at"])

    def rejected(reason):
        viewer.current()
        table = viewer.rejects
        return table if reason == ALL else table[table["reason"] == reason]

    def draw_map(by, progress=gr.Progress()):
        progress(0, desc="embedding faces")
        result = write_map(viewer.out, by=by, progress=lambda f: progress(f, desc="embedding faces"))
        return str(result["png"]), f"{len(result['points'])} faces, {result['feature']} features, {result['method']} → `{result['png']}`"

    existing_map = viewer.out / MAP_PNG
    with gr.Blocks(title=f"toonfactory · {viewer.out.name}") as page:
        gr.Markdown(viewer.header())
        with gr.Tab("Pairs"):
            with gr.Row():
                score = gr.Dropdown(scores_, value=scores_[0] if scores_ else None, label="score", elem_id="score")
                low = gr.Textbox(label="min", placeholder="any", elem_id="score-min")
                high = gr.Textbox(label="max", placeholder="any", elem_id="score-max")
                teacher = gr.Dropdown(teachers, value=ALL, label="teacher", elem_id="teacher")
                source = gr.Dropdown(sources, value=ALL, label="source", elem_id="source")
                reviewed = gr.Dropdown(list(REVIEW_CHOICES), value=ALL, label="review", elem_id="reviewed")
            with gr.Row():
                sort_by = gr.Dropdown(sortable, value="key", label="sort by", elem_id="sort-by")
                descending = gr.Checkbox(False, label="descending", elem_id="descending")
                page_no = gr.Number(1, label="page", precision=0, minimum=1, elem_id="page")
            summary = gr.Markdown(elem_id="summary")
            gallery = gr.Gallery(label="real | toon | mask", columns=4, height=460, allow_preview=False,
                                 object_fit="contain", elem_id="pairs")
            with gr.Row():
                real = gr.Image(label="real", interactive=False, height=256)
                toon = gr.Image(label="toon", interactive=False, height=256)
                mask = gr.Image(label="mask", interactive=False, height=256)
            with gr.Row():
                key = gr.Textbox(label="pair", interactive=False, elem_id="key")
                note = gr.Textbox(label="note", placeholder="why this pair is bad", elem_id="note")
                mark_button = gr.Button("Mark bad", variant="stop", elem_id="mark")
                unmark_button = gr.Button("Unmark", elem_id="unmark")
            status = gr.Markdown(elem_id="status")
            meta = gr.JSON(label="sample json", open=False)
            rows = gr.Dataframe(label="pairs (click a row)", interactive=False, max_height=360, elem_id="rows")
        with gr.Tab("Rejected"):
            reason = gr.Dropdown(reasons, value=ALL, label="reject reason", elem_id="reason")
            reject_rows = gr.Dataframe(viewer.rejects, interactive=False, elem_id="rejects")
        with gr.Tab("Map"):
            with gr.Row():
                by = gr.Radio(["character", "source", "teacher"], value="character", label="colour by")
                map_button = gr.Button("Draw map", elem_id="draw-map")
            map_status = gr.Markdown()
            map_image = gr.Image(str(existing_map) if existing_map.is_file() else None, label="embedding map",
                                 interactive=False, elem_id="map")
        with gr.Tab("Review"):
            gr.Markdown(f"Marks are kept in `{review.review_path(viewer.out)}` (the shards are never changed). "
                        f"A version without them: `toonfactory dataset filter {viewer.out} --out NEW`.")
            marks_table = gr.Dataframe(review_rows(), interactive=False, elem_id="marks")

        keys = gr.State([])
        filters = [score, low, high, teacher, source, reviewed, sort_by, descending, page_no]
        shown = [gallery, rows, keys, summary]
        for control in filters:
            control.change(refresh, filters, shown)
        page.load(refresh, filters, shown)
        detail = [key, real, toon, mask, meta, note]
        gallery.select(on_gallery, [keys, page_no], detail)
        rows.select(on_row, [rows], detail)
        mark_button.click(mark_bad, [key, note], [status, marks_table]).then(refresh, filters, shown)
        unmark_button.click(unmark, [key], [status, marks_table]).then(refresh, filters, shown)
        reason.change(rejected, [reason], [reject_rows])
        map_button.click(draw_map, [by], [map_image, map_status])
    return page
