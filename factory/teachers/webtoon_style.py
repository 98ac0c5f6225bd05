"""Webtoon styles: the parameter ranges the ``webtoon`` teacher draws from, fitted on images of one webtoon.

A style is a small JSON file: the skin tone and ink colour of the art, a range per drawing parameter
(the teacher draws each sample's value from it), how often each background treatment occurs, and a
palette for plain backgrounds. ``fit_style`` (in :mod:`factory.teachers.webtoon_fit`) estimates one from
8-300 webtoon faces; the package's ``default_style.json`` was fitted on the shared webtoon characters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from factory.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_STYLE = Path(__file__).with_name("default_style.json")
Background = Literal["flatten", "blur", "keep", "plain"]
BACKGROUNDS: tuple[Background, ...] = ("flatten", "blur", "keep", "plain")

# Each drawing parameter's valid bounds; a fitted or user range is clipped to them.
BOUNDS: dict[str, tuple[float, float]] = {
    "shadow_share": (0.0, 0.6),  # share of the skin in cel shadow
    "shadow_depth": (0.0, 40.0),  # least Lab lightness drop of the first shadow tone, on the art's skin
    "shadow_tones": (1, 2),  # cel-shadow tones on the skin
    "shadow_detail": (0.0, 1.0),  # 0 broad shadow shapes, 1 shadows that follow the face's forms
    "highlight_share": (0.0, 0.4),  # share of the skin in a lit tone
    "blush": (0.0, 1.0),  # cheek blush opacity
    "saturation": (0.3, 2.5),  # chroma factor of clothes and background (of hair: kept within 0.8-1.3)
    "hair_tones": (2, 5),  # flat tones of hair and clothes
    "hair_highlight": (0.0, 1.0),  # opacity of the hair highlight band
    "strands": (0.0, 1.0),  # share of hair strand lines kept
    "line_width": (0.01, 0.08),  # outline width, times the inter-ocular distance
    "line_darkness": (0.3, 1.0),  # outline opacity
    "lash_width": (0.03, 0.2),  # upper lash line width at its thickest, times the inter-ocular distance
    "eye_scale": (0.9, 2.0),  # vertical opening of the drawn eyes
    "iris_scale": (0.8, 1.3),  # radius of the drawn iris, times the photo's
    "highlight_size": (0.0, 0.6),  # iris highlight radius, times the iris radius
    "crease": (0.0, 1.0),  # opacity of the double-eyelid line
    "lip_tint": (0.0, 1.0),  # how far the lips move toward a drawn pink
    "background_tones": (2, 6),  # flat tones of a flattened background
}
# Ranges of the parameters a fit does not estimate (and the base of those it does).
BASE_RANGES: dict[str, tuple[float, float]] = {
    "shadow_depth": (8.0, 16.0),
    # Where the cel shadows and lights fall follows the photo (its forms carry the person's identity:
    # cross-style casting rank-1 on deepface rises from 32% with a few broad shadows to 83-85% with
    # these); the art's own measured shadow share is reported by a fit, not used.
    "shadow_share": (0.4, 0.55), "shadow_tones": (2, 2), "shadow_detail": (0.85, 1.0), "highlight_share": (0.2, 0.35),
    "blush": (0.0, 0.35), "saturation": (1.0, 1.3), "hair_tones": (2, 4), "hair_highlight": (0.2, 0.6),
    "strands": (0.3, 0.8), "line_width": (0.025, 0.04), "line_darkness": (0.9, 1.0), "lash_width": (0.07, 0.11),
    "eye_scale": (1.25, 1.5), "iris_scale": (1.0, 1.15), "highlight_size": (0.2, 0.35), "crease": (0.0, 0.6),
    "lip_tint": (0.2, 0.6), "background_tones": (3, 5),
}
INTEGER_PARAMETERS = {"shadow_tones", "hair_tones", "background_tones"}


class Style(BaseModel):
    """A webtoon style: colours, parameter ranges and background treatments (JSON on disk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    name: str = "style"
    fitted_on: dict = Field(default_factory=dict, description="what the style was fitted on, for the record")
    skin_lab: tuple[float, float, float] = Field(
        description="the art's median skin colour, OpenCV float Lab (L 0-100); shadow depths are relative to its L")
    ink_lab: tuple[float, float, float] = Field(description="outline colour, Lab")
    ranges: dict[str, tuple[float, float]]
    backgrounds: dict[Background, float] = Field(description="relative frequency of each background treatment")
    palette: list[tuple[int, int, int]] = Field(min_length=1, description="RGB colours for plain backgrounds")

    @field_validator("ranges", mode="before")
    @classmethod
    def _base_ranges_for_missing(cls, ranges):
        """A style written before a parameter existed draws it from ``BASE_RANGES``; one written while
        ``skin_shift`` existed (a pull toward the art's pale skin) loses it: skin keeps the person's tone."""
        if not isinstance(ranges, dict):
            return ranges
        if "skin_shift" in ranges:
            log.warning("style range skin_shift ignored: the webtoon teacher keeps each person's skin tone")
        return {**BASE_RANGES, **{k: v for k, v in ranges.items() if k != "skin_shift"}}

    def model_post_init(self, _context) -> None:
        unknown = sorted(set(self.ranges) - set(BOUNDS))
        if unknown:
            raise ValueError(f"ranges: unknown {unknown}")
        for name, (lo, hi) in self.ranges.items():
            low, high = BOUNDS[name]
            if not low <= lo <= hi <= high:
                raise ValueError(f"ranges.{name}: [{lo}, {hi}] must be increasing within [{low}, {high}]")
        if not any(weight > 0 for weight in self.backgrounds.values()):
            raise ValueError("backgrounds: at least one treatment needs a weight > 0")

    def save(self, path: str | Path) -> Path:
        from factory.files import write_atomic

        path = Path(path)
        write_atomic(path, (json.dumps(self.model_dump(mode="json"), indent=1) + "\n").encode())
        return path


def load_style(path: str | Path | None = None, field: str = "teacher.style") -> Style:
    """A style from its JSON file (the packaged default when ``path`` is None).

    A missing or malformed file is a UserError naming the file and ``field``.
    """
    path = Path(path) if path is not None else DEFAULT_STYLE
    if not path.is_file():
        raise UserError(f"{path}: field '{field}': style file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: field '{field}': not a JSON style file ({exc})") from None
    try:
        return Style.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(style)'}: {e['msg']}" for e in exc.errors())
        raise UserError(f"{path}: field '{field}': not a webtoon style: {problems}") from None
