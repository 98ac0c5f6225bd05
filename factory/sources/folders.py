"""Sources of faces: where sample ``index`` gets its starting image.

A source is indexable: ``load(sample)`` fills one side of the sample from item ``index % len``, so
that any shard can be made by any process. Items that cannot be read are rejects, not errors.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.errors import UserError
from factory.images import DECODE_PIXELS, DEFAULT_MAX_PIXELS, BadImage, list_images, read_image
from factory.sample import Side, Sample
from factory.sources.video import VideoSource, video_files


class FolderSourceConfig(Strict):
    """Every file in a folder of photos (domain: real) or webtoon images (domain: toon)."""

    kind: Literal["folder"]
    path: Path
    domain: Side = "real"
    recursive: bool = True
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse larger images before decoding")

    def build(self) -> "ImageSource":
        files = _folder_files(self.path, "source.path", self.recursive)
        return ImageSource(files, self.domain, self.max_pixels)


PORTRAITS = Path(__file__).resolve().parents[1] / "portraits"  # shipped with the package; see its README


class SamplesSourceConfig(Strict):
    """The portraits the package ships and installed packages hold, plus any folders and videos the user names."""

    kind: Literal["samples"]
    folders: list[Path] = []
    videos: list[Path] = Field([], description="video files (or folders of them) whose frames join the photos")
    every: int = Field(30, ge=1, description="frames between two samples of one shot of a video")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)

    def build(self) -> "ImageSource | Concatenated":
        files = [f for i, d in enumerate(self.folders) for f in _folder_files(d, f"source.folders[{i}]", True)]
        photos = ImageSource(files, "real", self.max_pixels, packaged=True)
        if not self.videos:
            return photos
        videos = [f for i, v in enumerate(self.videos) for f in video_files(v, f"source.videos[{i}]")]
        return Concatenated([photos, VideoSource(videos, self.every)])


def packaged_portrait_names() -> list[str]:
    """One name per packaged person: scikit-image's and matplotlib's samples, then ``factory/portraits``."""
    shipped = sorted(p.name for p in PORTRAITS.glob("*.jpg"))
    return ["skimage:astronaut", "matplotlib:grace_hopper"] + [f"toonfactory:{name}" for name in shipped]


def packaged_portraits() -> dict[str, np.ndarray]:
    """Portraits that need no download: scikit-image's astronaut, matplotlib's Grace Hopper, and the
    public-domain / permissive photos in ``factory/portraits`` (origin and licence in SOURCES.csv)."""
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = read_image(handle.read())
    shipped = {name: read_image(PORTRAITS / name.removeprefix("toonfactory:"))
               for name in packaged_portrait_names() if name.startswith("toonfactory:")}
    return {"skimage:astronaut": skimage.data.astronaut(), "matplotlib:grace_hopper": hopper, **shipped}


class ImageSource:
    """Items are packaged portraits and files; ``load`` decodes item ``index % len``."""

    def __init__(self, files: list[Path], domain: Side, max_pixels: int, packaged: bool = False):
        self.files = files
        self.domain = domain
        self.max_pixels = max_pixels
        self.packaged = packaged
        self.items = (packaged_portrait_names() if packaged else []) + [str(p) for p in files]
        if not len(self):
            raise UserError("source: no images to read (the folders are empty)")

    @cached_property
    def _packaged(self) -> dict[str, np.ndarray]:
        return packaged_portraits() if self.packaged else {}

    def __len__(self) -> int:
        return len(self.items)

    def load(self, sample: Sample, position: int | None = None) -> Sample:
        """Fill the sample from item ``position`` (``index % len`` when None)."""
        item = self.items[sample.index % len(self) if position is None else position]
        sample.meta["source"] = {"item": item, "domain": self.domain}
        try:
            image = self._packaged[item] if item in self._packaged else read_image(item, self.max_pixels, fit_pixels=DECODE_PIXELS)
        except BadImage as exc:
            return sample.reject(exc.reason)
        setattr(sample, self.domain, image)
        return sample


class Concatenated:
    """The items of several sources, one source's after another's."""

    def __init__(self, parts: list):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def load(self, sample: Sample) -> Sample:
        position = sample.index % len(self)
        for part in self.parts:
            if position < len(part):
                return part.load(sample, position)
            position -= len(part)
        raise AssertionError("position beyond the last source")


def _folder_files(path: Path, field: str, recursive: bool) -> list[Path]:
    if not path.is_dir():
        raise UserError(f"{field}: {path} is not a readable folder")
    return list_images(path, recursive)
