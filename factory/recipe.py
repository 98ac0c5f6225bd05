"""Recipes: YAML validated by pydantic models, overridable from the command line, hashed.

A recipe says what to make. Every section is a strict model (unknown keys are refused); sections
with a ``kind`` (source, teacher, ...) are tagged unions whose members live beside the code that
runs them and are listed in :mod:`factory.kinds`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import RecipeError, UserError


class Strict(BaseModel):
    """Base for every recipe section: unknown keys are an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FacesConfig(Strict):
    """Face detection and alignment of each source image."""

    detector: Literal["mediapipe", "dlib", "haar", "anime"] = "mediapipe"
    cascade: Path | None = Field(None, description="LBP cascade XML for the anime detector")
    select: Literal["largest", "all"] = "largest"
    min_size: int = Field(48, ge=8, description="smallest face box side, in pixels")
    margin: float = Field(1.0, ge=0.5, le=3.0, description="crop scale around the canonical face")
    jitter: float = Field(0.0, ge=0.0, le=0.5, description="random shift/scale/rotation of the crop (pose jitter)")

    @model_validator(mode="after")
    def _anime_needs_cascade(self):
        if self.detector == "anime" and self.cascade is None:
            raise ValueError("the anime detector needs `cascade`: a path to an LBP cascade XML")
        return self


class AugmentConfig(Strict):
    """Photometric augmentation applied identically to both sides of a pair."""

    enabled: bool = True
    skin_tone: float = Field(0.15, ge=0.0, le=1.0, description="hue/saturation shift strength")
    lighting: float = Field(0.25, ge=0.0, le=1.0, description="brightness/contrast/gamma strength")
    shadow: float = Field(0.0, ge=0.0, le=1.0, description="probability of a soft directional shadow")


class GatesConfig(Strict):
    """Quality gates; a sample failing one is rejected with the gate's name as reason."""

    min_sharpness: float = Field(20.0, ge=0.0, description="variance of the Laplacian of the real side")
    face_on_toon: bool = Field(False, description="require a detectable face on the toon side too")
    max_alignment_error: float = Field(0.08, gt=0.0, description="landmark distance between sides / face size")
    dedupe: bool = Field(True, description="reject near-duplicates (perceptual hash) within a shard")
    dedupe_distance: int = Field(4, ge=0, le=64)


class OutputConfig(Strict):
    """What the dataset looks like: image size, how many pairs, shard size."""

    size: int = Field(256, ge=32, le=2048)
    count: int = Field(200, ge=1)
    shard_size: int = Field(50, ge=1)
    format: Literal["webdataset"] = "webdataset"
    image_format: Literal["png"] = "png"
    max_attempts: float = Field(3.0, ge=1.0, le=8.0, description="candidates tried per planned sample before a shard gives up")


class TrackingConfig(Strict):
    """ClearML tracking: offline unless a server is configured; `none` turns it off."""

    mode: Literal["auto", "offline", "server", "none"] = "auto"
    project: str = "toonfactory"
    task_name: str | None = None
    dataset: bool = Field(True, description="register the shards as a ClearML Dataset version")


def _recipe_model():
    """The Recipe model, built once the kinds are known (kinds import this module's bases)."""
    from factory.kinds import SourceConfig, TeacherConfig
    from factory.segment import SegmentConfig
    from factory.warp_stage import WarpConfig
    from distill.config import DistillConfig, ExportConfig

    class Recipe(Strict):
        name: str = "recipe"
        seed: int = 0
        source: SourceConfig
        faces: FacesConfig = FacesConfig()
        segment: SegmentConfig | None = None
        warp: WarpConfig | None = None
        teacher: TeacherConfig
        augment: AugmentConfig = AugmentConfig()
        gates: GatesConfig = GatesConfig()
        output: OutputConfig = OutputConfig()
        tracking: TrackingConfig = TrackingConfig()
        distill: DistillConfig | None = None
        export: ExportConfig | None = None

        @model_validator(mode="after")
        def _stages_fit_the_source(self):
            if getattr(self.source, "generative", False) and self.segment and self.segment.person_only:
                raise ValueError("segment.person_only needs an image source: a generative source's teacher "
                                 "runs before faces are found and masked")
            if self.teacher.kind == "toonify" and (self.source.kind != "stylegan2"
                                                   or self.source.checkpoint != self.teacher.base):
                raise ValueError("teacher.base: toonify needs `source.kind: stylegan2` with the same checkpoint "
                                 "as `teacher.base`, so both sides come from one latent")
            return self

    return Recipe


_MODEL = None


def recipe_model():
    global _MODEL
    if _MODEL is None:
        _MODEL = _recipe_model()
    return _MODEL


def apply_overrides(data: dict, overrides: list[str], origin: str) -> dict:
    """Apply ``a.b=value`` overrides; values are parsed as YAML scalars (numbers, booleans, lists)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected FIELD=VALUE, e.g. output.count=1000")
        dotted, raw = item.split("=", 1)
        node = data
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"{origin}: --set {dotted}: `{part}` is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def _locate(loc: tuple, data: Any) -> str:
    """A YAML path for a pydantic error location; union tags (not keys of the data) are dropped."""
    from factory.kinds import ALL_KINDS

    parts, node = [], data
    for item in loc:
        if isinstance(node, dict) and item in node:
            parts.append(str(item))
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            node = node[item]
        elif isinstance(node, dict) and item in ALL_KINDS:
            continue
        else:
            parts.append(str(item))
            node = None
    return ".".join(parts) or "(recipe)"


def problems(exc: ValidationError, data: Any) -> list[str]:
    """Each pydantic error as ``yaml.path: message``, in order, without repeats."""
    found = [f"{_locate(err['loc'], data)}: {err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]
    return sorted(set(found), key=found.index)


def validate(data: Any, origin: str):
    """Validate a recipe dict; raises RecipeError listing every problem with its YAML path."""
    if not isinstance(data, dict):
        raise RecipeError(origin, ["(recipe): must be a mapping of sections"])
    try:
        return recipe_model().model_validate(data)
    except ValidationError as exc:
        raise RecipeError(origin, problems(exc, data)) from None


def read_yaml(path: str | Path) -> dict:
    """A recipe file's raw mapping; a missing file or broken YAML is the user's mistake."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [f"(yaml): {exc}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(str(path), ["(recipe): must be a mapping of sections"])
    return data


def load(path: str | Path, overrides: list[str] = ()) -> "Resolved":
    """Read, override and validate a recipe file."""
    data = apply_overrides(read_yaml(path), list(overrides), str(path))
    return Resolved(validate(data, str(path)), str(path))


class Resolved:
    """A validated recipe with its resolved form and hash."""

    def __init__(self, recipe, origin: str):
        self.recipe = recipe
        self.origin = origin

    def to_dict(self) -> dict:
        return self.recipe.model_dump(mode="json")

    @property
    def hash(self) -> str:
        """Hash of what determines the pairs: everything but output.count and tracking.

        Raising the count extends a dataset; the shards already made stay valid.
        """
        data = self.recipe.model_dump(mode="json", exclude_none=True)  # new optional sections keep old hashes
        data.pop("tracking", None)
        data.pop("distill", None)  # training and export settings do not change the pairs
        data.pop("export", None)
        data["output"].pop("count", None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
