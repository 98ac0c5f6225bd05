"""The two curation flows: comic pages -> character face sets, actor photos -> clean actor folders."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import Field, field_validator

from curate import actors as actorlib
from curate.features import identity_features
from curate.filters import Thresholds, duplicate_of, phash, reject_reason
from curate.ingest import ChainDetector, crop_square
from curate.review import write_sheet
from curate.select import choose, cluster, similarity_to
from curate.store import Workspace, apply_decision
from curate.superres import SuperResolver, resize
from factory.config import Strict
from factory.errors import UserError
from factory.faces import Face
from factory.files import sha256_file
from factory.images import IMAGE_SUFFIXES, BadImage, actor_folders, read_image

log = logging.getLogger(__name__)
FILTERED = "filtered"
MAX_MARGIN = 4.0  # a crop is margin x the face box, white where it leaves the page: 1000 asked for terabytes
MAX_SIDE = 4096


class CurateOptions(Strict):
    """The numbers and modes `curate comics` and `curate actors` take, checked (each named as its option)
    before a page is read or a file written."""

    margin: float = Field(1.5, le=MAX_MARGIN, description="crop side = margin x the face box")
    size: int = Field(256, ge=32, le=MAX_SIDE, description="crop side in pixels")
    threshold: float | None = Field(0.85, ge=-1.0, le=1.0, description="cosine a face needs to its reference")
    cluster_distance: float = Field(0.12, ge=0.0, le=2.0, description="cosine distance that joins two faces")
    radius: float = Field(0.4, ge=0.0, description="embedding distance within which a face is the actor")
    tracking: Literal["offline", "auto", "server", "none"] = "offline"

    @field_validator("margin")
    @classmethod
    def _margin(cls, margin: float) -> float:
        if margin < 1.0:
            raise ValueError(f"{margin} < 1 would cut the face")
        return margin


@dataclass
class CropOptions:
    margin: float = 1.5
    side: int = 256
    limits: Thresholds = field(default_factory=Thresholds)
    superres: SuperResolver | None = None

    def finish(self, crop: np.ndarray) -> tuple[np.ndarray, bool]:
        """The crop at ``side`` px, super-resolved when it is smaller and a model is given."""
        if self.superres is not None and crop.shape[0] < self.side:
            return self.superres.to_side(crop, self.side), True
        return resize(crop, self.side), False


@dataclass
class Summary:
    new_sources: int = 0
    reused_sources: int = 0
    bad_sources: Counter = field(default_factory=Counter)
    new_faces: int = 0
    rejected: Counter = field(default_factory=Counter)
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    sheets: list[str] = field(default_factory=list)
    unclustered: int = 0


def _source(ws: Workspace, path: Path, summary: Summary) -> tuple[str, np.ndarray | None]:
    """(sha, image) of a new source; image None when already curated or unreadable."""
    sha = sha256_file(path)
    if sha in ws.manifest["sources"]:
        summary.reused_sources += 1
        return sha, None
    try:
        image = read_image(path)
    except BadImage as exc:
        ws.manifest["sources"][sha] = {"file": str(path), "faces": [], "rejected": exc.reason}
        ws.record(sha)
        summary.bad_sources[exc.reason] += 1
        return sha, None
    summary.new_sources += 1
    return sha, image


def ingest_pages(ws: Workspace, files: list[Path], detector: ChainDetector, options: CropOptions, summary: Summary,
                 progress: Callable[[], None] | None = None) -> None:
    """Detect, crop, super-resolve, filter and de-duplicate the faces of new pages (each page appended to the journal)."""
    pool = [fid for fid, f in ws.manifest["faces"].items() if f.get("kind") == "drawn" and not f["reason"]]
    hashes = [np.frombuffer(bytes.fromhex(ws.manifest["faces"][f]["phash"]), np.uint8) for f in pool]
    vectors = [ws.features[f] for f in pool]
    for path in files:
        sha, image = _source(ws, path, summary)
        if image is not None:
            ids = []
            for index, det in enumerate(detector.detect(image)):
                face_id = f"{sha[:12]}-{index:03d}"
                raw = crop_square(image, det.box, options.margin)
                reason, scores = reject_reason(det, raw, options.limits, options.margin)
                crop, upscaled = options.finish(raw)
                vector, hash_ = identity_features(crop, options.margin), phash(crop)
                if reason is None:
                    twin = duplicate_of(crop, hash_, vector, hashes, np.array(vectors).reshape(len(vectors), vector.size),
                                        lambda i: _other_page_crop(ws, pool[i], sha), options.limits, options.margin)
                    reason = None if twin is None else f"duplicate of {pool[twin]}"
                if reason is None:
                    pool.append(face_id), hashes.append(hash_), vectors.append(vector)
                else:
                    summary.rejected[reason.split(" ")[0]] += 1
                ws.features[face_id] = vector
                ws.manifest["faces"][face_id] = {
                    "kind": "drawn", "file": str(path), "sha256": sha, "slice": det.slice,
                    "box": [round(float(v), 1) for v in det.box], "detector": det.detector, "agreed": det.agreed,
                    "score": round(det.score, 3), "crop": ws.write_crop(face_id, crop), "superres": upscaled,
                    "phash": hash_.tobytes().hex(), "scores": scores, "reason": reason or "",
                }
                ids.append(face_id)
            summary.new_faces += len(ids)
            ws.manifest["sources"][sha] = {"file": str(path), "faces": ids}
            ws.record(sha)
        if progress:
            progress()


def _other_page_crop(ws: Workspace, face_id: str, sha: str) -> np.ndarray | None:
    face = ws.manifest["faces"][face_id]
    return None if face["sha256"] == sha else read_image(ws.root / face["crop"])


def reference_features(paths: list[Path], detector: ChainDetector, options: CropOptions) -> np.ndarray:
    """A vector per reference image: its largest face, or the whole image when none is found (a crop)."""
    vectors = []
    for path in paths:
        try:
            image = read_image(path)
        except BadImage as exc:
            raise UserError(f"--reference {path}: {exc}") from None
        found = detector.detect(image)
        if found:
            crop = crop_square(image, max(found, key=lambda d: d.size).box, options.margin)
        else:
            side = min(image.shape[:2])
            crop = image[:side, (image.shape[1] - side) // 2:][:, :side]
        vectors.append(identity_features(options.finish(crop)[0], options.margin))
    return np.stack(vectors)


def _drawn(ws: Workspace) -> tuple[list[str], list[str]]:
    faces = [(fid, f) for fid, f in ws.manifest["faces"].items() if f.get("kind") == "drawn"]
    return [fid for fid, f in faces if not f["reason"]], [fid for fid, f in faces if f["reason"]]


def select_characters(ws: Workspace, references: dict[str, np.ndarray], top: int | None, threshold: float | None,
                      summary: Summary) -> None:
    """Rank every face against each character's references; earlier decisions and overrides stand."""
    overrides = ws.overrides()
    pool, filtered = _drawn(ws)
    ids = pool + filtered
    features = np.stack([ws.features[f] for f in ids]) if ids else np.zeros((0, 1), np.float32)
    for name, refs in references.items():
        group = f"characters/{name}"
        ws.group(group, "character")["references"] = int(len(refs))
        scores = similarity_to(refs, features)
        keep = choose(np.where(np.arange(len(ids)) < len(pool), scores, -np.inf), top, threshold)
        for i, face_id in enumerate(ids):
            reason = ws.manifest["faces"][face_id]["reason"] or ("selected" if keep[i] else "below_selection")
            apply_decision(ws, group, face_id, {"keep": bool(keep[i]), "reason": reason,
                                                "score": round(float(scores[i]), 4), "by": "auto"}, overrides)
    _finish_groups(ws, summary, [f"characters/{n}" for n in references])


def cluster_characters(ws: Workspace, max_distance: float, min_size: int, summary: Summary) -> None:
    """No references: faces already in a cluster stay there; new faces join the nearest cluster
    (mean cosine distance within ``max_distance``) or form new clusters among themselves."""
    overrides = ws.overrides()
    pool, _ = _drawn(ws)
    clusters = {g: [f for f, d in info["decisions"].items() if d["keep"]]
                for g, info in ws.manifest["groups"].items() if info["kind"] == "cluster"}
    placed = {f for members in clusters.values() for f in members}
    fresh = [f for f in pool if f not in placed]
    leftovers = []
    for face_id in fresh:
        vector = ws.features[face_id]
        distances = {g: float(np.mean([1 - ws.features[m] @ vector for m in members])) for g, members in clusters.items() if members}
        best = min(distances, key=distances.get, default=None)
        if best is not None and distances[best] <= max_distance:
            ws.group(best, "cluster")
            apply_decision(ws, best, face_id, {"keep": True, "reason": "nearest_cluster",
                                               "score": round(1 - distances[best], 4), "by": "auto"}, overrides)
        else:
            leftovers.append(face_id)
    labels = cluster(np.stack([ws.features[f] for f in leftovers]), max_distance, min_size) if leftovers else []
    start = len(clusters)
    summary.unclustered = int(np.sum(np.asarray(labels) < 0))
    for face_id, label in zip(leftovers, labels):
        if label >= 0:
            group = f"characters/cluster_{start + int(label):02d}"
            ws.group(group, "cluster")
            apply_decision(ws, group, face_id, {"keep": True, "reason": "clustered", "score": None, "by": "auto"}, overrides)
    _finish_groups(ws, summary, [g for g, i in ws.manifest["groups"].items() if i["kind"] == "cluster"])


def _finish_groups(ws: Workspace, summary: Summary, groups: list[str]) -> None:
    _, filtered = _drawn(ws)
    if filtered:
        ws.group(FILTERED, "filter")["decisions"] = {
            f: {"keep": False, "reason": ws.manifest["faces"][f]["reason"], "score": None, "by": "auto"} for f in filtered}
        groups = [*groups, FILTERED]
    _sheets(ws, summary, groups)


def _sheets(ws: Workspace, summary: Summary, groups: list[str]) -> None:
    for group in groups:
        decisions = ws.manifest["groups"][group]["decisions"]
        kept = sum(d["keep"] for d in decisions.values())
        summary.groups[group] = (kept, len(decisions) - kept)
        summary.sheets.append(write_sheet(ws, group))
    ws.save()


def curate_actors(ws: Workspace, folder: Path, detector, embedder, options: CropOptions, summary: Summary,
                  radius: float = 0.4, progress: Callable[[], None] | None = None, nested: bool = False) -> None:
    """Per actor (see :func:`~factory.images.actor_folders`): embed every face of every new photo, then
    judge all photos together."""
    if not folder.is_dir():
        raise UserError(f"{folder}: expected a folder with one sub-folder per actor")
    overrides = ws.overrides()
    groups = []
    for name, files in actor_folders(folder, nested).items():
        group = f"actors/{name}"
        ws.group(group, "actor")
        photos = []
        for path in (p for p in files if p.suffix.lower() in IMAGE_SUFFIXES):
            sha, image = _source(ws, path, summary)
            photo_id = sha[:16]
            if image is not None:
                _embed_photo(ws, photo_id, path, sha, image, detector, embedder, options)
                summary.new_faces += 1
            if photo_id in ws.manifest["faces"]:
                entry = ws.manifest["faces"][photo_id]
                faces = [Face(np.array(b), 1.0) for b in entry["boxes"]]
                photos.append(actorlib.PhotoFaces(photo_id, faces, ws.features.get(photo_id, np.zeros((0, 128)))))
            if progress:
                progress()
        for verdict in actorlib.judge(photos, radius=radius, min_face=options.limits.min_face):
            entry = ws.manifest["faces"][verdict.name]
            if verdict.face is not None:
                _actor_crop(ws, verdict.name, entry, verdict.face, options)
            reason = verdict.reason + (f" ({', '.join(verdict.notes)})" if verdict.notes else "")
            score = None if verdict.distance is None else round(1 - verdict.distance, 4)
            if not verdict.keep:
                summary.rejected[verdict.reason] += 1
            if "crop" in entry:
                apply_decision(ws, group, verdict.name, {"keep": verdict.keep, "reason": reason, "score": score,
                                                         "by": "auto"}, overrides)
        groups.append(group)
        ws.save()
    _sheets(ws, summary, groups)


def _embed_photo(ws, photo_id, path, sha, image, detector, embedder, options) -> None:
    from factory.models.embedding import embed

    faces = detector.detect(image)
    vectors, _ = embed(embedder, image, faces)
    ws.manifest["sources"][sha] = {"file": str(path), "faces": [photo_id]}
    ws.manifest["faces"][photo_id] = {"kind": "photo", "file": str(path), "sha256": sha, "reason": "",
                                      "boxes": [[round(float(v), 1) for v in f.box] for f in faces]}
    ws.features[photo_id] = vectors
    for index, face in enumerate(faces):  # cropped now, while the photo is in memory; judging picks one
        crop, upscaled = options.finish(crop_square(image, face.box, options.margin))
        ws.write_crop(f"{photo_id}-{index}", crop)
        ws.manifest["faces"][photo_id].setdefault("superres", []).append(upscaled)
    ws.record(sha)


def _actor_crop(ws: Workspace, photo_id: str, entry: dict, index: int, options: CropOptions) -> None:
    """The chosen face's crop becomes the photo's crop (faces/<photo id>.png)."""
    source = ws.root / "faces" / f"{photo_id}-{index}.png"
    if source.is_file() and entry.get("face") != index:
        ws.write_crop(photo_id, read_image(source))
        entry.update(crop=f"faces/{photo_id}.png", face=index, box=entry["boxes"][index])
