"""Characters from faces: rank against 1-3 references, or cluster when there are none."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist


def similarity_to(references: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Each face's similarity to a character: the best cosine over its references."""
    if not len(references) or not len(features):
        return np.zeros(len(features), np.float32)
    return (features @ references.T).max(axis=1)


def choose(scores: np.ndarray, top: int | None, threshold: float | None) -> np.ndarray:
    """Boolean mask: the ``top`` best scores, those at or above ``threshold``, or both conditions."""
    keep = np.ones(len(scores), bool)
    if threshold is not None:
        keep &= scores >= threshold
    if top is not None:
        ranked = np.zeros(len(scores), bool)
        ranked[np.argsort(-scores, kind="stable")[:top]] = True
        keep &= ranked
    return keep


LINKAGES = ("average", "complete")  # never single linkage: it chains look-alikes of look-alikes into one cluster


def cluster(features: np.ndarray, max_distance: float = 0.12, min_size: int = 2, method: str = "average") -> np.ndarray:
    """Average- (or complete-) linkage clusters on cosine distance; labels 0, 1, ... by size (largest first),
    -1 for faces in clusters smaller than ``min_size``."""
    if method not in LINKAGES:
        raise ValueError(f"linkage {method!r}: expected one of {LINKAGES}")
    if len(features) < 2:
        return np.full(len(features), -1 if min_size > 1 else 0)
    raw = fcluster(linkage(pdist(features, "cosine"), method), t=max_distance, criterion="distance")
    ids, counts = np.unique(raw, return_counts=True)
    order = [i for i, c in sorted(zip(ids, counts), key=lambda p: -p[1]) if c >= min_size]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(r, -1) for r in raw])


def purity(labels: np.ndarray, truth: list[str]) -> float:
    """Share of clustered faces whose cluster's majority character is their own."""
    total = correct = 0
    for label in set(labels.tolist()) - {-1}:
        members = [t for l, t in zip(labels, truth) if l == label]
        correct += max(members.count(t) for t in set(members))
        total += len(members)
    return correct / total if total else 0.0
