"""Filters that reject a crop with a recorded reason: too small, blurry, text, not a face, duplicate."""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from curate.ingest import Detection
from curate.superres import resize


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop at 128 px (comparable across crop sizes)."""
    gray = cv2.cvtColor(resize(crop, 128), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def text_score(crop: np.ndarray, margin: float = 1.5) -> int:
    """How many letters of lettering the face box holds: small, separate ink blobs (at 128 px) whose
    centres share a line (within 3 px) with at least three others. Line art is long connected strokes
    and a face's small marks (pupils, nostrils, lashes) seldom line up in fours: on the shared sprites,
    anime tiles and comic faces (136) at most 5 did, while 13 of 15 labelled speech bubbles held 16-55
    (the other two are lettered too large to count; ``benchmarks/curate_evidence.py``)."""
    small = resize(crop, 128)
    inner = int(128 * (1 - 1 / margin) / 2)
    gray = cv2.cvtColor(small[inner:128 - inner, inner:128 - inner], cv2.COLOR_RGB2GRAY)
    _, _, stats, centres = cv2.connectedComponentsWithStats((gray < 160).astype(np.uint8), connectivity=8)
    longest = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    rows = centres[1:, 1][(longest <= 0.15 * gray.shape[0]) & (stats[1:, cv2.CC_STAT_AREA] >= 4)]
    return int(sum((np.abs(rows - y) <= 3).sum() >= 4 for y in rows))


def phash(crop: np.ndarray) -> np.ndarray:
    """OpenCV's 64-bit perceptual hash (8 bytes)."""
    return cv2.img_hash.pHash(cv2.cvtColor(resize(crop, 64), cv2.COLOR_RGB2BGR)).ravel()


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


# A detection no other detector of the chain agreed with is a face only above this score of its own
# detector. On the shared comic pages (benchmarks/curate_evidence.py) the anime cascade alone scored
# 0.51-1.03 on what was not a face (hair, a dragon's eye, a bubble) and 1.29 and up on faces (comic
# pages and the 36 anime tiles); lone mediapipe and dlib boxes scored alike on both, so they pass.
LONE_MIN_SCORE = {"anime": 1.2}


class Thresholds:
    """What each filter rejects; the defaults were set on the shared comic pages and photos."""

    def __init__(self, min_face: int = 40, min_sharpness: float = 30.0, max_text: int = 10,
                 max_hash_distance: int = 10, max_feature_distance: float = 0.12, max_drawing_difference: float = 20.0,
                 lone_min_score: dict[str, float] | None = None):
        self.min_face, self.min_sharpness, self.max_text = min_face, min_sharpness, max_text
        self.max_hash_distance, self.max_feature_distance = max_hash_distance, max_feature_distance
        self.max_drawing_difference = max_drawing_difference
        self.lone_min_score = LONE_MIN_SCORE if lone_min_score is None else lone_min_score


def unconfirmed(detection: Detection, limits: Thresholds) -> bool:
    """Found by one detector only, below the score that detector needs alone (``LONE_MIN_SCORE``)."""
    return not detection.agreed and detection.score < limits.lone_min_score.get(detection.detector, -np.inf)


def reject_reason(detection: Detection, crop: np.ndarray, limits: Thresholds, margin: float = 1.5) -> tuple[str | None, dict]:
    """The first reason to reject a crop by itself (None when it passes) and the measured scores."""
    scores = {"size": round(detection.size, 1), "sharpness": round(sharpness(crop), 1),
              "text": text_score(crop, margin)}
    if detection.size < limits.min_face:
        return "too_small", scores
    if unconfirmed(detection, limits):
        return "not_a_face", scores
    if scores["text"] > limits.max_text:
        return "text", scores
    if scores["sharpness"] < limits.min_sharpness:
        return "blurry", scores
    return None, scores


ALIGN_SIDE = 256


def _alignment(a: np.ndarray, b: np.ndarray, min_inliers: int) -> np.ndarray | None:
    """The similarity transform (2x3) taking ``b`` onto ``a`` at ``ALIGN_SIDE`` px from SIFT matches
    that agree on it, or None when fewer than ``min_inliers`` do."""
    sift = cv2.SIFT_create(nfeatures=400)
    (ka, da), (kb, db) = (sift.detectAndCompute(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), None) for c in (a, b))
    if da is None or db is None or len(ka) < min_inliers or len(kb) < min_inliers:
        return None
    pairs = [m for m, n in (p for p in cv2.BFMatcher().knnMatch(db, da, k=2) if len(p) == 2) if m.distance < 0.75 * n.distance]
    if len(pairs) < min_inliers:
        return None
    src = np.float32([kb[m.queryIdx].pt for m in pairs])
    dst = np.float32([ka[m.trainIdx].pt for m in pairs])
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    return matrix if inliers is not None and int(inliers.sum()) >= min_inliers else None


def drawing_difference(a: np.ndarray, b: np.ndarray, margin: float = 1.5, min_inliers: int = 12) -> float:
    """How far two crops are from being one drawing: ``b`` is aligned onto ``a`` (SIFT similarity
    transform; as cropped when too few matches agree), both are blurred (sigma 2 px at 256 px, which
    hides resampling and JPEG), and the largest colour difference averaged over an 11 px window inside
    the face box is returned (0-255). A re-saved or resized copy, or one panel reached through a strip
    and its page, stays under 16 on the shared assets; another expression of one sprite (a mouth, the
    eyes) is 24 and up, because its difference is concentrated where the face changed."""
    a, b = resize(a, ALIGN_SIDE), resize(b, ALIGN_SIDE)
    matrix = _alignment(a, b, min_inliers)
    if matrix is not None:
        b = cv2.warpAffine(b, matrix, (ALIGN_SIDE, ALIGN_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a, b = (cv2.GaussianBlur(c.astype(np.float32), (0, 0), 2.0) for c in (a, b))
    inner = int(ALIGN_SIDE * (1 - 1 / margin) / 2)
    diff = np.abs(a - b).max(axis=2)[inner:ALIGN_SIDE - inner, inner:ALIGN_SIDE - inner]
    return float(cv2.blur(diff, (11, 11)).max())


def same_drawing(a: np.ndarray, b: np.ndarray, limits: Thresholds | None = None, margin: float = 1.5) -> bool:
    """Whether two crops show the same drawing (another file, slice, scale or detector box), not just
    the same character: see :func:`drawing_difference`."""
    return drawing_difference(a, b, margin) <= (limits or Thresholds()).max_drawing_difference


def duplicate_of(crop: np.ndarray, hash_: np.ndarray, vector: np.ndarray, hashes: list[np.ndarray],
                 vectors: np.ndarray, load: Callable[[int], np.ndarray | None], limits: Thresholds,
                 margin: float = 1.5) -> int | None:
    """Index of an earlier crop this one duplicates, else None. Candidates are earlier crops with a
    near perceptual hash or a close feature vector (a few nearest); each is confirmed by
    :func:`same_drawing` (``load(i)`` gives earlier crop ``i``, or None where it must not be compared:
    faces of one page overlap and are merged at detection)."""
    near = [i for i, other in enumerate(hashes) if hamming(hash_, other) <= limits.max_hash_distance]
    if len(vectors):
        distances = 1.0 - vectors @ vector
        near += [int(i) for i in np.argsort(distances)[:5] if distances[i] <= limits.max_feature_distance]
    for i in dict.fromkeys(near):
        other = load(i)
        if other is not None and same_drawing(crop, other, limits, margin):
            return i
    return None
