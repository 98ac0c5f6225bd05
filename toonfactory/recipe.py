"""The whole-run recipe: the factory's sections plus the student's (``distill:``, ``export:``).

Assembled here, in the composition root, so the factory knows only its own sections. The student's
sections never change the recipe hash: retraining leaves a dataset valid.
"""

from __future__ import annotations

from pathlib import Path

from distill.config import DistillConfig, ExportConfig
from factory import recipe as recipes
from factory.recipe import Recipe, Resolved


class RunRecipe(Recipe):
    """What `toonfactory run` reads: make the pairs, then train and export the student."""

    distill: DistillConfig | None = None
    export: ExportConfig | None = None


def load(path: str | Path, overrides: list[str] = ()) -> Resolved:
    """Read, override and validate a whole-run recipe file."""
    return recipes.load(path, overrides, model=RunRecipe)
