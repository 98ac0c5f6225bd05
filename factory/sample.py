"""The unit that flows through stages, and the seeding rule that makes runs reproducible."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Side = Literal["real", "toon"]

# Every sample's json has exactly these provenance fields (None where a stage did not run).
META_FIELDS = ("source", "seed", "faces", "segment", "warp", "teacher", "augment", "gates")


def sample_seed(recipe_seed: int, key: str) -> int:
    """A 63-bit seed from (recipe seed, sample key): independent of process count and order."""
    digest = hashlib.sha256(f"{recipe_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class Sample:
    """One pair in the making. Images are RGB uint8 H×W×3; the mask is H×W uint8 (255 = person)."""

    key: str
    index: int
    seed: int
    real: np.ndarray | None = None
    toon: np.ndarray | None = None
    mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reject_reason: str | None = None

    @classmethod
    def create(cls, key: str, index: int, recipe_seed: int) -> "Sample":
        return cls(key=key, index=index, seed=sample_seed(recipe_seed, key))

    def rng(self, purpose: str) -> np.random.Generator:
        """A generator for one purpose (e.g. "augment"): stages never share a random stream."""
        return np.random.default_rng(sample_seed(self.seed, purpose))

    def reject(self, reason: str) -> "Sample":
        """Mark the sample rejected; it leaves the stream and its reason lands in the shard stats."""
        self.reject_reason = reason
        return self

    def record(self) -> dict[str, Any]:
        """The sample's json: its key and every provenance field, None where unset."""
        return {"key": self.key, **{name: self.meta.get(name) for name in META_FIELDS}}
