"""The whole-run recipe: the factory's sections plus adaptation (``adapt:``) and the student's
(``distill:``, ``export:``).

Assembled here, in the composition root, so the factory knows only its own sections. These sections
never change the recipe hash: retraining leaves a dataset valid, and an adapted teacher's output
refuses to be overwritten by a different adaptation (see :func:`adapt.training.finished`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from distill.config import DistillConfig, ExportConfig
from factory import recipe as recipes
from adapt import AdaptConfig
from factory.recipe import Recipe, Resolved


class RunRecipe(Recipe):
    """What `toonfactory run` reads: adapt a teacher, make the pairs, then train and export the student."""

    adapt: AdaptConfig | None = None
    distill: DistillConfig | None = None
    export: ExportConfig | None = None

    @model_validator(mode="after")
    def _teacher_uses_the_adaptation(self):
        adapt, teacher = self.adapt, self.teacher
        if adapt is None:
            return self
        if adapt.kind == "lora" and (teacher.kind != "diffusion" or adapt.base != teacher.model
                                     or not any(adapt.out in (lora.path, lora.path.parent) for lora in teacher.lora)):
            raise ValueError("adapt.out: a LoRA adaptation needs `teacher.kind: diffusion` with `teacher.model` "
                             "equal to `adapt.base` and `adapt.out` among `teacher.lora[].path`")
        if adapt.kind == "stylegan2" and (teacher.kind != "toonify" or teacher.toon != adapt.out
                                          or teacher.base != adapt.base):
            raise ValueError("adapt.out: a StyleGAN2 adaptation needs `teacher.kind: toonify` with `teacher.toon` "
                             "equal to `adapt.out` and `teacher.base` equal to `adapt.base`")
        return self


def load(path: str | Path, overrides: list[str] = ()) -> Resolved:
    """Read, override and validate a whole-run recipe file."""
    return recipes.load(path, overrides, model=RunRecipe)


def produced(resolved: Resolved) -> list[Path]:
    """Paths the run makes before it generates (so they need not exist yet): the adaptation's output."""
    adapt = getattr(resolved.recipe, "adapt", None)
    return [adapt.out] if adapt is not None else []
