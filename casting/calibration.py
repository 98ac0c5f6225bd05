"""Verdicts calibrated on drawn faces: how alike a drawing must be to an actor to be that actor.

A drawing of someone who is in no gallery is usually closest to an actor of similar looks, and its
z-score against the other actors (``rank.calibrate``) cannot tell it from a drawing of that actor
(on 18 actors, 67% of `webtoon` drawings of strangers reached z 2.0). So a gallery also embeds the
`webtoon` teacher's drawing of every photo, and two levels are read from those drawings:

- the *impostor* level: the mean similarity of a drawing to every actor it is not, pooled over all
  the gallery's drawings and actors (so a gallery of 2 actors has one too);
- an actor's *genuine* level: the mean similarity of the drawings of the actor's photos to the actor's
  other photos (the level pooled over all actors for an actor with fewer than two such drawings).

A query's *likeness* to an actor places its similarity between the two: 0 at the impostor level,
1 at the actor's genuine level. A clear match needs ``CLEAR_MATCH_LIKENESS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factory import faces as facelib

# Chosen on benchmarks/cast_accuracy.py's likeness table (18 actors, each query's person left out of the
# gallery and of the levels): at 0.9, 7% of `webtoon` drawings of strangers and 5% of photos of strangers are
# matched (67% and 70% at z 2.0); true photos never abstain, true CartoonGAN drawings 8%, true `webtoon`
# drawings 28% (they lose more identity; 10% at 0.8, where 20% of drawn strangers are matched).
CLEAR_MATCH_LIKENESS = 0.9
DRAW_SIDE, DRAW_MARGIN = 256, 1.6  # the aligned crop the teacher draws (cast_accuracy's queries are cut alike)


def draw_photo(image: np.ndarray, face: facelib.Face, key: str, teacher=None) -> np.ndarray:
    """The default `webtoon` teacher's drawing of ``face``'s aligned crop; its style draws from ``key``."""
    from factory.sample import Sample
    from factory.teachers.webtoon import WebtoonConfig

    teacher = teacher or WebtoonConfig(kind="webtoon").build()
    crop = facelib.crop(image, facelib.alignment_matrix(face.keypoints5(), DRAW_SIDE, DRAW_MARGIN), DRAW_SIDE)
    return teacher.draw(crop, Sample.create(key, 0, 0))[0]


@dataclass
class DrawnLevels:
    """The impostor level (pooled) and each actor's genuine level, read from drawings of the gallery's photos."""

    impostor: float
    genuine: dict[str, float]

    @classmethod
    def measure(cls, vectors: np.ndarray, owners: np.ndarray, drawn: np.ndarray) -> "DrawnLevels | None":
        """From gallery ``vectors`` owned by ``owners`` and ``drawn[i]``, the drawing of photo i (NaN rows:
        no face found in the drawing). None when fewer than two actors have drawings or no actor has two photos."""
        owners = np.asarray(owners)
        usable = ~np.isnan(drawn).any(axis=1)
        actors = sorted(set(owners[usable]))
        if len(actors) < 2:
            return None
        sims = drawn[usable] @ vectors.T
        drawn_owner = owners[usable]
        impostor = [sims[i, owners == a].mean() for i in range(len(sims)) for a in actors if a != drawn_owner[i]]
        genuine: dict[str, list[float]] = {}
        for i, row in zip(np.flatnonzero(usable), sims):
            others = (owners == owners[i]) & (np.arange(len(owners)) != i)
            if others.any():
                genuine.setdefault(str(owners[i]), []).append(float(row[others].mean()))
        if not genuine:
            return None
        levels = {a: float(np.mean(v)) for a, v in genuine.items() if len(v) >= 2}
        pooled = float(np.mean([s for v in genuine.values() for s in v]))
        return cls(float(np.mean(impostor)), {str(a): levels.get(str(a), pooled) for a in set(owners)})

    def likeness(self, actor: str, similarity: float) -> float:
        """0 at the impostor level, 1 at ``actor``'s genuine level."""
        return float((similarity - self.impostor) / max(self.genuine[actor] - self.impostor, 1e-6))
