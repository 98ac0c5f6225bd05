"""Recipes: the factory's sections of a YAML file, validated by pydantic, overridable, hashed.

A recipe says what to make. Every section is a strict model (unknown keys are refused) that lives
beside the code that runs it; sections with a ``kind`` (source, teacher, ...) are tagged unions
listed in :mod:`factory.kinds`. A whole-run recipe adds sections of later rooms (training, export)
by subclassing :class:`Recipe`; only the factory's sections decide the hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from factory.config import Strict, apply_overrides, blame_overrides, missing_paths, read_yaml, resolve_relative, validate_section
from factory.errors import RecipeError
from factory.kinds import SourceConfig, TeacherConfig
from factory.stages.augment import AugmentConfig
from factory.stages.face_crop import FacesConfig
from factory.stages.gates import GatesConfig
from factory.stages.scene import SceneConfig
from factory.stages.segment import SegmentConfig
from factory.stages.warp import WarpConfig
from factory.tracking import TrackingConfig


MAX_COUNT = 100_000_000
MAX_SHARDS = 100_000


class OutputConfig(Strict):
    """What the dataset looks like: image size, how many pairs, shard size."""

    frame: Literal["face", "scene"] = Field(
        "face", description="face: aligned face crops; scene: whole frames with people, bodies and background "
                            "(faces by the teacher, the rest by `scene.teacher`)")
    size: int = Field(256, ge=32, le=2048)
    count: int = Field(200, ge=1, le=MAX_COUNT)
    shard_size: int = Field(50, ge=1)
    format: Literal["webdataset"] = "webdataset"
    image_format: Literal["png"] = "png"
    max_attempts: float = Field(3.0, ge=1.0, le=8.0, description="candidates tried per planned sample before a shard gives up")

    @model_validator(mode="after")
    def _shards_are_few_enough(self):
        shards = -(-self.count // self.shard_size)
        if shards > MAX_SHARDS:
            raise ValueError(f"count {self.count} in shards of {self.shard_size} makes {shards} shards, more than "
                             f"{MAX_SHARDS}; raise output.shard_size to at least {-(-self.count // MAX_SHARDS)}")
        return self


class Recipe(Strict):
    """The factory's sections: where faces come from, every stage, and the dataset to write."""

    name: str = "recipe"
    seed: int = 0
    source: SourceConfig
    faces: FacesConfig = FacesConfig()
    segment: SegmentConfig | None = None
    warp: WarpConfig | None = None
    teacher: TeacherConfig
    scene: SceneConfig | None = None
    augment: AugmentConfig = AugmentConfig()
    gates: GatesConfig = GatesConfig()
    output: OutputConfig = OutputConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _stages_fit_the_source(self):
        if getattr(self.source, "generative", False) and self.segment and self.segment.person_only:
            raise ValueError("segment.person_only needs an image source: a generative source's teacher "
                             "runs before faces are found and masked")
        if self.teacher.kind == "toonify" and (self.source.kind != "stylegan2"
                                               or self.source.checkpoint != self.teacher.base):
            raise ValueError("teacher.base: toonify needs `source.kind: stylegan2` with the same checkpoint "
                             "as `teacher.base`, so both sides come from one latent")
        if self.output.frame == "scene":
            self._scene_fits()
        elif self.scene is not None:
            raise ValueError("scene: only scene pairs use it; set `output.frame: scene` (or remove the section)")
        return self

    def _scene_fits(self):
        """Scene pairs start from a photo and draw it real to toon; face-crop stages do not apply."""
        if getattr(self.source, "generative", False):
            raise ValueError(f"output.frame: scene pairs need photos or videos, not a `{self.source.kind}` source")
        if self.warp is not None:
            raise ValueError("warp: reshapes aligned face crops; remove it for `output.frame: scene`")
        if self.segment and self.segment.person_only:
            raise ValueError("segment.person_only: scene pairs draw the background too; remove it for "
                             "`output.frame: scene`")
        if self.teacher.direction != "real2toon":
            raise ValueError("teacher.direction: scene pairs are drawn real2toon")


def validate(data, origin: str, model: type[Recipe] = Recipe) -> Recipe:
    """Validate a recipe dict; raises RecipeError listing every problem with its YAML path."""
    if not isinstance(data, dict):
        raise RecipeError(origin, ["(recipe): must be a mapping of sections"])
    return validate_section(model, data, origin)


def load(path: str | Path, overrides: list[str] = (), model: type[Recipe] = Recipe) -> "Resolved":
    """Read, override and validate a recipe file as ``model`` (the factory's sections by default).

    Relative paths in the file resolve against the file's folder, so a recipe runs from anywhere;
    paths given with ``--set`` resolve against the current folder.
    """
    data = apply_overrides(read_yaml(path), list(overrides), str(path))
    try:
        recipe = validate(data, str(path), model)
    except RecipeError as exc:
        raise blame_overrides(exc, list(overrides)) from None
    given = {item.split("=", 1)[0].strip() for item in overrides}
    data = resolve_relative(data, recipe, Path(path).resolve().parent, keep=given)
    return Resolved(validate(data, str(path), model), str(path))


def check_paths(resolved: "Resolved", produced: list[Path] = (), factory_only: bool = False) -> None:
    """Raise RecipeError naming every field whose file or folder does not exist (or is not
    ``produced`` by an earlier step of the run, inside one of those paths); ``factory_only``: only in
    the sections that make pairs (a later room's paths, e.g. ``distill.init``, may come later)."""
    missing = missing_paths(resolved.recipe, produced, sections=set(Recipe.model_fields) if factory_only else None)
    if missing:
        raise RecipeError(resolved.origin, missing)


class Resolved:
    """A validated recipe with its resolved form and hash."""

    def __init__(self, recipe: Recipe, origin: str):
        self.recipe = recipe
        self.origin = origin

    def to_dict(self) -> dict:
        return self.recipe.model_dump(mode="json")

    @property
    def hash(self) -> str:
        """Hash of what determines the pairs: the factory's sections but output.count and tracking.

        Raising the count extends a dataset; the shards already made stay valid. Sections of later
        rooms (training, export), unset optional sections and the default ``output.frame`` do not count.
        """
        data = self.recipe.model_dump(mode="json", exclude_none=True, include=set(Recipe.model_fields))
        data.pop("tracking", None)
        data["output"].pop("count", None)
        if data["output"].get("frame") == "face":  # the default: datasets made before the option keep their hash
            data["output"].pop("frame")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
