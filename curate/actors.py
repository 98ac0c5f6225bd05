"""Actor folders cleaned by majority identity: a crawl for one name also brings namesakes,
relatives, co-stars in group shots and the same picture twice.

Every face in every photo is embedded (dlib by default). The actor's identity is the face with
the most look-alikes in *other* photos, refined to the mean of the faces near it; each photo then
keeps its face nearest that identity, or is dropped with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from factory.faces import Face


@dataclass
class PhotoFaces:
    """The faces found in one photo and their embeddings (rows of ``vectors``)."""

    name: str
    faces: list[Face]
    vectors: np.ndarray


@dataclass
class Verdict:
    name: str
    keep: bool
    reason: str
    face: int | None = None
    distance: float | None = None
    notes: list[str] = field(default_factory=list)


def majority_identity(photos: list[PhotoFaces], radius: float) -> np.ndarray | None:
    """The unit vector of the identity most photos share (None when no photo has a face)."""
    vectors = [v for p in photos for v in p.vectors]
    owners = [i for i, p in enumerate(photos) for _ in p.vectors]
    if not vectors:
        return None
    matrix = np.stack(vectors)
    owners = np.array(owners)
    near = np.linalg.norm(matrix[:, None] - matrix[None], axis=-1) <= radius
    support = [len(set(owners[near[i]].tolist()) - {owners[i]}) for i in range(len(matrix))]
    centre = matrix[near[int(np.argmax(support))]].mean(0)
    for _ in range(2):  # refine: the mean of the faces near the current centre
        members = np.linalg.norm(matrix - centre, axis=1) <= radius
        if members.any():
            centre = matrix[members].mean(0)
    return centre / max(float(np.linalg.norm(centre)), 1e-12)


def judge(photos: list[PhotoFaces], radius: float = 0.4, min_face: int = 40,
          duplicate_distance: float = 0.06) -> list[Verdict]:
    """A verdict per photo: keep its face nearest the majority identity, or drop it with a reason
    (``no_face``, ``too_small``, ``other_identity``, ``duplicate``)."""
    centre = majority_identity(photos, radius)
    verdicts, kept_vectors = [], []
    for photo in photos:
        if not len(photo.vectors) or centre is None:
            verdicts.append(Verdict(photo.name, False, "no_face"))
            continue
        distances = np.linalg.norm(photo.vectors - centre, axis=1)
        best = int(np.argmin(distances))
        verdict = Verdict(photo.name, False, "", best, round(float(distances[best]), 4))
        if len(photo.vectors) > 1:
            verdict.notes.append(f"{len(photo.vectors)} faces")
        if distances[best] > radius:
            verdict.reason = "other_identity"
        elif photo.faces[best].size < min_face:
            verdict.reason = "too_small"
        elif kept_vectors and min(np.linalg.norm(np.stack(kept_vectors) - photo.vectors[best], axis=1)) < duplicate_distance:
            verdict.reason = "duplicate"
        else:
            verdict.keep, verdict.reason = True, "majority_identity"
            kept_vectors.append(photo.vectors[best])
        verdicts.append(verdict)
    return verdicts
