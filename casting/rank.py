"""Ranking actors for a character: detect, (realify, unwarp), embed, score against the gallery, vote.

Every actor is scored per image by the best cosine similarity over the actor's gallery photos.
Across images, each image's top-k actors get one vote; actors are ranked by votes, ties broken by
the mean similarity (the seeds' "most often in the top 5").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casting.gallery import GALLERY_JSON, THUMB_SIZE, Gallery, identity, thumbnail
from casting.realify import Realifier
from factory import faces as facelib
from factory.errors import UserError
from factory.faces import DetectorChain
from factory.images import BadImage, read_image
from factory.models.embedding import Embedder, embed

log = logging.getLogger(__name__)

# dlib's own same-person rule (distance 0.6) as a cosine similarity of unit vectors
DLIB_SAME_PERSON = 1 - 0.6**2 / 2


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


# Naming a face in a video is open-set (most people are in no gallery): dlib distance 0.42, stricter
# than the same-person rule. On the Hamilton clip a singer in no gallery comes at 0.43 of an actor.
RECOGNISE_SIMILARITY = 1 - 0.42**2 / 2


def recogniser(gallery: Gallery, min_similarity: float = RECOGNISE_SIMILARITY,
               margin: float = 0.02) -> Callable[[np.ndarray], str | None]:
    """A function naming the gallery actor a face embedding belongs to (the most similar actor, by
    their best photo), or None when no actor reaches ``min_similarity`` or the runner-up is within ``margin``."""
    actors = gallery.actor_names()

    def actor_of(vector: np.ndarray) -> str | None:
        if not actors:
            return None
        scores = actor_scores(gallery, vector[None], actors)[0]
        order = np.argsort(-scores)
        best = scores[order[0]]
        clear = len(actors) == 1 or best - scores[order[1]] >= margin
        return actors[order[0]] if best >= min_similarity and clear else None

    return actor_of


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
    model = identity(embedder)
    if gallery.embedder != model:
        raise UserError(f"{gallery.root / GALLERY_JSON}: field 'embedder' is {gallery.embedder}, "
                        f"but ranking uses {model}")
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
        if progress is not None:
            progress()
    if not rows:
        reasons = ", ".join(f"{Path(i.path).name}: {i.status}" for i in results)
        raise UserError(f"none of the {len(images)} character image(s) has a usable face ({reasons})")
    overall = aggregate(np.stack(rows), actors, top)
    settings = {"gallery": str(gallery.root), "embedder": model, "detector": detector.spec, "top": top,
                "where": where or {}, "realify": None if realifier is None else realifier.name,
                "inverse_warp": inverse_warp is not None, "same_person_threshold": round(DLIB_SAME_PERSON, 4)
                if model["name"].startswith("dlib") else None}
    return CastResult(images=results, overall=overall, actors=actors, settings=settings)
