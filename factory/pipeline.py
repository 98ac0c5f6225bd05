"""From a recipe to a source and an ordered list of stages, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from factory.stages.augment import AugmentStage
from factory.stages.face_crop import FaceStage
from factory.stages.gates import GateStage
from factory.stages.scene import SceneConfig, SceneCropStage, SceneTeacherStage
from factory.stages.segment import SegmentConfig
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
    if recipe.output.frame == "scene":
        return Pipeline(source, scene_stages(recipe))
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


def scene_stages(recipe) -> list[Stage]:
    """Scene pairs: crop around a person → person mask (the `segment` section's, mediapipe when unset)
    → [backgrounds, on the photo: the scene teacher draws them] → scene and faces drawn → augment → gates."""
    scene = recipe.scene or SceneConfig()
    segment = recipe.segment or SegmentConfig()
    face_teacher = recipe.teacher.build()
    teacher = SceneTeacherStage(scene, scene.build_teacher(recipe.teacher), face_teacher, recipe.faces)
    backgrounds = [stage for stage in [segment.background_stage()] if stage]
    return [SceneCropStage(scene, recipe.faces, recipe.output.size), segment.build(), *backgrounds, teacher,
            AugmentStage(recipe.augment), GateStage(recipe.gates, recipe.faces)]
