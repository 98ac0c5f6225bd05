"""Actor galleries: face embeddings of actor photos, built and extended from folders or a CSV.

The gallery is a folder: ``gallery.json`` (embedder name and version, actors and their attributes,
one entry per embedded photo, rejected photos with their reason, the name of its embeddings file),
``embeddings.<sha256[:12]>.safetensors`` (one row per entry; named by its content, so a run stopped
between the two writes, by a full disk or a kill, leaves the json with the rows it names) and ``faces/``
(an aligned crop of every entry, for reports). Galleries made before the name was recorded read
``embeddings.safetensors``. The embeddings file may also hold ``drawn``: the embedding of the `webtoon`
teacher's drawing of each entry's face (NaN where no face was found in it), which calibrates verdicts
on drawn characters (``casting.calibration``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from casting.calibration import DrawnLevels, draw_photo
from factory import faces as facelib
from factory.errors import UserError
from factory.faces import DetectorChain
from factory.files import FolderLock, inside, output_folder, sha256_file, subfolder, write_atomic
from factory.images import DECODE_PIXELS, IMAGE_SUFFIXES, BadImage, actor_folders, read_image
from factory.models.embedding import Embedder, build_embedder, embed

log = logging.getLogger(__name__)

GALLERY_FORMAT = "toonfactory.cast.gallery/1"
GALLERY_JSON = "gallery.json"
EMBEDDINGS_FILE = "embeddings.safetensors"  # galleries whose json names no embeddings file
EMBEDDINGS_NAME = re.compile(r"embeddings(\.[0-9a-f]{12})?\.safetensors")  # the only embeddings files a gallery removes
THUMB_SIZE = 128
THUMB_NAME = re.compile(r"[0-9a-f]{12}\.jpg")  # faces/<sha256[:12]>.jpg: the only files a gallery removes


# Casting compares drawn faces with photos. A drawing's colours are its style's, not the person's, so a
# new gallery embeds luminance only, and ten jittered views steady each descriptor: on 18 actors
# (benchmarks/cast_accuracy.py, with mean-per-actor scores) the fitted-style webtoon queries' rank-1
# rose from 81.7% to 91.7% with real photos still at 100%.
CASTING_SETTINGS = {"jitters": 10, "colour": "gray"}


def identity(embedder: Embedder) -> dict:
    """What a gallery records of its embedder; galleries and queries must agree on it."""
    return {"name": embedder.name, "version": embedder.version, "dim": embedder.dim, "settings": embedder.settings}


def embedder_for(spec: str, gallery: "Gallery | None" = None, **chosen) -> Embedder:
    """The embedder ``spec`` set up as ``gallery`` was embedded (its recorded settings; a new gallery
    gets ``CASTING_SETTINGS``), with the options the user ``chosen`` (None: not chosen) on top."""
    settings = gallery.embedder["settings"] if gallery is not None else dict(CASTING_SETTINGS)
    if gallery is None and str(spec) != "dlib":
        settings.pop("jitters")
    return build_embedder(spec, **{**settings, **{k: v for k, v in chosen.items() if v is not None}})


def thumbnail(image: np.ndarray, face: facelib.Face, size: int = THUMB_SIZE, margin: float = 1.0) -> np.ndarray:
    """An FFHQ-style aligned crop of a face, for galleries and reports."""
    matrix = facelib.alignment_matrix(face.keypoints5(), size, margin)
    return facelib.crop(image, matrix, size)


@dataclass
class Gallery:
    """Actors' face embeddings; ``vectors[i]`` belongs to ``entries[i]``."""

    root: Path
    embedder: dict
    detector: str
    actors: dict[str, dict[str, str]] = field(default_factory=dict)
    entries: list[dict] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    rejected: list[dict] = field(default_factory=list)
    drawn: np.ndarray | None = None  # drawn[i]: the embedding of entry i's face drawn by the `webtoon` teacher

    def drawn_levels(self) -> DrawnLevels | None:
        """The verdict's levels read from the drawings of the photos (None: made without drawings)."""
        if self.drawn is None:
            return None
        return DrawnLevels.measure(self.vectors, np.array([e["actor"] for e in self.entries]), self.drawn)

    @classmethod
    def load(cls, root: Path) -> "Gallery":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        root = Path(root)
        meta_path = root / GALLERY_JSON
        if not meta_path.is_file():
            raise UserError(f"{meta_path}: not a cast gallery (run `toonfactory cast gallery` first)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != GALLERY_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise UserError(f"{meta_path}: field 'format' is {found!r}, expected {GALLERY_FORMAT!r}")
        try:
            entries, dim, actors = meta["entries"], int(meta["embedder"]["dim"]), dict(meta["actors"])
            for entry in entries:
                inside(root, entry["face"], f"{meta_path}: entry {entry['image']!r} field 'face'")
                str(entry["actor"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{meta_path}: malformed gallery ({type(exc).__name__}: {exc}); rebuild it with "
                            "`toonfactory cast gallery`") from None
        name = meta.get("embeddings", EMBEDDINGS_FILE)
        if not isinstance(name, str) or not EMBEDDINGS_NAME.fullmatch(name):
            raise UserError(f"{meta_path}: field 'embeddings' is {name!r}, expected embeddings.<hex>.safetensors; "
                            "rebuild it with `toonfactory cast gallery`")
        vectors, drawn = np.zeros((0, dim), np.float32), None
        if entries:
            try:
                tensors = load_file(str(root / name))
                vectors, drawn = tensors["embeddings"], tensors.get("drawn")
            except (OSError, KeyError, SafetensorError) as exc:  # a pickle or a cut file is never loaded
                raise UserError(f"{root / name}: cannot read the embeddings ({exc}); rebuild the gallery into a new "
                                "folder with `toonfactory cast gallery`") from None
            for label, array in (("shape", vectors), ("'drawn' shape", vectors if drawn is None else drawn)):
                if array.shape != (len(entries), dim):
                    raise UserError(f"{root / name}: {label} {array.shape} does not match "
                                    f"{len(entries)} entries of {dim} dims in {meta_path}")
        meta["embedder"].setdefault("settings", {})  # galleries from before settings were recorded
        return cls(root=root, embedder=meta["embedder"], detector=meta.get("detector", ""), actors=actors,
                   entries=entries, vectors=vectors, rejected=meta.get("rejected", []), drawn=drawn)

    def save(self) -> None:
        """Embeddings first, under a name of their content, then the json that names them (each atomically):
        the json always names the rows it was written with, however a run stops. Then the embeddings files
        no json names any more are removed (only names a gallery gives them; never a link)."""
        from safetensors.numpy import save as tensor_bytes

        self.root.mkdir(parents=True, exist_ok=True)
        tensors = {"embeddings": self.vectors} if self.drawn is None else {"embeddings": self.vectors, "drawn": self.drawn}
        data = tensor_bytes({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()})
        name = f"embeddings.{hashlib.sha256(data).hexdigest()[:12]}.safetensors"
        write_atomic(self.root / name, data)
        meta = {"format": GALLERY_FORMAT, "embedder": self.embedder, "detector": self.detector, "embeddings": name,
                "actors": self.actors, "entries": self.entries, "rejected": self.rejected}
        write_atomic(self.root / GALLERY_JSON, json.dumps(meta, indent=1, ensure_ascii=False).encode())
        for old in self.root.iterdir():
            if old.name != name and EMBEDDINGS_NAME.fullmatch(old.name) and old.is_file() and not old.is_symlink():
                old.unlink()

    def actor_names(self, where: dict[str, str] | None = None) -> list[str]:
        """Actors with at least one embedded photo whose attributes match every ``key=value`` of ``where``."""
        have = {e["actor"] for e in self.entries}
        names = sorted(a for a in self.actors if a in have)
        for key, value in (where or {}).items():
            names = [a for a in names if str(self.actors[a].get(key, "")).lower() == value.lower()]
        return names


@dataclass
class GalleryInput:
    image: Path
    actor: str


def read_attributes(path: Path) -> dict[str, dict[str, str]]:
    """A CSV with an ``actor`` column and one column per attribute (e.g. ``gender``)."""
    rows = _read_csv(path, required=("actor",))
    attrs: dict[str, dict[str, str]] = {}
    for row in rows:
        actor = row.pop("actor").strip()
        attrs.setdefault(actor, {}).update({k: v.strip() for k, v in row.items() if k and v and v.strip()})
    return attrs


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows, each with every ``required`` column filled: a line that leaves one empty (an actor named
    '' would be cast), or a file that is no UTF-8 CSV, is refused naming the line or the file."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: missing column(s) {missing} (has {reader.fieldnames})")
            rows = []
            for row in reader:
                empty = [c for c in required if not (row.get(c) or "").strip()]
                if empty:
                    raise UserError(f"{path}: line {reader.line_num}: column {empty[0]!r} is empty")
                rows.append(dict(row))
            return rows
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a UTF-8 CSV file ({exc})") from None


def collect_inputs(actors: Path, attributes: Path | None = None,
                   nested: bool = False) -> tuple[list[GalleryInput], dict[str, dict[str, str]]]:
    """Photos and actor attributes from a folder (one sub-folder per actor, see
    :func:`~factory.images.actor_folders`) or a CSV (image, actor, attributes...)."""
    actors = Path(actors)
    attrs: dict[str, dict[str, str]] = {}
    inputs: list[GalleryInput] = []
    if actors.is_dir():
        for name, files in actor_folders(actors, nested).items():
            attrs.setdefault(name, {})
            inputs += [GalleryInput(p, name) for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    elif actors.is_file() and actors.suffix.lower() == ".csv":
        for row in _read_csv(actors, required=("image", "actor")):
            actor = row.pop("actor").strip()
            image = Path(row.pop("image").strip())
            inputs.append(GalleryInput(image if image.is_absolute() else actors.parent / image, actor))
            extra = {k: v.strip() for k, v in row.items() if k and v and v.strip()}
            known = attrs.setdefault(actor, {})
            for key, value in extra.items():
                if known.get(key, value) != value:
                    raise UserError(f"{actors}: actor {actor!r} has two values for column {key!r}: {known[key]!r}, {value!r}")
                known[key] = value
    else:
        raise UserError(f"{actors}: expected a folder with one sub-folder per actor, or a .csv (image, actor, ...)")
    if not inputs:
        raise UserError(f"{actors}: no photos found (expected one sub-folder of images per actor, or CSV rows)")
    if attributes is not None:
        for actor, values in read_attributes(attributes).items():
            attrs.setdefault(actor, {}).update(values)
    return inputs, attrs


def conflicts(inputs: list[GalleryInput], digests: dict[str, str | None]) -> dict[str, str]:
    """Why a photo is not used although it may have a face: a copy of another photo of the same actor,
    or one photo given for several actors (it cannot say who it shows). By resolved image path."""
    by_digest: dict[str, list[GalleryInput]] = {}
    for item in inputs:
        digest = digests[str(Path(item.image).resolve())]
        if digest is not None:
            by_digest.setdefault(digest, []).append(item)
    reasons = {}
    for group in by_digest.values():
        actors = sorted({item.actor for item in group})
        if len(actors) > 1:
            for item in group:
                reasons[str(Path(item.image).resolve())] = f"same_photo_under_actors ({', '.join(actors)})"
            continue
        for item in group[1:]:
            reasons[str(Path(item.image).resolve())] = f"duplicate_of ({group[0].image})"
    return reasons


@dataclass
class GalleryUpdate:
    added: int = 0
    reused: int = 0
    replaced: int = 0
    removed: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    faceless: list[str] = field(default_factory=list)  # actors left without a usable photo


def update_gallery(root: Path, inputs: list[GalleryInput], attrs: dict[str, dict[str, str]], embedder: Embedder,
                   detector: DetectorChain, progress: Callable[[], None] | None = None,
                   draw: bool = False) -> tuple[Gallery, GalleryUpdate]:
    """Create or sync a gallery with its inputs: only photos that are new, or changed since, are detected
    and embedded; photos no longer among the inputs (deleted, moved out, their CSV row gone) leave, and
    so do actors left without inputs. Copies of one photo and a photo given for several actors are
    reported, not used. With ``draw``, each new photo's face is also drawn by the `webtoon` teacher and
    the drawing embedded (verdicts on drawn characters are calibrated on them); photos embedded before
    without a drawing keep none."""
    root = output_folder(root)
    with FolderLock(root, "toonfactory cast gallery", kind="cast gallery", earlier=GALLERY_JSON):
        return _update_gallery(root, inputs, attrs, embedder, detector, progress, draw)


def _update_gallery(root: Path, inputs: list[GalleryInput], attrs: dict[str, dict[str, str]], embedder: Embedder,
                    detector: DetectorChain, progress: Callable[[], None] | None, draw: bool) -> tuple[Gallery, GalleryUpdate]:
    model = identity(embedder)
    if (root / GALLERY_JSON).exists():
        gallery = Gallery.load(root)
        if gallery.embedder != model:
            raise UserError(f"{root / GALLERY_JSON}: field 'embedder' is {gallery.embedder}, but this run uses "
                            f"{model}; embeddings of different models cannot be mixed (use a new --out)")
    else:
        gallery = Gallery(root=root, embedder=model, detector=detector.spec,
                          vectors=np.zeros((0, embedder.dim), np.float32))
    subfolder(root, "faces")
    known = {e["image"]: i for i, e in enumerate(gallery.entries)}
    known_rejects = {r["image"]: r for r in gallery.rejected}
    keep = np.ones(len(gallery.entries), bool)
    new_entries, new_vectors, new_drawn, rejected = [], [], [], [r for r in gallery.rejected]
    teacher = _drawing_teacher() if draw else None
    update = GalleryUpdate()
    digests = {str(Path(i.image).resolve()): sha256_file(i.image, 12) if Path(i.image).is_file() else None for i in inputs}
    refused = conflicts(inputs, digests)
    for item in inputs:
        image_key = str(Path(item.image).resolve())
        digest = digests[image_key]
        old = known.get(image_key)
        fresh = image_key not in refused
        if fresh and old is not None and gallery.entries[old]["sha256"] == digest and gallery.entries[old]["actor"] == item.actor:
            update.reused += 1
            _tick(progress)
            continue
        previous = known_rejects.get(image_key)
        if fresh and previous is not None and previous.get("sha256") == digest and digest is not None:
            update.reused += 1
            _tick(progress)
            continue
        rejected = [r for r in rejected if r["image"] != image_key]
        if old is not None:
            keep[old] = False
            update.replaced += 1
        entry, vector, drawn, reason = (None, None, None, refused[image_key]) if image_key in refused else \
            _embed_photo(Path(item.image), item.actor, digest, embedder, detector, root, teacher)
        if reason:
            record = {"image": image_key, "actor": item.actor, "sha256": digest, "reason": reason}
            rejected.append(record)
            update.rejected.append(record)
            log.warning("gallery: %s (%s): %s", item.image, item.actor, reason)
        else:
            new_entries.append(entry)
            new_vectors.append(vector)
            new_drawn.append(drawn)
            update.added += 1
        _tick(progress)
    wanted = {str(Path(i.image).resolve()) for i in inputs}
    for n, entry in enumerate(gallery.entries):
        if keep[n] and entry["image"] not in wanted:
            keep[n] = False
            update.removed.append({"image": entry["image"], "actor": entry["actor"]})
    rejected = [r for r in rejected if r["image"] in wanted]
    gallery.entries = [e for e, k in zip(gallery.entries, keep) if k] + new_entries
    gallery.vectors = np.concatenate([gallery.vectors[keep], *(v[None] for v in new_vectors)]).astype(np.float32) \
        if new_vectors else gallery.vectors[keep]
    if draw or gallery.drawn is not None:
        nowhere = np.full(embedder.dim, np.nan, np.float32)
        old = gallery.drawn[keep] if gallery.drawn is not None else np.full((int(keep.sum()), embedder.dim), np.nan, np.float32)
        gallery.drawn = np.concatenate([old, *((nowhere if d is None else d)[None] for d in new_drawn)]).astype(np.float32)
    gallery.rejected = rejected
    present = {i.actor for i in inputs}
    gallery.actors = {a: dict(gallery.actors.get(a, {}), **attrs.get(a, {})) for a in sorted(present)}
    update.faceless = sorted(present - {e["actor"] for e in gallery.entries})
    gallery.save()
    _drop_unused_thumbnails(root, gallery.entries)
    return gallery, update


def _drop_unused_thumbnails(root: Path, entries: list[dict]) -> None:
    """Remove the gallery's own thumbnails no entry uses; any other file in faces/ is left alone."""
    used = {e["face"] for e in entries}
    for thumb in (root / "faces").glob("*.jpg"):
        if THUMB_NAME.fullmatch(thumb.name) and f"faces/{thumb.name}" not in used:
            thumb.unlink()


def _tick(progress):
    if progress is not None:
        progress()


def _drawing_teacher():
    from factory.teachers.webtoon import WebtoonConfig

    return WebtoonConfig(kind="webtoon").build()


def _embed_photo(path: Path, actor: str, digest: str | None, embedder: Embedder, detector: DetectorChain,
                 root: Path, teacher=None) -> tuple[dict | None, np.ndarray | None, np.ndarray | None, str | None]:
    """(entry, embedding, embedding of the teacher's drawing or None, reject reason)."""
    try:
        image = read_image(path, fit_pixels=DECODE_PIXELS)
    except BadImage as exc:
        return None, None, None, exc.reason
    found = detector.detect(image)
    if not found:
        return None, None, None, "no_face"
    if len(found) > 1:
        return None, None, None, f"several_faces ({len(found)})"
    vectors, _ = embed(embedder, image, found)
    drawn = None
    if teacher is not None:
        drawing = draw_photo(image, found[0], digest or path.name, teacher)
        again = detector.detect(drawing)
        drawn = embed(embedder, drawing, again[:1])[0][0] if again else None
    thumb_name = f"faces/{digest}.jpg"
    write_atomic(root / thumb_name, cv2.imencode(".jpg", cv2.cvtColor(thumbnail(image, found[0]), cv2.COLOR_RGB2BGR))[1].tobytes())
    entry = {"actor": actor, "image": str(path.resolve()), "sha256": digest,
             "box": [round(float(v), 1) for v in found[0].box], "face": thumb_name}
    return entry, vectors[0], drawn, None
