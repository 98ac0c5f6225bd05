"""Person-only stylization: the teacher's (or the student's) output is kept inside the person mask.

- ``person_only``: stylize the person with any callable, keep the background (or stylize the
  inpainted background) and blend with the feathered mask; the inference path calls it directly.
- ``PersonOnlyTeacher``: the same for pairs, wrapping any teacher stage; both sides of a pair get
  the same background treatment, so a student learns the person's style, not background noise.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Literal

import numpy as np

from factory.config import Strict
from factory.masks import composite, soften
from factory.sample import Sample
from factory.stage import Stage, batched

Background = Literal["keep", "stylize"]


class PersonOnlyConfig(Strict):
    """Stylize only the person; the background is kept as it is, or inpainted and stylized."""

    background: Background = "keep"


def person_only(image: np.ndarray, stylize: Callable[[np.ndarray], np.ndarray], mask_backend: Callable,
                background: Background = "keep", inpainter: Callable | None = None,
                feather: float = 0.01) -> np.ndarray:
    """Stylize only the people in ``image`` (RGB uint8); the background is kept, or inpainted and stylized.

    ``mask_backend(image)`` gives a person probability map (any backend in :mod:`factory.stages.segment`);
    ``stylize(image)`` returns an image of the same shape (a teacher, the distilled student, ...).
    """
    mask, inputs = person_only_inputs(image, mask_backend, background, inpainter, feather)
    styled = [stylize(x) for x in inputs]
    if styled[0].shape != image.shape:
        raise ValueError(f"person_only: stylize returned {styled[0].shape} for an input of {image.shape}")
    return person_only_compose(image, mask, styled)


def person_only_inputs(image: np.ndarray, mask_backend: Callable, background: Background = "keep",
                       inpainter: Callable | None = None, feather: float = 0.01) -> tuple[np.ndarray, list[np.ndarray]]:
    """The soft person mask and what to stylize: the image, and for ``stylize`` its inpainted plate."""
    from factory.stages.inpaint import OpenCVInpainter

    mask = soften(mask_backend(image), feather)
    if background == "keep":
        return mask, [image]
    return mask, [image, (inpainter or OpenCVInpainter())(image, mask)]


def person_only_compose(image: np.ndarray, mask: np.ndarray, styled: list[np.ndarray]) -> np.ndarray:
    """The stylized person over the kept background (one output) or the stylized plate (two)."""
    return composite(styled[0], styled[1] if len(styled) > 1 else image, mask)


class PersonOnlyTeacher(Stage):
    """Wraps a teacher stage: its output is kept inside the sample's mask only.

    ``keep``: outside the mask the new side equals the source side, pixel for pixel.
    ``stylize``: outside the mask it is the teacher's translation of the inpainted source (no
    ghost of the person in the background).
    """

    name = "teacher"

    def __init__(self, teacher, config: PersonOnlyConfig, inpainter: Callable | None = None):
        self.teacher = teacher
        self.config = config
        self.inpainter = inpainter

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        src, dst = ("real", "toon") if self.teacher.config.direction == "real2toon" else ("toon", "real")
        for batch in batched(self.teacher(samples), max(1, self.teacher.config.batch_size)):
            live = [s for s in batch if s.reject_reason is None]
            for sample in live:
                if sample.mask is None:
                    raise RuntimeError(f"{sample.key}: person-only stylization needs the segment stage's mask")
            backgrounds = [getattr(s, src) for s in live]
            if self.config.background == "stylize" and live:
                if self.inpainter is None:
                    raise RuntimeError("person-only background `stylize` needs an inpainter")
                plates = [self.inpainter(getattr(s, src), s.mask) for s in live]
                backgrounds = self.teacher.translate(plates, live)
            for sample, background in zip(live, backgrounds):
                setattr(sample, dst, composite(getattr(sample, dst), background, sample.mask))
                sample.meta["segment"] = {
                    **(sample.meta.get("segment") or {}), "person_only": {"background": self.config.background},
                }
            yield from batch
