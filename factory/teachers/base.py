"""What every teacher shares: batching over the stream and filling the missing side of a pair."""

from __future__ import annotations

from typing import Iterable, Iterator, Literal

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.sample import Sample
from factory.stage import Stage, batched

Direction = Literal["real2toon", "toon2real"]


class TeacherConfig(Strict):
    """Fields every teacher kind has."""

    direction: Direction = "real2toon"
    batch_size: int = Field(1, ge=1, description="samples per model call")


class Teacher(Stage):
    """Translates one side of each sample into the other, a batch at a time.

    Subclasses implement ``translate(images, samples)``; the base handles direction, batching and
    the provenance record. Teachers that make both sides (StyleGAN latents) override ``__call__``.
    """

    name = "teacher"

    def __init__(self, config: TeacherConfig):
        self.config = config

    def translate(self, images: list[np.ndarray], samples: list[Sample]) -> list[np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict:
        """The provenance stored in each sample: the recipe section, as JSON."""
        return self.config.model_dump(mode="json")

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        src, dst = ("real", "toon") if self.config.direction == "real2toon" else ("toon", "real")
        for batch in batched(samples, self.config.batch_size):
            outputs = self.translate([getattr(s, src) for s in batch], batch)
            for sample, out in zip(batch, outputs):
                if getattr(sample, src) is not None and out.shape != getattr(sample, src).shape:
                    raise RuntimeError(f"teacher returned {out.shape} for input {getattr(sample, src).shape}")
                setattr(sample, dst, out)
                sample.meta["teacher"] = self.describe()
                yield sample
