"""From a recipe to a source and an ordered list of stages, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from factory.stages.augment import AugmentStage
from factory.stages.faces import FaceStage
from factory.stages.gates import GateStage
from factory.stage import Stage


@dataclass
class Pipeline:
    source: object
    stages: list[Stage]


def build_pipeline(recipe) -> Pipeline:
    """faces → [segment] → [warp before the teacher] → teacher → [warp one side] → [backgrounds]
    → augment → gates. With ``segment.person_only`` the teacher stylizes only the person.

    Generative sources (StyleGAN latents, prompts) make their images first, so their teacher runs
    before the face stage, which then crops both sides with the same matrix.
    """
    source = recipe.source.build()
    faces = FaceStage(recipe.faces, recipe.output.size)
    teacher = recipe.teacher.build()
    segment, backgrounds = [], []
    if recipe.segment:
        segment = [recipe.segment.build()]
        teacher = recipe.segment.wrap_teacher(teacher)  # person-only stylization, when asked
        backgrounds = [stage for stage in [recipe.segment.background_stage()] if stage]
    warp = recipe.warp.build() if recipe.warp else None
    before = [warp] if warp and recipe.warp.placement == "before_teacher" else []
    after = [warp] if warp and recipe.warp.placement != "before_teacher" else []
    if getattr(recipe.source, "generative", False):
        stages = [teacher, faces, *segment, *before, *after]
    else:
        stages = [faces, *segment, *before, teacher, *after]
    stages += [*backgrounds, AugmentStage(recipe.augment), GateStage(recipe.gates, recipe.faces)]
    return Pipeline(source, stages)
