"""Virtual casting: an actor gallery of face embeddings, and the ranking of actors for a character.

A character's images are detected, optionally realified (the toon2real student, an ONNX model or
a teacher), embedded, and every actor is scored per image by the best cosine similarity over the
actor's gallery photos. Across images, each image's top-k actors get one vote; actors are ranked
by votes, ties broken by the mean similarity (the seeds' "most often in the top 5").

The gallery is a folder: ``gallery.json`` (embedder name and version, actors and their attributes,
one entry per embedded photo, rejected photos with their reason), ``embeddings.safetensors``
(one row per entry) and ``faces/`` (an aligned crop of every entry, for reports).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from factory import faces as facelib
from factory.embedding import Embedder, embed, file_digest
from factory.errors import UserError
from factory.images import IMAGE_SUFFIXES, BadImage, list_images, read_image

log = logging.getLogger(__name__)

GALLERY_FORMAT = "toonfactory.cast.gallery/1"
GALLERY_JSON = "gallery.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
THUMB_SIZE = 128
# dlib's own same-person rule (distance 0.6) as a cosine similarity of unit vectors
DLIB_SAME_PERSON = 1 - 0.6**2 / 2


# ---------------------------------------------------------------- detection


class DetectorChain:
    """Detectors tried in order; the first that finds any face answers (e.g. ``dlib,mediapipe``)."""

    def __init__(self, names: str | Iterable[str] = "dlib,mediapipe", min_size: int = 40):
        self.names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if not self.names or not all(self.names):
            raise UserError(f"--detector: {names!r} names no detector")
        self.min_size = min_size
        self._detectors = [facelib.build_detector(n, min_size=min_size) for n in self.names]

    @property
    def spec(self) -> str:
        return ",".join(self.names)

    def detect(self, image: np.ndarray) -> list[facelib.Face]:
        for detector in self._detectors:
            found = detector.detect(image)
            if found:
                return found
        return []


def thumbnail(image: np.ndarray, face: facelib.Face, size: int = THUMB_SIZE, margin: float = 1.0) -> np.ndarray:
    """An FFHQ-style aligned crop of a face, for galleries and reports."""
    matrix = facelib.alignment_matrix(face.keypoints5(), size, margin)
    return facelib.crop(image, matrix, size)


# ---------------------------------------------------------------- gallery


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

    @classmethod
    def load(cls, root: Path) -> "Gallery":
        from safetensors.numpy import load_file

        root = Path(root)
        meta_path = root / GALLERY_JSON
        if not meta_path.is_file():
            raise UserError(f"{meta_path}: not a cast gallery (run `toonfactory cast gallery` first)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta_path}: not valid JSON ({exc})") from None
        if meta.get("format") != GALLERY_FORMAT:
            raise UserError(f"{meta_path}: field 'format' is {meta.get('format')!r}, expected {GALLERY_FORMAT!r}")
        entries = meta["entries"]
        dim = int(meta["embedder"]["dim"])
        vectors = np.zeros((0, dim), np.float32)
        if entries:
            try:
                vectors = load_file(str(root / EMBEDDINGS_FILE))["embeddings"]
            except (OSError, KeyError) as exc:
                raise UserError(f"{root / EMBEDDINGS_FILE}: cannot read the embeddings ({exc})") from None
            if vectors.shape != (len(entries), dim):
                raise UserError(f"{root / EMBEDDINGS_FILE}: shape {vectors.shape} does not match "
                                f"{len(entries)} entries of {dim} dims in {meta_path}")
        return cls(root=root, embedder=meta["embedder"], detector=meta.get("detector", ""), actors=meta["actors"],
                   entries=entries, vectors=vectors, rejected=meta.get("rejected", []))

    def save(self) -> None:
        """Embeddings first, the json last (atomically): a reader never sees a json without its rows."""
        from safetensors.numpy import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (EMBEDDINGS_FILE + ".tmp")
        save_file({"embeddings": np.ascontiguousarray(self.vectors, dtype=np.float32)}, str(tmp))
        os.replace(tmp, self.root / EMBEDDINGS_FILE)
        meta = {"format": GALLERY_FORMAT, "embedder": self.embedder, "detector": self.detector,
                "actors": self.actors, "entries": self.entries, "rejected": self.rejected}
        tmp = self.root / (GALLERY_JSON + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        os.replace(tmp, self.root / GALLERY_JSON)

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
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: missing column(s) {missing} (has {reader.fieldnames})")
            return [dict(row) for row in reader]
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def collect_inputs(actors: Path, attributes: Path | None = None) -> tuple[list[GalleryInput], dict[str, dict[str, str]]]:
    """Photos and actor attributes from a folder (one sub-folder per actor) or a CSV (image, actor, attributes...)."""
    actors = Path(actors)
    attrs: dict[str, dict[str, str]] = {}
    inputs: list[GalleryInput] = []
    if actors.is_dir():
        for folder in sorted(p for p in actors.iterdir() if p.is_dir() and not p.name.startswith(".")):
            attrs.setdefault(folder.name, {})
            inputs += [GalleryInput(p, folder.name) for p in list_images(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
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
    if attributes is not None:
        for actor, values in read_attributes(attributes).items():
            attrs.setdefault(actor, {}).update(values)
    return inputs, attrs


@dataclass
class GalleryUpdate:
    added: int = 0
    reused: int = 0
    replaced: int = 0
    rejected: list[dict] = field(default_factory=list)


def update_gallery(root: Path, inputs: list[GalleryInput], attrs: dict[str, dict[str, str]], embedder: Embedder,
                   detector: DetectorChain, progress: Callable[[], None] | None = None) -> tuple[Gallery, GalleryUpdate]:
    """Create or extend a gallery: only photos that are new, or changed since, are detected and embedded."""
    root = Path(root)
    identity = {"name": embedder.name, "version": embedder.version, "dim": embedder.dim}
    if (root / GALLERY_JSON).exists():
        gallery = Gallery.load(root)
        if gallery.embedder != identity:
            raise UserError(f"{root / GALLERY_JSON}: field 'embedder' is {gallery.embedder}, but this run uses "
                            f"{identity}; embeddings of different models cannot be mixed (use a new --out)")
    else:
        gallery = Gallery(root=root, embedder=identity, detector=detector.spec,
                          vectors=np.zeros((0, embedder.dim), np.float32))
    (root / "faces").mkdir(parents=True, exist_ok=True)
    known = {e["image"]: i for i, e in enumerate(gallery.entries)}
    known_rejects = {r["image"]: r for r in gallery.rejected}
    keep = np.ones(len(gallery.entries), bool)
    new_entries, new_vectors, rejected = [], [], [r for r in gallery.rejected]
    update = GalleryUpdate()
    for item in inputs:
        image_key = str(Path(item.image).resolve())
        digest = file_digest(item.image) if Path(item.image).is_file() else None
        old = known.get(image_key)
        if old is not None and gallery.entries[old]["sha256"] == digest and gallery.entries[old]["actor"] == item.actor:
            update.reused += 1
            _tick(progress)
            continue
        previous = known_rejects.get(image_key)
        if previous is not None and previous.get("sha256") == digest and digest is not None:
            update.reused += 1
            _tick(progress)
            continue
        rejected = [r for r in rejected if r["image"] != image_key]
        if old is not None:
            keep[old] = False
            update.replaced += 1
        entry, vector, reason = _embed_photo(Path(item.image), item.actor, digest, embedder, detector, root)
        if reason:
            record = {"image": image_key, "actor": item.actor, "sha256": digest, "reason": reason}
            rejected.append(record)
            update.rejected.append(record)
            log.warning("gallery: %s (%s): %s", item.image, item.actor, reason)
        else:
            new_entries.append(entry)
            new_vectors.append(vector)
            update.added += 1
        _tick(progress)
    gallery.entries = [e for e, k in zip(gallery.entries, keep) if k] + new_entries
    gallery.vectors = np.concatenate([gallery.vectors[keep], *(v[None] for v in new_vectors)]).astype(np.float32) \
        if new_vectors else gallery.vectors[keep]
    gallery.rejected = rejected
    for actor in {i.actor for i in inputs}:
        gallery.actors.setdefault(actor, {})
    for actor, values in attrs.items():
        gallery.actors.setdefault(actor, {}).update(values)
    gallery.actors = dict(sorted(gallery.actors.items()))
    gallery.save()
    return gallery, update


def _tick(progress):
    if progress is not None:
        progress()


def _embed_photo(path: Path, actor: str, digest: str | None, embedder: Embedder, detector: DetectorChain,
                 root: Path) -> tuple[dict | None, np.ndarray | None, str | None]:
    try:
        image = read_image(path)
    except BadImage as exc:
        return None, None, exc.reason
    found = detector.detect(image)
    if not found:
        return None, None, "no_face"
    if len(found) > 1:
        return None, None, f"several_faces ({len(found)})"
    vectors, _ = embed(embedder, image, found)
    thumb_name = f"faces/{digest}.jpg"
    cv2.imwrite(str(root / thumb_name), cv2.cvtColor(thumbnail(image, found[0]), cv2.COLOR_RGB2BGR))
    entry = {"actor": actor, "image": str(path.resolve()), "sha256": digest,
             "box": [round(float(v), 1) for v in found[0].box], "face": thumb_name}
    return entry, vectors[0], None


# ---------------------------------------------------------------- realify


class Realifier(Protocol):
    """A webtoon face crop (RGB uint8, side ``size``) in, a realistic face of the same size out."""

    name: str
    size: int

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class OnnxRealifier:
    """An image-to-image ONNX model: NCHW RGB in [-1, 1] in and out (the exported toon2real student)."""

    def __init__(self, path: Path, size: int = 256):
        import onnxruntime as ort

        from factory.errors import ModelLoadError

        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(path, "an ONNX image-to-image model file")
        try:
            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(path, f"an ONNX model onnxruntime can open ({exc})") from None
        shape = self._session.get_inputs()[0].shape
        self.size = shape[2] if len(shape) == 4 and isinstance(shape[2], int) and shape[2] > 0 else size
        self._input = self._session.get_inputs()[0].name
        self.name = f"onnx:{path.name}@{file_digest(path)}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = image.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
        y = self._session.run(None, {self._input: x})[0][0]
        return ((y.transpose(1, 2, 0) + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)


class TeacherRealifier:
    """Any toon2real teacher of the factory, given as a YAML file holding its ``teacher:`` section."""

    def __init__(self, path: Path, size: int = 256):
        from pydantic import TypeAdapter, ValidationError

        from factory.errors import RecipeError
        from factory.kinds import TeacherConfig
        from factory.recipe import problems, read_yaml

        data = read_yaml(path)
        section = data.get("teacher", data)
        try:
            config = TypeAdapter(TeacherConfig).validate_python(section)
        except ValidationError as exc:
            raise RecipeError(str(path), [f"teacher.{p}" for p in problems(exc, section)]) from None
        if config.direction != "toon2real":
            raise UserError(f"{path}: field 'teacher.direction' must be toon2real to realify, not {config.direction!r}")
        self._teacher = config.build()
        self.size = size
        self.name = f"teacher:{config.kind}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from factory.sample import Sample

        sample = Sample.create("cast", 0, 0)
        sample.toon = image
        return next(iter(self._teacher([sample]))).real


def load_realifier(path: Path | str) -> Realifier:
    """``.onnx`` (the exported student, or any NCHW [-1, 1] image model), ``.yaml`` (a toon2real teacher
    section) or a student checkpoint."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--realify: {path} does not exist")
    if path.suffix.lower() == ".onnx":
        return OnnxRealifier(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return TeacherRealifier(path)
    return StudentRealifier(path)


class StudentRealifier:
    """The distilled toon2real student from its PyTorch checkpoint, through ``distill.infer.Student``."""

    def __init__(self, path: Path):
        from distill.infer import Student

        self._student = Student(path)
        self.size = self._student.size
        self.name = f"student:{Path(path).name}@{self._student.backend}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from distill.infer import to_input, to_uint8

        batch = to_input(image, self._student.multiple)[None]
        return to_uint8(self._student(batch)[0], *image.shape[:2])


class InverseWebtoonWarp:
    """Undo webtoon geometry (big eyes, small chin) with the warping profile's inverse target."""

    def __init__(self, profile: Path | None = None, strength: float = 1.0):
        from warping.profile import ProfileError, load_profile

        try:
            self.profile = load_profile(profile)
        except ProfileError as exc:
            raise UserError(f"--unwarp: {exc}") from None
        self.strength = strength

    def __call__(self, image: np.ndarray, face: facelib.Face) -> np.ndarray:
        from warping import landmarks as lm
        from warping.warp import build_warp

        if face.landmarks is None or face.scheme not in lm.SCHEMES:
            return image
        points = lm.to_canonical(face.landmarks, face.scheme)
        target = self.profile.target(points, "inverse", self.strength)
        return build_warp(points, target, image.shape[:2]).apply(image)


# ---------------------------------------------------------------- queries and ranking


@dataclass
class QueryFace:
    """One face of one character image, ready to rank."""

    box: list[float]
    crop: np.ndarray
    vector: np.ndarray
    realified: np.ndarray | None = None
    redetected: bool | None = None


def query_faces(image: np.ndarray, detector: DetectorChain, embedder: Embedder, *,
                realifier: Realifier | None = None, real_detector: DetectorChain | None = None,
                inverse_warp: Callable[[np.ndarray, facelib.Face], np.ndarray] | None = None,
                margin: float = 1.3, size: int = 256) -> list[QueryFace]:
    """Every face in ``image`` (largest first), realified and un-warped when asked, embedded.

    With a realifier or an inverse warp, the face's aligned crop is transformed and the face is
    found again in the result (falling back to the original landmarks moved into the crop).
    """
    out = []
    for face in detector.detect(image):
        if realifier is None and inverse_warp is None:
            vectors, _ = embed(embedder, image, [face])
            out.append(QueryFace(box=face.box.tolist(), crop=thumbnail(image, face, THUMB_SIZE, margin), vector=vectors[0]))
            continue
        side = realifier.size if realifier is not None else size
        matrix = facelib.alignment_matrix(face.keypoints5(), side, margin)
        toon, moved = facelib.crop(image, matrix, side), _moved(face, matrix)
        real = realifier(toon) if realifier is not None else toon
        if inverse_warp is not None:
            real = inverse_warp(real, moved)
        again = (real_detector or detector).detect(real)
        vectors, _ = embed(embedder, real, [again[0] if again else moved])
        out.append(QueryFace(box=face.box.tolist(), crop=toon, vector=vectors[0], realified=real, redetected=bool(again)))
    return out


def _moved(face: facelib.Face, matrix: np.ndarray) -> facelib.Face:
    """The face in crop coordinates (when the realified crop hides it from the detector)."""
    corners = facelib.transform_points(face.box.reshape(2, 2), matrix).reshape(-1)
    marks = None if face.landmarks is None else facelib.transform_points(face.landmarks, matrix)
    return facelib.Face(box=corners, score=face.score, landmarks=marks, scheme=face.scheme)


def actor_scores(gallery: Gallery, vectors: np.ndarray, actors: list[str]) -> np.ndarray:
    """(Q, A) cosine similarity of each query to each actor: the best over that actor's photos."""
    sims = np.asarray(vectors, np.float32) @ gallery.vectors.T
    owner = np.array([e["actor"] for e in gallery.entries])
    return np.stack([sims[:, owner == a].max(1) for a in actors], axis=1) if actors else np.zeros((len(vectors), 0))


def best_photo(gallery: Gallery, vector: np.ndarray, actor: str) -> dict:
    """The gallery entry of ``actor`` most similar to ``vector``."""
    rows = [i for i, e in enumerate(gallery.entries) if e["actor"] == actor]
    return gallery.entries[rows[int(np.argmax(gallery.vectors[rows] @ vector))]]


def aggregate(scores: np.ndarray, actors: list[str], top: int) -> list[dict]:
    """Top-``top`` votes per image, summed; ties broken by mean similarity over all images, then name."""
    votes = np.zeros(len(actors), int)
    for row in scores:
        votes[np.argsort(-row, kind="stable")[:top]] += 1
    mean = scores.mean(0)
    order = sorted(range(len(actors)), key=lambda a: (-votes[a], -mean[a], actors[a]))
    return [{"actor": actors[a], "votes": int(votes[a]), "mean_score": round(float(mean[a]), 4),
             "best_score": round(float(scores[:, a].max()), 4)} for a in order]


def parse_where(items: Iterable[str]) -> dict[str, str]:
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--where: {item!r} is not key=value (e.g. gender=female)")
        where[key.strip()] = value.strip()
    return where


@dataclass
class CastImage:
    path: str
    status: str
    faces_found: int = 0
    query: QueryFace | None = None
    ranking: list[dict] = field(default_factory=list)


@dataclass
class CastResult:
    images: list[CastImage]
    overall: list[dict]
    actors: list[str]
    settings: dict

    def to_json(self) -> dict:
        return {
            "settings": self.settings,
            "overall": self.overall,
            "images": [{"image": i.path, "status": i.status, "faces_found": i.faces_found,
                        "box": None if i.query is None else [round(v, 1) for v in i.query.box],
                        "realified_face_redetected": None if i.query is None else i.query.redetected,
                        "ranking": i.ranking} for i in self.images],
        }


def cast(gallery: Gallery, images: list[Path], embedder: Embedder, detector: DetectorChain, *, top: int = 5,
         where: dict[str, str] | None = None, realifier: Realifier | None = None,
         real_detector: DetectorChain | None = None, inverse_warp: Callable[[np.ndarray, facelib.Face], np.ndarray] | None = None,
         progress: Callable[[], None] | None = None) -> CastResult:
    """Rank the gallery's actors for one character shown in ``images`` (the largest face of each)."""
    identity = {"name": embedder.name, "version": embedder.version, "dim": embedder.dim}
    if gallery.embedder != identity:
        raise UserError(f"{gallery.root / GALLERY_JSON}: field 'embedder' is {gallery.embedder}, "
                        f"but ranking uses {identity}")
    if not gallery.entries:
        raise UserError(f"{gallery.root / GALLERY_JSON}: the gallery has no embedded faces")
    actors = gallery.actor_names(where)
    if not actors:
        raise UserError(f"{gallery.root / GALLERY_JSON}: no actor matches --where {where} "
                        f"(attributes: {sorted({k for a in gallery.actors.values() for k in a})})")
    results, rows = [], []
    for path in images:
        item = CastImage(path=str(path), status="ok")
        try:
            image = read_image(path)
        except BadImage as exc:
            item.status = exc.reason
        else:
            found = query_faces(image, detector, embedder, realifier=realifier, real_detector=real_detector,
                                inverse_warp=inverse_warp)
            item.faces_found = len(found)
            if not found:
                item.status = "no_face"
            else:
                item.query = found[0]
                row = actor_scores(gallery, found[0].vector[None], actors)[0]
                rows.append(row)
                order = np.argsort(-row, kind="stable")[:top]
                item.ranking = [{"actor": actors[a], "score": round(float(row[a]), 4),
                                 "photo": best_photo(gallery, found[0].vector, actors[a])["face"]} for a in order]
        if item.status != "ok":
            log.warning("cast: %s: %s", path, item.status)
        results.append(item)
        _tick(progress)
    if not rows:
        reasons = ", ".join(f"{Path(i.path).name}: {i.status}" for i in results)
        raise UserError(f"none of the {len(images)} character image(s) has a usable face ({reasons})")
    overall = aggregate(np.stack(rows), actors, top)
    settings = {"gallery": str(gallery.root), "embedder": identity, "detector": detector.spec, "top": top,
                "where": where or {}, "realify": None if realifier is None else realifier.name,
                "inverse_warp": inverse_warp is not None, "same_person_threshold": round(DLIB_SAME_PERSON, 4)
                if identity["name"].startswith("dlib") else None}
    return CastResult(images=results, overall=overall, actors=actors, settings=settings)
