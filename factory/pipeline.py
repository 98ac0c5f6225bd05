"""From a recipe to a source and an ordered list of stages, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from factory.augment import AugmentStage
from factory.face_stage import FaceStage
from factory.gates import GateStage
from factory.stage import Stage


@dataclass
class Pipeline:
    source: object
    stages: list[Stage]


def build_pipeline(recipe) -> Pipeline:
    """Image sources: faces → teacher → augment → gates. Generative sources make the images first,
    so the teacher runs before the face stage, which then crops both sides alike."""
    source = recipe.source.build()
    faces = FaceStage(recipe.faces, recipe.output.size)
    teacher = recipe.teacher.build()
    generative = getattr(recipe.source, "generative", False)
    stages: list[Stage] = [teacher, faces] if generative else [faces, teacher]
    stages += [AugmentStage(recipe.augment), GateStage(recipe.gates, recipe.faces)]
    return Pipeline(source, stages)
