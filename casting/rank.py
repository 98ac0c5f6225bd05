"""Ranking actors for a character: detect, (realify, unwarp), embed, score against the gallery, vote.

Every actor is scored per face by the mean cosine similarity over the actor's gallery photos. Raw
similarities of drawn faces are high against everyone, so each score is also calibrated against
the query's own impostors: an actor's z-score is its similarity minus the mean of the query's
similarities to every *other* actor, over their standard deviation. A gallery with drawings of its photos
ranks by the mean of the similarities to an actor's photos and to their drawings. Across faces, votes are
rank-weighted (Borda: the first of ``top`` actors gets ``top`` points, the last 1); ties fall to the
mean z-score. The winner's mean z-score is the character's confidence. A gallery with drawings of its
photos (``casting.calibration``) gives the verdict by the winner's mean likeness, "no clear match" below
``CLEAR_MATCH_LIKENESS``, for any number of actors; an older gallery by the z-score, "no clear match" below
``CLEAR_MATCH_Z``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casting.calibration import CLEAR_MATCH_LIKENESS, SHRINK_MEASURES, DrawnLevels
from casting.gallery import GALLERY_JSON, THUMB_SIZE, Gallery, identity, thumbnail
from casting.realify import InverseWebtoonWarp, Realifier
from factory import faces as facelib
from factory.errors import UserError
from factory.faces import DetectorChain
from factory.images import BadImage, read_image
from factory.models.embedding import Embedder, embed

log = logging.getLogger(__name__)

# The best actor's z-score a clear match needs. Chosen on benchmarks/cast_accuracy.py's calibration
# table (dlib, gray, 10 jitters, mean per actor; 18 actors): at 2.0 no real-photo query, 3% of CartoonGAN
# and 3-8% of webtoon-teacher queries abstain, 60% of the 30 webtoon characters with no actor do. The best
# z of more actors is higher by chance alone (best of n random actors, median: 2.15 at 18, 2.37 at 46,
# 2.57 at 100), so a much larger gallery wants its threshold chosen again (``--min-z``).
CLEAR_MATCH_Z = 2.0
MIN_ACTORS_TO_CALIBRATE = 3
# The spread of the other actors' similarities is the z-score's unit: from a handful of actors it is a
# guess (a 5-actor gallery gave a drawn stranger z 12.2 for an actress), so fewer actors get no verdict;
# their z-scores still order the ranking.
MIN_ACTORS_FOR_VERDICT = 8


@dataclass
class QueryFace:
    """One face of one character image, ready to rank, with what was done to it."""

    box: list[float]
    crop: np.ndarray
    vector: np.ndarray
    detected_by: str | None = None
    realified: np.ndarray | None = None
    realified_by: str | None = None
    redetected: bool | None = None
    unwarp_fitted: float | None = None
    unwarp_undone: float | None = None

    def steps(self) -> dict:
        return {"detected_by": self.detected_by,
                "unwarp": None if self.unwarp_undone is None else {
                    "fitted_strength": None if self.unwarp_fitted is None else round(self.unwarp_fitted, 3),
                    "undone": round(self.unwarp_undone, 3)},
                "realified_by": self.realified_by, "transformed_face_redetected": self.redetected}

    def transform_label(self) -> str | None:
        """What the second picture of a report row shows ("realified by M, unwarped by s"), if any."""
        parts = []
        if self.realified_by:
            parts.append(f"realified by {self.realified_by}")
        if self.unwarp_undone:
            parts.append(f"unwarped by {self.unwarp_undone:.2f}")
        return ", ".join(parts) or None

    def transform_lines(self) -> tuple[str, str]:
        """The same, in two short lines for a report tile ("realified, unwarp 0.86" / "by MODEL")."""
        done = ["realified"] * bool(self.realified_by) + [f"unwarp {self.unwarp_undone:.2f}"] * bool(self.unwarp_undone)
        return ", ".join(done) or "not transformed", f"by {self.realified_by}" if self.realified_by else ""


def query_faces(image: np.ndarray, detector: DetectorChain, embedder: Embedder, *,
                realifier: Realifier | None = None, real_detector: DetectorChain | None = None,
                inverse_warp: InverseWebtoonWarp | None = None, margin: float = 1.3, size: int = 256) -> list[QueryFace]:
    """Every face in ``image`` (largest first), realified and un-warped when asked, embedded.

    With a realifier or an un-warp of non-zero strength, the face's aligned crop is transformed and
    the face is found again in the result (falling back to the original landmarks moved into the crop).
    """
    found_by, found = detector.detect_named(image)
    out = []
    for face in found:
        fitted, undo = inverse_warp.strength_for(face) if inverse_warp is not None else (None, None)
        done = dict(box=face.box.tolist(), detected_by=found_by, unwarp_fitted=fitted, unwarp_undone=undo)
        if realifier is None and not undo:
            vectors, _ = embed(embedder, image, [face])
            out.append(QueryFace(crop=thumbnail(image, face, THUMB_SIZE, margin), vector=vectors[0], **done))
            continue
        side = realifier.size if realifier is not None else size
        matrix = facelib.alignment_matrix(face.keypoints5(), side, margin)
        toon, moved = facelib.crop(image, matrix, side), _moved(face, matrix)
        real = realifier(toon) if realifier is not None else toon
        if undo:
            real = inverse_warp(real, moved, undo)
        again = (real_detector or detector).detect(real)
        vectors, _ = embed(embedder, real, [again[0] if again else moved])
        out.append(QueryFace(crop=toon, vector=vectors[0], realified=real, redetected=bool(again),
                             realified_by=None if realifier is None else realifier.name, **done))
    return out


def _moved(face: facelib.Face, matrix: np.ndarray) -> facelib.Face:
    """The face in crop coordinates (when the realified crop hides it from the detector)."""
    corners = facelib.transform_points(face.box.reshape(2, 2), matrix).reshape(-1)
    marks = None if face.landmarks is None else facelib.transform_points(face.landmarks, matrix)
    return facelib.Face(box=corners, score=face.score, landmarks=marks, scheme=face.scheme)


def per_actor(sims: np.ndarray, owners: np.ndarray, actors: list[str], how: str = "mean") -> np.ndarray:
    """(Q, A) from (Q, P) similarities to photos owned by ``owners``: each actor's ``mean`` (casting:
    one odd photo weighs little) or ``best`` (naming a face) over its photos; NaN photos are skipped."""
    if not actors:
        return np.zeros((len(sims), 0))
    pool = np.nanmean if how == "mean" else np.nanmax
    return np.stack([pool(sims[:, owners == a], axis=1) for a in actors], axis=1)


def actor_scores(gallery: Gallery, vectors: np.ndarray, actors: list[str], how: str = "mean") -> np.ndarray:
    """(Q, A) cosine similarity of each query to each actor over the actor's photos (``per_actor``)."""
    sims = np.asarray(vectors, np.float32) @ gallery.vectors.T
    return per_actor(sims, np.array([e["actor"] for e in gallery.entries]), actors, how)


def drawn_scores(gallery: Gallery, vectors: np.ndarray, actors: list[str]) -> np.ndarray:
    """(Q, A) mean cosine similarity of each query to the drawings of each actor's photos (NaN: the gallery has no
    drawing of the actor)."""
    sims = np.asarray(vectors, np.float32) @ gallery.drawn.T
    owners = np.array([e["actor"] for e in gallery.entries])
    drawn = ~np.isnan(gallery.drawn).any(axis=1)
    return np.stack([sims[:, drawn & (owners == a)].mean(axis=1) if (drawn & (owners == a)).any()
                     else np.full(len(sims), np.nan) for a in actors], axis=1)


def ranking_scores(photo: np.ndarray, drawn: np.ndarray | None) -> np.ndarray:
    """What ranks the actors: the similarity to their photos, averaged with the similarity to their drawings
    where the gallery has them (a drawn query is nearer the drawings of its actor: rank-1 of `webtoon` drawings
    90.0% -> 95.0% on 18 actors, benchmarks/cast_accuracy.py)."""
    return photo if drawn is None else (photo + np.where(np.isnan(drawn), photo, drawn)) / 2


def face_scores(gallery: Gallery, levels: DrawnLevels | None, vector: np.ndarray,
                actors: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[float] | None]:
    """One face against ``actors``: (ranking scores, similarity to their photos, to their drawings (None: no
    ``levels`` or no drawings in the gallery), likeness to each (None: no ``levels``)); ``aggregate`` votes over a
    character's faces and gives each actor the mean of its likenesses, which the verdict reads."""
    photo = actor_scores(gallery, vector[None], actors)[0]
    drawn = None if levels is None or gallery.drawn is None else drawn_scores(gallery, vector[None], actors)[0]
    likeness = None if levels is None else [levels.likeness(a, photo[j], None if drawn is None else drawn[j])
                                            for j, a in enumerate(actors)]
    return ranking_scores(photo, drawn), photo, drawn, likeness


def calibrate(scores: np.ndarray) -> np.ndarray:
    """(Q, A) z-scores: each actor's similarity against the same query's similarities to all other actors.

    NaN with fewer than ``MIN_ACTORS_TO_CALIBRATE`` actors (no impostor spread to measure).
    """
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    n = scores.shape[1]
    if n < MIN_ACTORS_TO_CALIBRATE:
        return np.full(scores.shape, np.nan)
    total, squares = scores.sum(1, keepdims=True), (scores**2).sum(1, keepdims=True)
    others_mean = (total - scores) / (n - 1)
    others_var = np.maximum((squares - scores**2) / (n - 1) - others_mean**2, 0.0)
    return (scores - others_mean) / np.maximum(np.sqrt(others_var), 1e-6)


def margin_of(row: np.ndarray) -> float:
    """Similarity of the first actor minus the second's."""
    top2 = np.sort(row)[::-1][:2]
    return float(top2[0] - top2[1]) if len(top2) == 2 else float("nan")


def effective_top(top: int, actors: int) -> int:
    """Votes per face: never every actor (a vote for all says nothing), at least one."""
    return max(1, min(top, actors - 1))


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
        scores = actor_scores(gallery, vector[None], actors, how="best")[0]
        order = np.argsort(-scores)
        best = scores[order[0]]
        clear = len(actors) == 1 or best - scores[order[1]] >= margin
        return actors[order[0]] if best >= min_similarity and clear else None

    return actor_of


def best_photo(gallery: Gallery, vector: np.ndarray, actor: str) -> dict:
    """The gallery entry of ``actor`` most similar to ``vector``."""
    rows = [i for i, e in enumerate(gallery.entries) if e["actor"] == actor]
    return gallery.entries[rows[int(np.argmax(gallery.vectors[rows] @ vector))]]


def aggregate(scores: np.ndarray, actors: list[str], top: int, likeness: np.ndarray | None = None) -> list[dict]:
    """Borda votes over faces: in each face's ranking the first of ``top`` actors gets ``top`` points,
    the next ``top - 1``, ...; ties broken by mean z-score, then mean similarity, then name. With
    ``likeness`` (faces, actors), each actor's mean likeness too."""
    top = effective_top(top, len(actors))
    points, firsts = np.zeros(len(actors), int), np.zeros(len(actors), int)
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top]
        points[order] += np.arange(top, 0, -1)[:len(order)]
        firsts[order[0]] += 1
    z = calibrate(scores)
    mean_z = np.nan_to_num(z.mean(0), nan=0.0)
    mean = scores.mean(0)
    order = sorted(range(len(actors)), key=lambda a: (-points[a], -mean_z[a], -mean[a], actors[a]))
    return [{"actor": actors[a], "points": int(points[a]), "firsts": int(firsts[a]),
             "mean_z": None if np.isnan(z[:, a]).any() else round(float(z[:, a].mean()), 3),
             "mean_score": round(float(mean[a]), 4), "best_score": round(float(scores[:, a].max()), 4),
             "mean_likeness": None if likeness is None else round(float(likeness[:, a].mean()), 3)} for a in order]


def verdict(confidence: float | None, actors: int, threshold: float = CLEAR_MATCH_Z, likeness: float | None = None,
            min_likeness: float = CLEAR_MATCH_LIKENESS) -> str:
    """By ``likeness`` when the gallery has drawings (any number of actors), else by the z-score."""
    if likeness is not None:
        return "match" if likeness >= min_likeness else "no clear match"
    if confidence is None or actors < MIN_ACTORS_FOR_VERDICT:
        return f"uncalibrated (fewer than {MIN_ACTORS_FOR_VERDICT} actors)"
    return "match" if confidence >= threshold else "no clear match"


def parse_where(items: Iterable[str]) -> dict[str, str]:
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--where: {item!r} is not key=value (e.g. gender=female)")
        where[key.strip()] = value.strip()
    return where


def parse_face_choice(choice: str | int) -> str | int:
    """``largest``, ``all``, or N: the N-th face counted from the left of the picture (1 = leftmost)."""
    text = str(choice).strip().lower()
    if text in ("largest", "all"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UserError(f"--face: {choice!r} is not largest, all, or a face number from the left (1, 2, ...)")


def choose_faces(found: list[QueryFace], choice: str | int) -> list[tuple[str, QueryFace]]:
    """The faces to rank with how each was chosen (found is largest first)."""
    if choice == "largest":
        return [(f"largest of {len(found)}", found[0])]
    left_to_right = sorted(range(len(found)), key=lambda i: found[i].box[0])
    if choice == "all":
        return [(f"face {n + 1} from the left of {len(found)}", found[i]) for n, i in enumerate(left_to_right)]
    if choice > len(found):
        return []
    return [(f"face {choice} from the left of {len(found)}", found[left_to_right[choice - 1]])]


@dataclass
class CastImage:
    """One ranked face of one image (or an image that gave none, with its reason)."""

    path: str
    status: str
    faces_found: int = 0
    chosen: str | None = None
    query: QueryFace | None = None
    ranking: list[dict] = field(default_factory=list)
    confidence: float | None = None
    margin: float | None = None
    verdict: str | None = None
    likeness: float | None = None

    def to_json(self) -> dict:
        return {"image": self.path, "status": self.status, "faces_found": self.faces_found, "face": self.chosen,
                "box": None if self.query is None else [round(v, 1) for v in self.query.box],
                **({} if self.query is None else self.query.steps()),
                "confidence_z": None if self.confidence is None else round(self.confidence, 3),
                "likeness": None if self.likeness is None else round(self.likeness, 3),
                "margin": None if self.margin is None else round(self.margin, 4),
                "verdict": self.verdict, "ranking": self.ranking}


@dataclass
class CastResult:
    images: list[CastImage]
    overall: list[dict]
    actors: list[str]
    settings: dict

    @property
    def confidence(self) -> float | None:
        return self.overall[0]["mean_z"] if self.overall else None

    @property
    def likeness(self) -> float | None:
        return self.overall[0].get("mean_likeness") if self.overall else None

    @property
    def verdict(self) -> str:
        calibration = self.settings["calibration"]
        return verdict(self.confidence, len(self.actors), calibration["clear_match_z"], self.likeness,
                       calibration.get("clear_match_likeness", CLEAR_MATCH_LIKENESS))

    def to_json(self) -> dict:
        return {"settings": self.settings, "verdict": self.verdict, "confidence_z": self.confidence,
                "likeness": self.likeness,
                "overall": self.overall, "images": [i.to_json() for i in self.images]}


def cast(gallery: Gallery, images: list[Path], embedder: Embedder, detector: DetectorChain, *, top: int = 5,
         where: dict[str, str] | None = None, realifier: Realifier | None = None,
         real_detector: DetectorChain | None = None, inverse_warp: InverseWebtoonWarp | None = None,
         face: str | int = "largest", min_z: float = CLEAR_MATCH_Z, min_likeness: float = CLEAR_MATCH_LIKENESS,
         progress: Callable[[], None] | None = None) -> CastResult:
    """Rank the gallery's actors for one character shown in ``images`` (the face(s) ``face`` picks of each)."""
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
    choice = parse_face_choice(face)
    shown = effective_top(top, len(actors))
    levels = gallery.drawn_levels()
    results, rows, likenesses = [], [], []
    for path in images:
        try:
            image = read_image(path)
        except BadImage as exc:
            log.warning("cast: %s: %s", path, exc.reason)
            results.append(CastImage(path=str(path), status=exc.reason))
        else:
            found = query_faces(image, detector, embedder, realifier=realifier, real_detector=real_detector,
                                inverse_warp=inverse_warp)
            chosen = choose_faces(found, choice) if found else []
            if not chosen:
                status = "no_face" if not found else f"no face {choice} (found {len(found)})"
                log.warning("cast: %s: %s", path, status)
                results.append(CastImage(path=str(path), status=status, faces_found=len(found)))
            for how, query in chosen:
                row, photo, drawn, likeness_row = face_scores(gallery, levels, query.vector, actors)
                z = calibrate(row)[0]
                rows.append(row)
                if likeness_row is not None:
                    likenesses.append(likeness_row)
                order = np.argsort(-row, kind="stable")[:shown]
                ranking = [{"actor": actors[a], "score": round(float(row[a]), 4),
                            **({} if drawn is None else {"photo_score": round(float(photo[a]), 4),
                                                         "drawn_score": None if np.isnan(drawn[a]) else round(float(drawn[a]), 4)}),
                            "z": None if np.isnan(z[a]) else round(float(z[a]), 3),
                            "photo": best_photo(gallery, query.vector, actors[a])["face"]} for a in order]
                confidence = None if np.isnan(z[order[0]]) else float(z[order[0]])
                likeness = None if likeness_row is None else likeness_row[order[0]]
                results.append(CastImage(path=str(path), status="ok", faces_found=len(found), chosen=how, query=query,
                                         ranking=ranking, confidence=confidence, likeness=likeness,
                                         verdict=verdict(confidence, len(actors), min_z, likeness, min_likeness),
                                         margin=margin_of(row) if len(actors) > 1 else None))
        if progress is not None:
            progress()
    if not rows:
        reasons = ", ".join(f"{Path(i.path).name}: {i.status}" for i in results)
        raise UserError(f"none of the {len(images)} character image(s) has a usable face ({reasons})")
    overall = aggregate(np.stack(rows), actors, top, np.array(likenesses) if likenesses else None)
    settings = {"gallery": str(gallery.root), "embedder": model, "detector": detector.spec,
                "top": effective_top(top, len(actors)), "top_asked": top, "face": str(choice),
                "where": where or {}, "realify": None if realifier is None else realifier.name,
                "unwarp": None if inverse_warp is None else inverse_warp.label,
                "calibration": {"method": "z-score of the actor's similarity against the query's similarities "
                                          "to all other actors", "clear_match_z": min_z} if levels is None else
                {"method": "likeness: the similarity placed between the gallery's drawn-impostor level (0) and the "
                           "actor's drawn-genuine level (1; pulled toward the pooled level as if it had shrink_measures "
                           "more measures there), to the actor's photos, or the mean with the same to the "
                           "actor's drawings when higher; actors ranked by the mean similarity to photos and drawings",
                 "clear_match_z": min_z, "clear_match_likeness": min_likeness, "shrink_measures": SHRINK_MEASURES,
                 "impostor_level": round(levels.impostor, 4),
                 "drawn_impostor_level": None if levels.drawn_impostor is None else round(levels.drawn_impostor, 4)}}
    return CastResult(images=results, overall=overall, actors=actors, settings=settings)
